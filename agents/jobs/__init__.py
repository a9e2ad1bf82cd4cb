"""The RL half's command-line jobs, importable and installed with the package: one module a job, each with
``build_parser()`` and ``main(argv=None)`` (user errors raise; :func:`rlrobust.cli.run_main` turns them into one
``error:`` line). ``rlrobust <job>`` (see ``rlrobust --help``) and ``python scripts/<job>.py`` both call them."""
