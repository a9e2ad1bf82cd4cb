"""``python -m rlrobust JOB ...``: the ``rlrobust`` command (see :mod:`rlrobust.console`)."""

from rlrobust.console import main

raise SystemExit(main())
