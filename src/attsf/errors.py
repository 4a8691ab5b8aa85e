"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class AttsfError(Exception):
    """A user-facing error: bad input, a missing file, a config key that does not exist."""
