"""Every `python -m jaxft.*` entry point: bad input is one line `error: ...` on stderr and exit status 2,
found before any model loads; other exceptions are not swallowed."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

# module -> (bad arguments, what the one line must say); {w} is a scratch directory
BAD = {
    "jaxft.train": (["--config=configs/tiny.py", "--workdir={w}", "--config.optim.learing_rate=1"],
                    "did you mean --config.optim.learning_rate"),
    "jaxft.plan": (["--config=configs/experiment.py:smollm2-135m,lora"], "missing --devices="),
    "jaxft.study": (["--config=configs/study_tiny.py", "--workdir={w}", "--config.modles=x"],
                    "unknown config key 'modles'; did you mean --config.models?"),
    "jaxft.eval": (["--model=random", "--task=gsm9k", "--output_dir={w}"], "argument --task: invalid choice"),
    "jaxft.report": (["--runs={w}/none", "--out={w}/out"], "runs directory not found"),
    "jaxft.export": (["--checkpoint={w}", "--out={w}/o", "--format=onnx"], "argument --format: invalid choice"),
    "jaxft.analyze": (["intruders", "--checkpoint={w}", "--out={w}/o", "--k=0"], "--k=0 must be >= 1"),
    "jaxft.demo": (["--n=0"], "--n=0"),
}


def entry_modules() -> set[str]:
    """Every module `python -m` can run: a package's __main__.py or a file with a __main__ guard."""
    found = set()
    for dirpath, _, files in os.walk(os.path.join(REPO, "jaxft")):
        for f in files:
            path = os.path.join(dirpath, f)
            if not f.endswith(".py"):
                continue
            module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
            if f == "__main__.py":
                found.add(module[: -len(".__main__")])
            elif re.search(r"^if __name__ == .__main__.:", open(path).read(), re.M):
                found.add(module)
    return found - {"jaxft.report.cli"}  # run as `python -m jaxft.report`


def test_every_entry_point_is_covered():
    assert entry_modules() == set(BAD)


@pytest.mark.parametrize("module", sorted(BAD))
def test_bad_input_is_one_error_line_and_exit_2(module, tmp_path):
    args, message = BAD[module]
    proc = subprocess.run([sys.executable, "-m", module, *(a.format(w=tmp_path) for a in args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0] and not proc.stdout


def test_wrapper_codes_help_and_other_exceptions(capsys):
    from jaxft.cli import entry_point
    from jaxft.errors import ConfigError, DataError

    @entry_point("usage: demo", codes=((ConfigError, 2), (DataError, 1)))
    def main(argv):
        if argv == ["interrupt"]:
            raise KeyboardInterrupt
        if argv == ["bug"]:
            raise ValueError("a bug is a traceback, not a usage error")
        raise (ConfigError if argv == ["usage"] else DataError)(f"bad {argv[0]}")

    assert main(["usage"]) == 2 and capsys.readouterr().err == "error: bad usage\n"
    assert main(["data"]) == 1 and capsys.readouterr().err == "error: bad data\n"
    assert main(["--help"]) == 0 and capsys.readouterr().out == "usage: demo\n"
    with pytest.raises(KeyboardInterrupt):
        main(["interrupt"])
    with pytest.raises(ValueError):
        main(["bug"])
