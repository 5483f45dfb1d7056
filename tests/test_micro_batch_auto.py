"""micro_batch_size="auto" (jaxft.train.auto): the largest micro-batch dividing the rows per device that fits
the memory less its headroom, checked against XLA's compiled memory; a run that cannot fit at one row is
refused (exit 2) before any weight loads; the pick follows the method after overrides; the loop prints and
records it. Every memory limit here is set by the test (config.memory_limit_bytes), so the pick and the
refusal happen on any machine."""

import json
import os

import pytest

from conftest import REPO
from jaxft.errors import ConfigError

TINY = os.path.join(REPO, "configs", "tiny.py")
MiB = 2 ** 20
# Big enough that activations, not the compiler's scratch, dominate the step's memory (tests/test_plan.py).
SHAPES = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=64, vocab_size=4096)


def small(method="full", limit=0, rows=8):
    from jaxft.train.config import load_config_file

    c = load_config_file(TINY)
    c.random_model.update(SHAPES)
    c.method, c.attention, c.compute_dtype, c.peft.dropout = method, "xla", "float32", 0.0
    c.data.seq_len, c.global_batch_size, c.data.rows_per_step, c.loss_chunk = 256, rows, rows, 256
    c.memory_limit_bytes = limit
    assert c.micro_batch_size == "auto" and c.remat == "auto"  # the base config's defaults
    return c


def resolved(c, **kw):
    from jaxft.train.auto import resolve_for_this_host

    notes = resolve_for_this_host(c, **kw)
    return notes, c


def estimates(c, per_device, *micros, remat="none"):
    """The planner's peaks for `c` at each of `micros` rows per micro-step (what the pick compares)."""
    from jaxft.train import memory as mem
    from jaxft.train.config import set_value

    c = c.copy_and_resolve_references()
    c.attention, c.remat = "xla", remat
    set_value(c, "micro_batch_size", 0)
    s = mem.setup_from_config(c, 1)
    return [mem.estimate(mem.at_micro_batch(s, m, per_device))["peak"] for m in micros]


def test_pick_fits_xla_compiled_memory():
    """128 MiB for a 8-row step: the pick (analytic estimate, no compilation) takes more than one row and
    fewer than all; XLA's own accounting of the step compiled at that micro-batch fits the limit, and
    the estimate is within 20% of it."""
    from jaxft.train.memory import compiled_memory, estimate as peak_of, setup_from_config

    notes, c = resolved(small(limit=128 * MiB))
    m = c.micro_batch_size
    assert isinstance(m, int) and 1 < m < 8 and 8 % m == 0, notes
    assert c.remat == "none"  # accumulation first: remat only when one row does not fit
    assert any(line.startswith(f"micro_batch_size=auto -> {m} rows per device") for line in notes), notes
    got = compiled_memory(c)["total"]
    est = peak_of(setup_from_config(c, 1))["peak"]
    assert got <= c.memory_limit_bytes, (got / MiB, m)
    assert abs(est / got - 1) < 0.20, f"planner {est / MiB:.1f} MiB vs XLA {got / MiB:.1f} MiB at micro-batch {m}"


def test_pick_is_the_largest_divisor_under_the_limit_and_plan_agrees():
    """10 rows per device: the divisors are 1, 2, 5, 10. A limit between the estimates at 2 and 5 rows picks
    2 (4 would fit but does not divide 10); no limit to speak of takes all 10 at once; an explicit 10 is
    kept with a warning; the planner's Setup of the resolved config is the one setup_from_config builds."""
    import dataclasses

    from jaxft.plan import plan
    from jaxft.train import memory as mem
    from jaxft.train.auto import Memory, resolve_with_setup

    base = small(rows=10)
    lo, hi = estimates(base, 10, 2, 5)
    assert lo < hi
    limit = int((lo + hi) / 2 / (1 - mem.HEADROOM))
    _, c = resolved(small(rows=10, limit=limit))
    assert c.micro_batch_size == 2
    _, c = resolved(small(rows=10, limit=1 << 40))
    assert c.micro_batch_size == 10
    explicit = small(rows=10, limit=limit)
    explicit.micro_batch_size = 10  # an integer is kept, and warned about where it does not fit
    notes, c = resolved(explicit)
    assert c.micro_batch_size == 10 and any(n.startswith("micro_batch_size=10: estimate") for n in notes), notes
    p = plan(small(rows=10, limit=limit), mem.parse_devices("cpu"))
    assert (p["micro_batch_size"], p["micro_batch"], p["accum_steps"], p["fits"]) == (2, 2, 5, True)
    c = small(rows=10)
    _, s = resolve_with_setup(c, platform="cpu", n_devices=1, memory=Memory(limit, "test"))
    assert dataclasses.asdict(s) == dataclasses.asdict(mem.setup_from_config(c, 1))


