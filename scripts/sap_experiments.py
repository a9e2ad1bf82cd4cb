"""The SAP paper's image experiments: accuracy against the FGSM budget, calibration.
The job is :mod:`classifiers.jobs.sap_experiments`; ``--help`` lists its flags."""

from classifiers.jobs.sap_experiments import USER_ERRORS, main, run  # noqa: F401 (for callers that load this file)

if __name__ == "__main__":
    run()
