"""The one exception type that carries a user-facing message."""


class DataError(ValueError):
    """Bad input from the user: the message names the file or flag and the problem.

    Command-line entry points catch it, print the message and exit with status 2,
    so users never see a TensorFlow traceback for a mistake in their input.
    """


def run_cli(run, *args, **kwargs) -> int:
    """Call `run(*args, **kwargs)` for a command-line entry point: 0 on success, and on a
    DataError its message as `error: ...` on stderr and exit status 2 (no traceback)."""
    import sys

    try:
        run(*args, **kwargs)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
