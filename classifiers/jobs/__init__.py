"""The classifier half's command-line jobs, one module each: :mod:`.train_classifier`, :mod:`.eval_classifier`,
:mod:`.sap_experiments`, :mod:`.energy_analysis` and :mod:`.generate`. Each has ``build_parser()``, ``main(argv)``
(returns the exit status; a user's mistake raises one of its ``USER_ERRORS``) and ``run(argv)`` (the command line:
a user error ends it with one ``error: ...`` line); :mod:`.common` holds what they share. ``scripts/<job>.py`` and
the ``rlrobust <job>`` console command call ``run``."""
