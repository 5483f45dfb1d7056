"""Runs survive their faults: a corrupt newest checkpoint falls back to the previous one and the run
redoes the same steps; with none readable it stops with one line; SIGTERM saves the current step; a
failing checkpoint write stops the run naming the path and leaves the previous checkpoint loadable; a
killed evaluation resumes to the same files; changed evaluation arguments are refused unless
--overwrite. (SIGKILL resume and non-finite steps: tests/test_train.py.)"""

import errno
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

TINY = os.path.join(REPO, "configs", "tiny.py")
# 12 steps, a checkpoint every 4: orbax keeps steps 8 and 12.
ARGS = ["--config.total_steps=12", "--config.checkpoint_every_steps=4", "--config.keep_checkpoints=2"]


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _steps(workdir):
    return [r for r in _rows(workdir) if "event" not in r]


def _params(workdir, step=12):
    """The trainable leaves of a checkpoint as saved (read straight from orbax: no model to build)."""
    import orbax.checkpoint as ocp

    from jaxft.train.checkpoint import Checkpointer

    ck = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    ck.verify(step)
    saved = ck.manager.restore(step, args=ocp.args.Composite(trainable=ocp.args.StandardRestore()))["trainable"]
    ck.close()
    return {k: np.asarray(v) for k, v in saved.items()}


def _train_main(workdir, *extra):
    from jaxft.train.__main__ import main

    return main([f"--config={TINY}", f"--workdir={workdir}", *ARGS, *extra])


