"""Errors that are the user's fault.

`UserError` is raised for anything a user can fix (a missing file, a bad flag value, a file of the
wrong kind). The CLI turns it into one line, ``zeroformer: error: <message>``, and exit status 2.
Every other exception is an internal bug: the CLI lets it print a traceback and exits 1.
"""


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit status 2."""


def require_file(path, what="file"):
    """Return `path` as a pathlib.Path, or raise UserError if it does not exist."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} not found: {p}")
    return p
