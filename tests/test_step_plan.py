"""Step accounting: `global_batch_size` examples per step, an epoch uses every example exactly once,
static row counts, and the loop's metrics and summary say so (also across a resume)."""

import json
import os

import numpy as np
import pytest

from jaxft.data.pipeline import StepPlan, make_dataset
from jaxft.errors import DataError


def records_of(lengths, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        loss = np.zeros(n, np.int32)
        loss[n // 2:] = 1
        out.append({"tokens": rng.integers(3, 1000, n).astype(np.int32), "loss": loss,
                    "example": np.full(n, 1000 + i, np.int32)})
    return out


def lengths(n, seed=1, lo=20, hi=200):
    return np.random.default_rng(seed).integers(lo, hi, n).tolist()


@pytest.mark.parametrize("n,batch,packing", [(96, 16, True), (100, 16, True), (37, 8, False), (5, 8, True)])
def test_each_epoch_uses_every_example_once(n, batch, packing):
    recs = records_of(lengths(n))
    plan = StepPlan([len(r["tokens"]) for r in recs], batch_size=batch, seq_len=256, seed=3, num_epochs=2,
                    packing=packing)
    assert plan.steps_per_epoch == -(-n // batch) and plan.total_steps == 2 * plan.steps_per_epoch
    seen = {0: [], 1: []}
    shapes = set()
    for step, (b, info) in enumerate(make_dataset(recs, plan)):
        shapes.add(b["input_ids"].shape)
        starts = (b["positions"] == 0) & (b["segment_ids"] > 0)
        in_rows = sorted(b["example"][starts].tolist())
        assert in_rows == info["examples"]  # the rows hold exactly the step's examples
        assert info["tokens"] == int((b["segment_ids"] > 0).sum()) == sum(
            len(recs[e - 1000]["tokens"]) for e in in_rows)  # no example truncated by packing
        seen[plan.epoch_of(step)] += info["examples"]
        full = (step % plan.steps_per_epoch) < plan.steps_per_epoch - 1
        assert len(info["examples"]) == (batch if full or n % batch == 0 else n % batch)
    assert shapes == {(plan.rows, 256)}
    for epoch in (0, 1):
        assert sorted(seen[epoch]) == list(range(1000, 1000 + n)), epoch
    if plan.steps_per_epoch > 1:  # a fresh order per epoch
        assert [plan.step_examples(s).tolist() for s in range(plan.steps_per_epoch)] != \
            [plan.step_examples(s).tolist() for s in range(plan.steps_per_epoch, plan.total_steps)]
    if n % batch == 0:
        assert np.mean([len(plan.step_examples(s)) for s in range(plan.total_steps)]) == batch
    assert plan.epoch_progress(plan.steps_per_epoch) == 1.0
    assert plan.epoch_progress(plan.total_steps) == 2.0


def test_packing_uses_fewer_rows_than_examples_and_fits_every_step():
    lens = lengths(640, lo=40, hi=120)
    plan = StepPlan(lens, batch_size=64, seq_len=512, seed=0)
    needed = [len(plan.bins[s]) for s in range(plan.total_steps)]
    # 64 examples of ~80 tokens: ~10 rows of 512, far from one row per example
    assert plan.rows == max(needed) < 64 and plan.rows >= -(-sum(lens[:64]) // 512)
    for s in range(plan.total_steps):
        for row in plan.bins[s]:
            assert sum(lens[i] for i in row) <= 512
    assert 0.0 <= plan.padding_fraction < 0.25


def test_rows_per_step_and_row_multiple():
    lens = lengths(64, lo=40, hi=120)
    auto = StepPlan(lens, batch_size=64, seq_len=512, seed=0)
    assert StepPlan(lens, batch_size=64, seq_len=512, seed=0, row_multiple=8).rows % 8 == 0
    assert StepPlan(lens, batch_size=64, seq_len=512, seed=0, rows_per_step=auto.rows + 5).rows == auto.rows + 5
    with pytest.raises(DataError, match=r"rows_per_step=1 is too small: step 1 needs \d+ rows"):
        StepPlan(lens, batch_size=64, seq_len=512, seed=0, rows_per_step=1)
    with pytest.raises(DataError, match="no training examples"):
        StepPlan([], batch_size=4, seq_len=64, seed=0)


def test_total_steps_runs_on_across_epochs():
    plan = StepPlan(lengths(10), batch_size=4, seq_len=256, seed=0, total_steps=7)
    assert plan.steps_per_epoch == 3 and plan.total_steps == 7
    first = [i for s in range(3) for i in plan.step_examples(s)]
    second = [i for s in range(3, 6) for i in plan.step_examples(s)]
    assert sorted(first) == sorted(second) == list(range(10))
    assert plan.epoch_progress(7) == 2.4  # steps 1-6 = 2 epochs, step 7 = 4 of 10 examples


def test_processes_split_the_rows_of_a_step():
    recs = records_of(lengths(32))
    plan = StepPlan([len(r["tokens"]) for r in recs], batch_size=16, seq_len=256, seed=0, row_multiple=2)
    whole = [b for b, _ in make_dataset(recs, plan)]
    halves = [[b for b, _ in make_dataset(recs, plan, process_index=p, process_count=2)] for p in (0, 1)]
    for w, h0, h1 in zip(whole, *halves):
        for k in w:
            np.testing.assert_array_equal(np.concatenate([h0[k], h1[k]]), w[k])


def test_one_epoch_in_the_loop_metrics_and_summary(tmp_path):
    """total_steps=0 trains exactly one epoch of 24 examples at 8 per step: 3 steps; metrics and summary
    count examples and epochs; data_stats.json states the rows and padding."""
    from conftest import REPO
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    c = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
    c.data.limit, c.global_batch_size, c.total_steps, c.data.seq_len = 24, 8, 0, 512
    c.checkpoint_every_steps = 100
    w = str(tmp_path / "w")
    summary = train(c, w, progress=False)
    with open(os.path.join(w, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["examples"] for r in rows] == [8, 8, 8]
    assert [round(r["epoch"], 6) for r in rows] == [round(1 / 3, 6), round(2 / 3, 6), 1.0]
    assert summary["examples"] == 24 and summary["epochs"] == 1.0 and summary["steps"] == 3
    # the host's load over the timed steps (steps 2-3), for the report's shared-machine mark
    assert summary["host_cpus"] == os.cpu_count() and summary["host_load"] >= 0.0
    with open(os.path.join(w, "data_stats.json")) as f:
        stats = json.load(f)
    assert stats["examples_per_step"] == 8 and stats["steps_per_epoch"] == 3
    assert 1 <= stats["rows_per_step"] < 8  # GSM8K examples (~150-250 tokens) share rows of 512
