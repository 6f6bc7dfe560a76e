"""The one exception type for bad input: its message is a complete, one-paragraph explanation with the fix."""


class LfsbenchError(Exception):
    """A user-facing error; the CLI prints its message without a traceback and exits non-zero."""
