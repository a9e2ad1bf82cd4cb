"""The papers' image experiments as small pieces that the jobs (``classifiers.jobs``) combine: the SAP paper's
accuracy-against-lambda grid with calibration (:mod:`.sap_grid`, :mod:`.calibration_report`), WEAT's energy lens
(:mod:`.energy_lens`, :mod:`.energy_curves`) and generation from a robust classifier (:mod:`.sampling`,
:mod:`.fidelity`)."""