def _flip(path, n=8):
    data = bytearray(open(path, "rb").read())
    for i in range(len(data) // 2, len(data) // 2 + n):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


@pytest.fixture(scope="module", autouse=True)
def one_tokenizer_load():
    """Every in-process run here reads SmolLM2's tokenizer from the GGUF: once is enough (seconds each)."""
    import functools

    import jaxft.models

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jaxft.models, "load_tokenizer", functools.lru_cache(jaxft.models.load_tokenizer))
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted 12-step run: its metrics and final parameters are what every recovery must reach."""
    w = str(tmp_path_factory.mktemp("reference") / "run")
    assert _train_main(w) == 0
    return w, [(r["step"], r["loss"], r["grad_norm"]) for r in _steps(w)], _params(w)


def _assert_same_run(workdir, reference):
    _, ref_rows, ref_params = reference
    assert [(r["step"], r["loss"], r["grad_norm"]) for r in _steps(workdir)] == ref_rows
    params = _params(workdir)
    assert params.keys() == ref_params.keys()
    for k in params:
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)


def test_corrupt_newest_checkpoint_falls_back_and_redoes_the_same_steps(reference, tmp_path, capsys):
    """Bytes flipped in the largest array file of step 12 (orbax itself would read them back without
    complaint: the checksums catch it). The rerun says which step and file, moves step 12 aside, resumes
    from step 8 and ends with exactly the losses and parameters of the run that was never broken."""
    from jaxft.train.checkpoint import Checkpointer

    w = str(tmp_path / "w")
    shutil.copytree(reference[0], w)
    files = [f for f in glob.glob(os.path.join(w, "checkpoints", "12", "trainable", "**"), recursive=True)
             if os.path.isfile(f)]
    victim = max(files, key=os.path.getsize)
    _flip(victim)
    capsys.readouterr()
    assert _train_main(w) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: step 12 is unreadable: {victim}: " in out and "resuming from step 8" in out

    events = [r for r in _rows(w) if "event" in r]
    assert len(events) == 1 and events[0]["unreadable_step"] == 12 and events[0]["file"] == victim
    assert events[0]["resumed_from"] == 8 and "CRC-32" in events[0]["error"]
    moved = glob.glob(os.path.join(w, "checkpoints", "12.corrupt-*"))
    assert moved == [events[0]["moved_to"]]
    assert os.path.isfile(victim.replace(os.path.join(w, "checkpoints", "12"), moved[0]))
    _assert_same_run(w, reference)
    ck = Checkpointer(os.path.join(w, "checkpoints"), async_save=False)
    assert list(ck.manager.all_steps()) == [8, 12]
    ck.verify(12)  # the redone step 12 was saved with fresh checksums
    ck.close()


def test_no_readable_checkpoint_stops_with_one_line_naming_the_workdir(reference, tmp_path):
    """Step 12 saved without checksums (an older save, or killed before they were written) with a
    flipped b-tree file: TensorStore's own read error. Step 8 without its commit marker. The run stops
    with exit 2 and one line naming the workdir and both faults; nothing is moved, nothing restarted."""
    from jaxft.train.checkpoint import Checkpointer, UnreadableCheckpoint

    w = str(tmp_path / "w")
    shutil.copytree(reference[0], w)
    ckpt = os.path.join(w, "checkpoints")
    os.remove(os.path.join(ckpt, "12", "checksums.json"))
    for f in glob.glob(os.path.join(ckpt, "12", "trainable", "d", "*")):
        _flip(f)
    marker = os.path.join(ckpt, "8", "commit_success.txt")
    writes_markers = os.path.isfile(marker)  # orbax 0.12.0 (the range's lower end) writes none locally
    if writes_markers:
        os.remove(marker)
    else:  # break step 8 another way: a missing item
        shutil.rmtree(os.path.join(ckpt, "8", "meta"))
    before = open(os.path.join(w, "metrics.jsonl")).read()

    proc = subprocess.run([sys.executable, "-m", "jaxft.train", f"--config={TINY}", f"--workdir={w}", *ARGS],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: {w}: none of its checkpoints can be read")
    assert "step 12: " in lines[0] and "CRC-32C checksum verification failed" in lines[0]
    if writes_markers:
        assert f"step 8: {ckpt}/8/commit_success.txt: no commit marker" in lines[0]
    else:
        assert f"step 8: {ckpt}/8/meta: item 'meta' is missing" in lines[0]
    assert sorted(os.listdir(ckpt)) == ["12", "8"]
    assert open(os.path.join(w, "metrics.jsonl")).read() == before

    # A missing item is named by its directory.
    shutil.rmtree(os.path.join(ckpt, "12", "meta"))
    ck = Checkpointer(ckpt, async_save=False)
    with pytest.raises(UnreadableCheckpoint, match=f"checkpoint step 12: {ckpt}/12/meta: item 'meta' is missing"):
        ck.verify(12)
    ck.close()


def test_sigterm_saves_the_current_step_and_the_rerun_finishes_the_same(reference, tmp_path, monkeypatch):
    """SIGTERM while step 7 runs (sent as step 6's metrics are written): the run saves step 7, which
    is no checkpoint_every_steps multiple, says it was interrupted and exits 0; the rerun resumes there
    and ends with the losses and parameters of the run that was never stopped."""
    import signal

    from jaxft.train.checkpoint import Checkpointer
    from jaxft.train.telemetry import MetricsLog

    write = MetricsLog.write

    def write_then_term(self, row, prefix="train"):
        write(self, row, prefix)
        if row["step"] == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    w = str(tmp_path / "w")
    monkeypatch.setattr(MetricsLog, "write", write_then_term)
    assert _train_main(w) == 0
    monkeypatch.undo()
    assert json.load(open(os.path.join(w, "summary.json")))["interrupted"] is True
    ck = Checkpointer(os.path.join(w, "checkpoints"), async_save=False)
    assert list(ck.manager.all_steps()) == [4, 7]
    ck.verify(7)
    ck.close()
    assert _train_main(w) == 0
    _assert_same_run(w, reference)


@pytest.mark.parametrize("where", ["handler", "commit"])
def test_failing_checkpoint_write_stops_the_run_and_keeps_the_previous_one(reference, tmp_path, capsys,
                                                                            monkeypatch, where):
    """A full or read-only disk (root ignores chmod, so the writer raises): "handler" fails while step 8's
    files are written (raised at once), "commit" when its directory gets its final name (in orbax's
    background thread: raised at the next save). Either way exit 2 with one line naming step 8 and the
    path; step 4 (the only one kept) stays loadable, metrics.jsonl stays readable, and a rerun resumes
    from step 4 to the same losses and parameters as the run that never failed (checked once)."""
    from orbax.checkpoint._src.path import async_path

    from jaxft.train import checkpoint as ckpt_lib

    w = str(tmp_path / "w")
    if where == "handler":
        save = ckpt_lib.ProcessStateHandler.save

        def failing(self, directory, args):
            if os.path.basename(str(directory.parent)).startswith("8."):
                raise OSError(errno.ENOSPC, "No space left on device", str(directory / "process_0-of-1.json"))
            return save(self, directory, args)

        monkeypatch.setattr(ckpt_lib.ProcessStateHandler, "save", failing)
        blamed = f"{w}/checkpoints/8.orbax-checkpoint-tmp"
    else:
        rename = async_path.rename

        async def failing(src, dst):
            if str(dst) == f"{w}/checkpoints/8":
                raise OSError(errno.EROFS, "Read-only file system", str(dst))
            return await rename(src, dst)

        monkeypatch.setattr(async_path, "rename", failing)
        blamed = f"{w}/checkpoints/8'"
    capsys.readouterr()
    assert _train_main(w, "--config.keep_checkpoints=1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot write checkpoint step 8 in {w}/checkpoints: ") and blamed in err[-1]
    assert not any("Traceback" in line for line in err)
    assert [d for d in os.listdir(os.path.join(w, "checkpoints")) if d.isdigit()] == ["4"]
    ck = ckpt_lib.Checkpointer(os.path.join(w, "checkpoints"), async_save=False)
    ck.verify(4)
    ck.close()
    assert _params(w, step=4).keys() == reference[2].keys()
    assert [r["step"] for r in _rows(w)][:4] == [1, 2, 3, 4]
    if where == "handler":  # the rerun is the same either way: once is enough
        monkeypatch.undo()
        assert _train_main(w) == 0
        _assert_same_run(w, reference)


# --- evaluation --------------------------------------------------------------------------------------

KILL_AFTER = """
import os, signal, sys
from jaxft.eval import resume

append = resume.EvalOutput.append

def append_then_die(self, rows):  # SIGKILL right after a chunk reached the disk
    append(self, rows)
    if len(self.done) >= int(os.environ["JAXFT_TEST_KILL_AFTER_ROWS"]):
        os.kill(os.getpid(), signal.SIGKILL)

resume.EvalOutput.append = append_then_die
from jaxft.eval.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama with SmolLM2's tokenizer: the CLI loads it like any HF directory."""
    from hf_tiny import make_hf_model

    from jaxft.models import load_tokenizer

    d = str(tmp_path_factory.mktemp("tiny_hf"))
    tok = load_tokenizer("smollm2-135m-instruct-q4")
    make_hf_model("llama", 0, d, weight_scale=4.0, vocab_size=len(tok), max_position_embeddings=1024,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    tok.save_pretrained(d)
    return d


def _eval(model_dir, out, *extra, killer=False, kill_after=0):
    argv = [f"--model={model_dir}", "--task=gsm8k", "--limit=8", "--batch_size=2", "--max_new_tokens=16",
            f"--output_dir={out}", *extra]
    cmd = [sys.executable, "-c", KILL_AFTER, *argv] if killer else [sys.executable, "-m", "jaxft.eval", *argv]
    env = dict(os.environ, JAXFT_TEST_KILL_AFTER_ROWS=str(kill_after))
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_killed_evaluation_resumes_to_the_same_files(tiny_model_dir, tmp_path):
    """8 problems, 2 decoded at a time: SIGKILL once 3 are on disk (after the second chunk, so 4), plus
    half a line as a kill mid-write would leave. The rerun decodes only the other 4 and writes the same
    predictions.jsonl and metrics.json as an uninterrupted run; only the timing fields may differ."""
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    proc = _eval(tiny_model_dir, straight)
    assert proc.returncode == 0, proc.stderr[-3000:]

    proc = _eval(tiny_model_dir, resumed, killer=True, kill_after=3)
    assert proc.returncode == -9, proc.stderr[-3000:]
    partial = os.path.join(resumed, "predictions.partial.jsonl")
    done = [json.loads(line) for line in open(partial)]
    assert len(done) == 4 and not os.path.exists(os.path.join(resumed, "metrics.json"))
    with open(partial, "a") as f:
        f.write('{"index": 7, "id": "x", "generation": "half a li')

    proc = _eval(tiny_model_dir, resumed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 problems already done, continuing" in proc.stdout
    assert not os.path.exists(partial)
    assert open(os.path.join(resumed, "predictions.jsonl")).read() == \
        open(os.path.join(straight, "predictions.jsonl")).read()
    preds = [json.loads(line) for line in open(os.path.join(resumed, "predictions.jsonl"))]
    from jaxft.data.tasks import load_task

    assert [p["id"] for p in preds] == [ex.id for ex in load_task("gsm8k", "test", limit=8)]  # problem order
    for row in done:  # what was on disk before the kill is what the final file holds
        assert preds[row["index"]]["generation"] == row["generation"]
    timing = ("seconds", "tokens_per_second")
    a, b = (json.load(open(os.path.join(d, "metrics.json"))) for d in (straight, resumed))
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert a["n"] == 8 and a["generated_tokens"] > 0

    # Other arguments over it: refused in one line, nothing touched; --overwrite starts over.
    before = {f: open(os.path.join(resumed, f)).read() for f in os.listdir(resumed)}
    proc = _eval(tiny_model_dir, resumed, "--max_new_tokens=8")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-3000:]
    assert f"error: {resumed}: holds an evaluation with other arguments (max_new_tokens: 16 -> 8)" in proc.stderr
    assert "--overwrite" in proc.stderr
    assert {f: open(os.path.join(resumed, f)).read() for f in os.listdir(resumed)} == before
    proc = _eval(tiny_model_dir, resumed, "--max_new_tokens=8", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.load(open(os.path.join(resumed, "metrics.json")))["decoding"]["max_new_tokens"] == 8
    assert json.load(open(os.path.join(resumed, "fingerprint.json")))["max_new_tokens"] == 8


def test_eval_output_continues_refuses_or_restarts(tmp_path):
    """The state machine under the CLI, training and the study: same arguments continue (a torn last
    line dropped), other ones raise ConfigError naming what changed or, with if_changed="restart" (how
    training and the study call it), start over; a finished output is returned as it is."""
    from jaxft.errors import ConfigError
    from jaxft.eval.resume import EvalOutput

    d = str(tmp_path / "out")
    args = {"model": "m", "identity": {"step": 4}, "max_new_tokens": 16}
    out = EvalOutput(d, args, n=3)
    out.prepare()
    out.append([{"index": 2, "generation": "x", "generated_tokens": 1}])
    with open(os.path.join(d, "predictions.partial.jsonl"), "a") as f:
        f.write('{"index": 0, "gen')
    again = EvalOutput(d, args, n=3)
    assert list(again.done) == [2] and not again.fresh
    again.prepare()
    assert open(os.path.join(d, "predictions.partial.jsonl")).read() == \
        '{"index": 2, "generation": "x", "generated_tokens": 1}\n'

    changed = dict(args, identity={"step": 8})
    with pytest.raises(ConfigError, match=r'identity: \{"step": 4\} -> \{"step": 8\}.*--overwrite'):
        EvalOutput(d, changed, n=3)
    restarted = EvalOutput(d, changed, n=3, if_changed="restart", log=lambda line: None)
    assert restarted.fresh and not restarted.done
    restarted.prepare()
    assert not os.path.exists(os.path.join(d, "predictions.partial.jsonl"))
    restarted.append([{"index": 0, "generation": "y", "generated_tokens": 1}])
    restarted.finish([{"generation": "y"}], {"n": 1})
    finished = EvalOutput(d, changed, n=3)
    assert finished.metrics == {"n": 1} and not os.path.exists(os.path.join(d, "predictions.partial.jsonl"))
