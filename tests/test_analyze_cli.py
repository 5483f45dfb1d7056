"""`python -m jaxft.analyze`: JSON + PNG outputs for tiny HF directories, and clear errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hf_tiny import make_hf_model
from jaxft import analyze

PNG = b"\x89PNG\r\n\x1a\n"
SMALL = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, vocab_size=64)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    base, tuned = str(root / "base"), str(root / "tuned")
    make_hf_model("llama", 0, base, seed=0, **SMALL)
    make_hf_model("llama", 0, tuned, seed=1, **SMALL)
    return root, base, tuned


def _png(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(PNG) and len(data) > 1000, path


def test_hessian_writes_json_and_pngs(dirs):
    root, base, _ = dirs
    out = str(root / "hess")
    # The final norm's 16 weights keep the compile small; tests/test_hessian.py covers all parameters.
    rc = analyze.main(["hessian", f"--checkpoint={base}", f"--out={out}", "--data=random", "--batches=2",
                       "--batch_size=2", "--seq_len=8", "--k=3", r"--subset=^model\.norm\.", "--lanczos_steps=12",
                       "--power", "--power_iters=30", "--trace_probes=4", "--slq_probes=2", "--slq_steps=12"])
    assert rc == 0
    with open(os.path.join(out, "hessian.json")) as f:
        res = json.load(f)
    assert res["num_params"] == 16 and res["subset"] == r"^model\.norm\."
    vals = res["top_eigenvalues"]["values"]
    assert len(vals) == 3 and vals == sorted(vals, reverse=True)
    assert len(res["power_iteration"]["values"]) == 3
    assert abs(np.trapezoid(res["density"]["density"], res["density"]["grid"]) - 1) < 1e-6
    assert res["data"]["loss_on"] == "all tokens" and np.isfinite(res["trace"]["mean"])
    for name in ("hessian_density.png", "hessian_top_eigenvalues.png"):
        _png(os.path.join(out, name))


def test_intruders_and_displacement(dirs):
    root, base, tuned = dirs
    out = str(root / "cmp")
    assert analyze.main(["intruders", f"--checkpoint={tuned}", f"--base={base}", f"--out={out}", "--k=4"]) == 0
    assert analyze.main(["displacement", f"--checkpoint={tuned}", f"--base={base}", f"--out={out}"]) == 0
    with open(os.path.join(out, "intruders.json")) as f:
        intr = json.load(f)
    with open(os.path.join(out, "displacement.json")) as f:
        disp = json.load(f)
    assert len(intr["matrices"]) == len(disp["matrices"]) == 14 and intr["k"] == 4
    assert all(r["abs"] > 0 and r["lora_bound"] is None for r in disp["matrices"])
    for name in ("intruders.png", "displacement.png", "displacement_relative.png"):
        _png(os.path.join(out, name))


def test_peft_adapter_dir_gets_lora_bound(dirs):
    from jaxft.models import flat_params, load_model, set_params
    from jaxft.peft import apply_peft
    from jaxft.peft.export import export_peft

    root, base, _ = dirs
    model, _ = load_model(base)
    apply_peft(model, "lora", r=2, alpha=4, dropout=0.0)
    rng = np.random.default_rng(0)
    set_params(model, {k: 0.1 * rng.standard_normal(v.shape) for k, v in flat_params(model).items()
                       if k.endswith("lora_B")})
    adapter = str(root / "adapter")
    export_peft(model, adapter, base_model=base)
    out = str(root / "peft")
    assert analyze.main(["displacement", f"--checkpoint={adapter}", f"--base={base}", f"--out={out}"]) == 0
    with open(os.path.join(out, "displacement.json")) as f:
        rows = json.load(f)["matrices"]
    assert all(0 < r["abs"] <= r["lora_bound"] for r in rows)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_workdirs(method, tmp_path):
    """What jaxft.train saved is analysed directly: Full FT against the model the run started from
    (no --base needed), LoRA against its own base weights with the study's bound."""
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    c = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py"))
    c.method, c.total_steps, c.checkpoint_every_steps, c.data.limit = method, 3, 3, 16
    c.optim.learning_rate = 1e-2
    work = str(tmp_path / "run")
    train(c, work, progress=False)
    out = str(tmp_path / "out")
    assert analyze.main(["displacement", f"--checkpoint={work}", f"--out={out}"]) == 0
    with open(os.path.join(out, "displacement.json")) as f:
        rows = json.load(f)["matrices"]
    assert rows and all(r["abs"] > 0 for r in rows)  # every trained matrix moved from its start
    if method == "lora":
        assert all(r["abs"] <= r["lora_bound"] for r in rows)
    assert analyze.main(["intruders", f"--checkpoint={work}", f"--out={out}"]) == 0
    assert os.path.isfile(os.path.join(out, "intruders.json"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert analyze.main(["intruders", f"--checkpoint={empty}", f"--out={out}"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["displacement", "--checkpoint={tuned}", "--out={out}"], "--base"),
    (["intruders", "--checkpoint=/no/such/model", "--base={base}", "--out={out}"], "cannot resolve"),
    (["hessian", "--checkpoint={base}", "--out={out}"], "tokenizer"),
    (["hessian", "--checkpoint={base}", "--out={out}", "--data=random", "--subset=nomatch"], "selects no"),
    (["hessian", "--checkpoint={base}", "--out={out}", "--k=0"], "--k=0"),
])
def test_bad_input_is_a_clear_error(dirs, tmp_path, capsys, argv, message):
    _, base, tuned = dirs
    argv = [a.format(base=base, tuned=tuned, out=tmp_path) for a in argv]
    assert analyze.main(argv) == 2
    assert message in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxft.analyze", "intruders", "--checkpoint=nowhere",
                           f"--out={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "error:" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "jaxft.analyze"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "hessian" in proc.stderr
