"""The exception types that carry a user-facing message, and the one wrapper that turns
them into `error: <message>` and an exit status for every command-line entry point.

Kept at the bottom of the import graph (it imports nothing from the project), so every
layer may raise them.
"""
from __future__ import annotations

import sys
from typing import Callable


class InputError(ValueError):
    """Bad input from the user: the message names the file or flag and the problem."""


class DataError(InputError):
    """A file or its contents is wrong: missing, unreadable, the wrong shape or key."""


class ConfigError(InputError):
    """A flag or a combination of flags is wrong (out of range, contradictory, a folder in use)."""


def run_cli(run: Callable, *args, **kwargs) -> int:
    """Call `run(*args, **kwargs)` for a command-line entry point and return its exit status.

    0 on success; an `InputError` prints `error: <message>` on stderr and gives 2; an
    `OSError` the operating system raised while writing or reading (a full disk, a folder
    removed under the run) prints `error: <file>: <reason>` and gives 1; Ctrl-C prints
    `interrupted` (and the interrupt's message, e.g. how to resume) and gives 130.
    Users never see a traceback for a mistake in their input.
    """
    try:
        run(*args, **kwargs)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    return 0
