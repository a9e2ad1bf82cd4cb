"""Train an image classifier with one of the papers' methods and recipes.
The job is :mod:`classifiers.jobs.train_classifier`; ``--help`` lists its flags."""

from classifiers.jobs.train_classifier import USER_ERRORS, main, run  # noqa: F401 (for callers that load this file)

if __name__ == "__main__":
    run()
