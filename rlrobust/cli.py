"""Running a command-line entry point so that a user's mistake ends it with one ``error: ...`` line, not a traceback."""

from __future__ import annotations

from collections.abc import Callable

#: What a user can cause with a bad flag, file or setting; everything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError)


def run_main(main: Callable[[], object], errors: tuple[type[Exception], ...] = USER_ERRORS) -> None:
    """Call ``main()``; one of ``errors`` exits with ``error: <message>`` on stderr and status 1."""
    try:
        main()
    except errors as err:
        raise SystemExit(f"error: {err}") from None
