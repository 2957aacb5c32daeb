"""One exception type for every user-facing failure: the CLI prints it as one line."""


class CircuitnnError(Exception):
    """A problem with the user's input or environment, reported as one line without traceback."""
