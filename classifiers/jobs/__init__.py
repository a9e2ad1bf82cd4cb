"""The classifier half's command-line jobs, one module each: :mod:`.train_classifier`, :mod:`.eval_classifier`,
:mod:`.sap_experiments`, :mod:`.energy_analysis` and :mod:`.generate`. Each has ``build_parser()`` and
``main(argv)`` (returns the exit status; a user's mistake raises one of :data:`rlrobust.cli.USER_ERRORS`, which
:func:`rlrobust.cli.run_main` turns into one ``error: ...`` line); :mod:`.common` holds what they share.
``scripts/<job>.py`` and the ``rlrobust <job>`` console command run them."""
