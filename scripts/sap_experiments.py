"""The SAP paper's image experiments: the job ``classifiers.jobs.sap_experiments``
(= ``rlrobust sap-experiments``; see --help)."""

from classifiers.jobs.sap_experiments import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
