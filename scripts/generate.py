"""Generate images from a (robust) classifier read as an energy-based model.
The job is :mod:`classifiers.jobs.generate`; ``--help`` lists its flags."""

from classifiers.jobs.generate import USER_ERRORS, main, run  # noqa: F401 (for callers that load this file)

if __name__ == "__main__":
    run()
