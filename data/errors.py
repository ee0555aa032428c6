"""The one exception type that carries a user-facing message."""


class DataError(ValueError):
    """Bad input from the user: the message names the file or flag and the problem.

    Command-line entry points catch it, print the message and exit with status 2,
    so users never see a TensorFlow traceback for a mistake in their input.
    """
