"""Errors that are the user's fault.

`UserError` is raised for anything a user can fix (a missing file, a bad flag value, a file of the
wrong kind). The CLI turns it into one line, ``zeroformer: error: <message>``, and exit status 2.
Every other exception is an internal bug: the CLI lets it print a traceback and exits 1.
"""


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit status 2.

    The message is kept to one line of at most MAX_CHARS characters: it often quotes a value read
    from a hostile file (a 100 kB key, a string with line breaks), which must not flood the
    terminal. Line breaks become spaces; the middle of a longer message is cut out."""

    MAX_CHARS = 1000

    def __init__(self, message: str = ""):
        message = " ".join(str(message).splitlines())
        if len(message) > self.MAX_CHARS:
            half = self.MAX_CHARS // 2 - 10
            message = f"{message[:half]} [... {len(message) - 2 * half} characters ...] " \
                      f"{message[-half:]}"
        super().__init__(message)


def require_file(path, what="file"):
    """Return `path` as a pathlib.Path, or raise UserError if it does not exist."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} not found: {p}")
    return p
