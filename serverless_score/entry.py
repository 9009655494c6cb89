"""The ``serverless-score`` console script's entry point, importing nothing at first.

A Ctrl-C or SIGTERM in the first tenth of a second lands while the CLI's modules (typer, rich,
pydantic) are still being imported, before any command can handle it: it must still end with
one line and exit code 130, not a traceback. Nothing has been created or written by then.
"""

from __future__ import annotations

import os
import signal
import sys

_EARLY = "error: interrupted before the command started: nothing was created or written\n"
_LATER = "error: interrupted\n"


def _early_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # SIGTERM takes Ctrl-C's path until the command installs its own handlers (controller/signals.py)
    signal.signal(signal.SIGTERM, _early_sigterm)
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write(_EARLY)
        sys.stderr.flush()
        os._exit(130)
    try:
        cli_main()
    except KeyboardInterrupt:  # outside a command's own handling (argument parsing, imports)
        sys.stderr.write(_LATER)
        sys.stderr.flush()
        os._exit(130)


if __name__ == "__main__":
    main()
