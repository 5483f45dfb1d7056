"""Time guard: README's test command is the one a contributor runs before every commit, so no single test
in it may take longer than `max_test_seconds` (pyproject [tool.pytest.ini_options]; 0 turns it off).
Tests marked `slow` belong to the second command (README "Tests") and are exempt. Setup and call phases
are checked apart, so a session fixture's one-time load is not charged to the test that needed it first.
"""


def pytest_addoption(parser):
    parser.addini("max_test_seconds", "fail the run if one test's setup or call phase takes longer (0: off)",
                  default="0")


_too_slow: list[str] = []
_limit = [0.0]


def pytest_configure(config):
    _limit[0] = float(config.getini("max_test_seconds") or 0)
    _too_slow.clear()


def pytest_runtest_logreport(report):
    """Runs where reports are gathered (the controller under pytest-xdist too)."""
    if _limit[0] and report.when in ("setup", "call") and "slow" not in report.keywords \
            and report.duration > _limit[0]:
        _too_slow.append(f"{report.nodeid} ({report.when} {report.duration:.1f} s)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _too_slow:
        limit = config.getini("max_test_seconds")
        terminalreporter.write_line(f"time guard: {len(_too_slow)} test phase(s) over max_test_seconds={limit}: "
                                    "make them faster or mark them `slow` (the second command)", red=True)
        for line in _too_slow:
            terminalreporter.write_line(f"  {line}", red=True)


def pytest_sessionfinish(session, exitstatus):
    if _too_slow and session.exitstatus == 0:
        session.exitstatus = 1
