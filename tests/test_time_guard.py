"""The time guard (tests/time_guard.py) fails a run in which one unmarked test is over the limit."""

import os

pytest_plugins = ["pytester"]

GUARD = os.path.join(os.path.dirname(__file__), "time_guard.py")

TESTS = """
import time, pytest
def test_fast(): pass
def test_over(): time.sleep(0.6)
@pytest.mark.slow
def test_marked_slow(): time.sleep(0.6)
"""


def _run(pytester, limit):
    pytester.makepyfile(time_guard=open(GUARD).read(), test_demo=TESTS)
    pytester.makeini(f"[pytest]\nmax_test_seconds = {limit}\nmarkers =\n    slow: second command\n")
    return pytester.runpytest_subprocess("-p", "time_guard", "-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def test_guard_fails_the_run_naming_the_slow_unmarked_test(pytester):
    result = _run(pytester, 0.3)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*time guard: 1 test phase(s) over max_test_seconds=0.3*",
                                 "*test_demo.py::test_over (call 0.*"])
    assert "test_marked_slow (" not in result.stdout.str()


def test_guard_passes_under_the_limit_and_when_off(pytester):
    assert _run(pytester, 5).ret == 0
    assert _run(pytester, 0).ret == 0


def test_the_repository_keeps_the_guard_on_at_60_seconds():
    """README's command is the one run before every commit (issue 30): the guard is on, at most 60 s."""
    import tomllib

    with open(os.path.join(os.path.dirname(GUARD), "..", "pyproject.toml"), "rb") as f:
        ini = tomllib.load(f)["tool"]["pytest"]["ini_options"]
    assert 0 < float(ini["max_test_seconds"]) <= 60
    assert "slow" in " ".join(ini["markers"])
