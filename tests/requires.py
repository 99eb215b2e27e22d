"""What a test needs that the repository does not hold: a fetched data set, a reference package.

Locally a missing one skips the test with the reason and the command that fixes it. Under CI
(environment CI=true) it fails the test: CI fetches every data set and installs the `test` extra,
so a missing one there is a broken CI, not a reason to go green (see conftest.py).
"""

import importlib
import os

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def require_data(name: str):
    """The Path of fetched data set `name`; skip (fail under CI) when it is not in the cache."""
    from zeroformer import data

    path = data.locate(name)
    if path is None:
        _missing(f"{name} not fetched (run `zeroformer data fetch {name}`)")
    return path


def require_package(name: str):
    """import `name`; skip (fail under CI) when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        _missing(f"package {name} not installed ({e}); `pip install -e '.[test]'`")


def require_program(names, install: str):
    """The path of the first of `names` (a program name or a tuple of them) found on PATH; skip
    (fail under CI) when none is, naming the command that installs it."""
    import shutil

    for name in (names,) if isinstance(names, str) else names:
        path = shutil.which(name)
        if path:
            return path
    _missing(f"program {names} not found (`{install}`)")
