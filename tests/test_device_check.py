"""bench/device_check.py --dry-run: the prepared accelerator check runs on CPU at tiny shapes, so it cannot
rot while no device is lent. The table must hold every planned row, each ok (or skipped, saying why), with
finite numbers; and a broken attention implementation must turn its row into a FAIL."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "bench", "device_check.py")


@pytest.fixture(scope="module")
def dc():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check") / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    p = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--out", str(out)], capture_output=True, text=True,
                       timeout=300, env=env, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads(out.read_text()), p.stdout


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


@pytest.mark.slow
def test_dry_run_reports_every_row_ok_with_finite_numbers(dc, report):
    data, stdout = report
    from jaxft.models.config import FAMILIES

    planned = [i for case in dc.plan(dc.DRY) for i in case["rows"]]
    rows = {r["id"]: r for r in data["rows"]}
    assert list(rows) == planned
    # every family of the model config has a train row (one added later gets one too)
    assert {dc.family_models()[f] for f in FAMILIES} <= {i.split(":")[1] for i in planned if i.startswith("train:")}
    assert {"train", "mesh", "attention", "loss", "decode"} == {r["check"] for r in rows.values()}
    for k in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "device_kind"):
        assert data["versions"][k], k
    assert stdout.startswith("versions: ")
    for i, r in rows.items():
        assert r["model"] in stdout and r["status"] in stdout, i
        if r["status"].startswith("skipped"):
            # only rows this machine cannot run (cuDNN) or that the dry run leaves to the suite (train)
            assert (r["case"] == "cudnn" and "not a GPU" in r["status"]) or (
                r["check"] == "train" and "dry run" in r["status"]), (i, r["status"])
            continue
        assert r["status"] == "ok", (i, r["status"])
        if r["check"] == "train":
            assert _finite(r["loss_first"], r["loss_last"], r["tokens_per_s"], r["planner_gib"], r["xla_gib"]), r
            assert r["loss_last"] < r["loss_first"] and r["tokens_per_s"] > 0 and r["planner_gib"] > 0
            assert r["attention"] in ("xla", "dpa", "cudnn", "chunked") and r["remat"] in ("none", "dots", "full")
            assert len(r["losses"]) == dc.DRY.steps
        elif r["check"] == "mesh":
            assert r["mesh"] == "data=1 x fsdp=1" and _finite(r["loss_sharded"], r["loss_plain"])
            assert r["max_abs_diff"] < 1e-3
        elif r["check"] == "attention":
            assert _finite(r["max_abs_diff"], r["noise"]) and r["max_abs_diff"] <= r["tol"]
        elif r["check"] == "loss":
            assert _finite(r["loss_fused"], r["loss_dense"]) and r["loss_rel_diff"] < 1e-4
            assert r["grad_hidden_rel_diff"] < 2e-2 and r["grad_weight_rel_diff"] < 2e-2
        elif r["check"] == "decode":
            assert r["generated"] == r["batch"] * dc.DRY.decode_new and _finite(r["tokens_per_s"])
    assert [rows[f"train:{dc.BENCH_MODEL}:{m}"]["status"] for m in ("full", "lora")] == ["ok", "ok"]
    assert [rows[f"decode:{dc.BENCH_MODEL}:batch{b}"]["batch"] for b in (1, 8, 32)] == [1, 8, 32]


def test_a_wrong_attention_kernel_fails_its_row(dc, monkeypatch):
    """The attention rows compare against the explicit path: a chunked kernel off by 10% must FAIL while
    the untouched fused (dpa) path stays ok."""
    import dataclasses

    from jaxft.models import transformer

    real = transformer._chunked_attention
    monkeypatch.setattr(transformer, "_chunked_attention", lambda *a, **k: 1.1 * real(*a, **k))
    monkeypatch.setattr(transformer, "ATTENTION_CHUNK", transformer.ATTENTION_CHUNK)  # restored after
    case = next(c for c in dc.plan(dc.DRY) if c["case"] == "attention")
    rows = dc.case_attention(case, dataclasses.replace(dc.DRY, seq=32))
    by_case = dict(zip(("cudnn", "chunked", "dpa"), rows))
    assert by_case["chunked"]["status"].startswith("FAIL"), by_case["chunked"]
    assert by_case["dpa"]["status"] == "ok", by_case["dpa"]