def test_a_run_that_cannot_fit_one_row_is_refused_before_any_weight_loads(tmp_path, monkeypatch, capsys):
    """A limit below the parameters' own float32 bytes (ModelConfig.num_params x 4) cannot hold one row:
    resolve refuses with one line naming the estimate and the limit, and `python -m jaxft.train` exits 2
    without building the model or creating the workdir."""
    import jaxft.run_setup as run_setup
    from jaxft.models import ModelConfig
    from jaxft.train.__main__ import main

    params = ModelConfig(**small().random_model.to_dict()).num_params() * 4
    with pytest.raises(ConfigError, match=r"does not fit: even 1 row per device per micro-step needs an estimated "
                                          r"[\d.]+ MiB per device \(remat=full\), over the [\d.]+ MiB usable per "
                                          r"device \(config.memory_limit_bytes"):
        resolved(small(limit=params // 2))

    build = run_setup.build

    def shapes_only(c, *, abstract=False, n_devices=None):  # the planner's abstract build, never weights
        assert abstract, "the model's weights were loaded before the refusal"
        return build(c, abstract=True, n_devices=n_devices)

    monkeypatch.setattr(run_setup, "build", shapes_only)
    w = tmp_path / "w"
    assert main([f"--config={TINY}", f"--workdir={w}", f"--config.memory_limit_bytes={params // 2}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0] and "config.memory_limit_bytes" in err[0], err
    assert not w.exists()


def test_the_pick_follows_the_method_after_overrides():
    """configs/smollm2_135m_lora.py with --config.method=full resolves exactly as the full file does, at a
    limit between the two methods' estimates for all 64 rows at once (so one of them accumulates). The
    model is swapped for a small random one on the command line so that the test plans in seconds."""
    from jaxft.train import memory as mem
    from jaxft.train.config import parse_args

    small_model = [f"--config.random_model.{k}={v}" for k, v in SHAPES.items()]
    common = ["--config.model=random", *small_model, "--config.data.seq_len=256", "--config.attention=xla",
              "--config.compute_dtype=float32"]

    def args(path, *extra):
        return parse_args([f"--config={os.path.join(REPO, 'configs', path)}", "--workdir=w", *common, *extra])[0]

    lora = args("smollm2_135m_lora.py")
    rows = lora.global_batch_size
    (full_peak,), (lora_peak,) = estimates(args("smollm2_135m_full.py"), rows, rows), estimates(lora, rows, rows)
    assert full_peak != lora_peak  # what makes the two picks differ below (LoRA's dropout inputs vs Adam's state)
    limit = str(int((full_peak + lora_peak) / 2 / (1 - mem.HEADROOM)))
    picked = {}
    for name, path, extra in (("lora", "smollm2_135m_lora.py", ()), ("override", "smollm2_135m_lora.py",
                                                                       ("--config.method=full",)),
                              ("full", "smollm2_135m_full.py", ())):
        _, c = resolved(args(path, f"--config.memory_limit_bytes={limit}", *extra))
        picked[name] = (c.method, c.micro_batch_size, c.remat, c.optim.learning_rate)
    assert picked["override"] == picked["full"] != picked["lora"], picked
    smaller, larger = ("full", "lora") if full_peak < lora_peak else ("lora", "full")
    assert picked[smaller][1] == rows and picked[larger][1] < rows, picked


def test_micro_batch_size_values_from_files_and_the_command_line():
    from jaxft.train.config import parse_args

    def micro(path, *extra):
        c = parse_args([f"--config={os.path.join(REPO, 'configs', path)}", "--workdir=w", *extra])[0]
        return c.micro_batch_size

    assert micro("tiny.py") == "auto" and micro("tiny.py", "--config.micro_batch_size=4") == 4
    grid = "grid_smollm2_cpu.py"  # sets 2 itself
    assert micro(grid) == 2 and micro(grid, "--config.micro_batch_size=auto") == "auto"
    assert micro(grid, "--config.micro_batch_size=0") == 0  # 0: no accumulation, as before
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(ConfigError, match=rf"config.micro_batch_size='{bad}'; allowed: auto or an integer >= 0"):
            micro("tiny.py", f"--config.micro_batch_size={bad}")
    with pytest.raises(ConfigError, match=r"memory_limit_bytes=-5 must be an integer >= 0"):
        micro("tiny.py", "--config.memory_limit_bytes=-5")


def test_the_loop_prints_and_records_its_pick(tmp_path, capsys):
    """configs/tiny.py, 4 examples one per row: a limit between the estimates at 2 and 4 rows makes the loop
    pick 2, print it, record it in jaxft_config.json and run its steps as 2 accumulated micro-steps."""
    from jaxft.train import memory as mem
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    c = load_config_file(TINY)
    c.total_steps, c.checkpoint_every_steps, c.data.packing, c.global_batch_size = 2, 100, False, 4
    c.attention = "xla"
    lo, hi = estimates(c, 4, 2, 4)
    c.memory_limit_bytes = int((lo + hi) / 2 / (1 - mem.HEADROOM))
    w = tmp_path / "w"
    train(c, str(w), progress=False)
    assert "micro_batch_size=auto -> 2 rows per device per micro-step (2 micro-steps" in capsys.readouterr().out
    recorded = json.loads((w / "jaxft_config.json").read_text())
    assert (recorded["micro_batch_size"], recorded["remat"]) == (2, "none")
    rows = [json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()]
    assert [r["accum_steps"] for r in rows if "loss" in r] == [2, 2]
