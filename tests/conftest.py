"""Test-wide settings: one torch thread per process; under CI, no skip for missing data/packages.

The suite is many small models; on a 2-core machine shared with other work, torch's OpenMP
threads spin-wait on each other and a test can take 30x longer with 2 threads than with 1.
Subprocesses started by the CLI tests inherit OMP_NUM_THREADS.

Skips: locally a test whose data set or reference package is missing skips with a reason (the
Makefile's pytest prints them: `-rs`). Under CI (environment CI=true, which `.ci/run` sets)
`make test` fetches the data without `--best-effort` and installs the `test` extra, so a skip
there means a test that did not run: any skip fails the session, whatever its reason says,
unless the test is marked `ci_may_skip` (a platform the CI machine may lack, e.g. the int4 CPU
kernel). `requires.require_data` / `requires.require_package` fail at once under CI.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from requires import IN_CI  # noqa: E402

torch.set_num_threads(1)

_skips: list[tuple[str, str]] = []  # (test id, reason) of every skip, collection included


def pytest_configure(config):
    config.addinivalue_line("markers", "ci_may_skip: a skip that is allowed under CI=true "
                            "(a platform feature the CI machine may lack; never data or packages)")


def _record(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        if "ci_may_skip" in getattr(report, "keywords", {}):
            return
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skips.append((report.nodeid, reason))


def pytest_runtest_logreport(report):
    _record(report)


def pytest_collectreport(report):
    _record(report)


def pytest_terminal_summary(terminalreporter):
    if IN_CI and _skips:
        terminalreporter.section("skipped under CI=true (each one is a failure)", red=True)
        for nodeid, reason in _skips:
            terminalreporter.write_line(f"{nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if IN_CI and _skips and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
