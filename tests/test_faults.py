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

from conftest import REPO, needs_shared

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


def _copy_with_step12_corrupted(reference, tmp_path):
    """A copy of the reference workdir whose step-12 checkpoint has bytes flipped in its largest file."""
    w = str(tmp_path / "w")
    shutil.copytree(reference[0], w)
    files = [f for f in glob.glob(os.path.join(w, "checkpoints", "12", "trainable", "**"), recursive=True)
             if os.path.isfile(f)]
    victim = max(files, key=os.path.getsize)
    _flip(victim)
    return w, victim


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

    w, victim = _copy_with_step12_corrupted(reference, tmp_path)
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


# --- restore for export and analysis -----------------------------------------------------------------


def test_restore_model_falls_back_to_the_newest_readable_step_like_training(reference, tmp_path):
    """Export and analysis over a workdir whose step 12 has flipped bytes: restore_model prints the line
    training prints for it, restores step 8 (its parameters as orbax saved them) and moves nothing (the
    next training run does). Asking for step 12 by name stays an error naming the step and file."""
    import jax

    from jaxft.errors import CheckpointError
    from jaxft.export import main as export_main
    from jaxft.peft import split_params
    from jaxft.train.restore import restore_model

    w, victim = _copy_with_step12_corrupted(reference, tmp_path)
    lines = []
    model, _, c = restore_model(w, log=lines.append)
    assert len(lines) == 2 and lines[0].startswith(f"checkpoint: step 12 is unreadable: {victim}: ")  # as training
    assert "CRC-32" in lines[0] and lines[1] == "checkpoint: restoring step 8, the newest readable one"
    _, trainable, _ = split_params(model, c.method)
    saved = _params(w, step=8)  # leaf_00000, ... number the leaves in jax's flattening order
    leaves = jax.tree_util.tree_leaves(trainable)
    assert len(leaves) == len(saved)
    for k, leaf in zip(sorted(saved), leaves):
        np.testing.assert_array_equal(np.asarray(leaf), saved[k], err_msg=k)  # exact: the saved values
    assert sorted(os.listdir(os.path.join(w, "checkpoints"))) == ["12", "8"]
    with pytest.raises(CheckpointError, match=f"checkpoint step 12: {victim}: .*other saved steps: \\[8\\]"):
        restore_model(w, step=12)
    assert export_main([f"--checkpoint={w}", f"--out={tmp_path / 'peft'}", "--format=peft"]) == 0
    assert os.path.isfile(tmp_path / "peft" / "adapter_model.safetensors")


# --- failing writes: disk full (ENOSPC) and no permission (EACCES) ------------------------------------

FULL, DENIED = errno.ENOSPC, errno.EACCES


def _fail_writes(monkeypatch, path, err, *, after=0):
    """Writes of `path`, or of the temporary an atomic write renames over it, fail with `err` from the
    (after+1)-th open for writing on: EACCES when the file is opened (a read-only directory or file),
    ENOSPC once half of a write reached the disk. Root ignores file modes, so the OS calls are patched."""
    real_open, real_write, real_close = os.open, os.write, os.close
    folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    state = {"opens": 0, "fds": set()}

    def targeted(p):
        p = os.path.abspath(os.fsdecode(p))
        base = os.path.basename(p)
        return os.path.dirname(p) == folder and (base == name or base.startswith(f".{name}.tmp-"))

    def fake_open(p, flags, *args, **kwargs):
        if targeted(p) and flags & (os.O_WRONLY | os.O_RDWR):
            state["opens"] += 1
            if state["opens"] > after:
                if err == DENIED:
                    raise OSError(err, os.strerror(err), os.fsdecode(p))
                fd = real_open(p, flags, *args, **kwargs)
                state["fds"].add(fd)
                return fd
        return real_open(p, flags, *args, **kwargs)

    def fake_write(fd, data):
        if fd in state["fds"]:
            if len(data) > 1:
                return real_write(fd, bytes(data[:len(data) // 2]))
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    def fake_close(fd):
        state["fds"].discard(fd)
        return real_close(fd)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)
    monkeypatch.setattr(os, "close", fake_close)
    return state


def _one_error_line(err_text, path, err):
    """stderr holds one error, on a line of its own (progress bars end theirs first), and no traceback."""
    expected = f"error: cannot write {path}: {os.strerror(err)}"
    assert "Traceback" not in err_text and err_text.count("error:") == 1, err_text[-3000:]
    assert f"\n{expected}\n" in f"\n{err_text}", err_text[-3000:]


def test_failing_metrics_append_stops_the_run_naming_the_file(reference, tmp_path, capsys, monkeypatch):
    """The disk fills while metrics.jsonl takes step 6's line: exit 2 with one line naming the file; the
    five lines before are intact (the half line written is cut back) and the step-4 checkpoint loads.
    Permission denied on an append: WriteError the same way, the file as it was."""
    from jaxft.errors import WriteError
    from jaxft.jsonl import read_jsonl
    from jaxft.train.telemetry import MetricsLog

    w = str(tmp_path / "w")
    metrics = os.path.join(w, "metrics.jsonl")
    state = _fail_writes(monkeypatch, metrics, FULL, after=5)
    capsys.readouterr()
    assert _train_main(w) == 2
    monkeypatch.undo()
    assert state["opens"] == 6  # the sixth append failed, and the run stopped there
    _one_error_line(capsys.readouterr().err, metrics, FULL)
    before = open(metrics, "rb").read()
    assert before.endswith(b"}\n")
    _, ref_rows, _ = reference
    assert [(r["step"], r["loss"], r["grad_norm"]) for r in read_jsonl(metrics)] == ref_rows[:5]
    assert _params(w, step=4).keys() == reference[2].keys()

    log = MetricsLog.__new__(MetricsLog)  # the append alone, without TensorBoard
    log.enabled, log.path = True, metrics
    _fail_writes(monkeypatch, metrics, DENIED)
    with pytest.raises(WriteError, match=f"cannot write {metrics}: Permission denied"):
        log.event({"step": 5, "event": "x"})
    monkeypatch.undo()
    assert open(metrics, "rb").read() == before


@pytest.mark.parametrize("name", ["metrics.jsonl", "summary.json"])
@pytest.mark.parametrize("err", [FULL, DENIED], ids=["ENOSPC", "EACCES"])
def test_failing_rewrite_keeps_the_previous_file(reference, tmp_path, capsys, monkeypatch, name, err):
    """A finished workdir rerun (nothing left to train) rewrites metrics.jsonl (the lines up to the
    restored step) and summary.json, each atomically. On a full or read-only disk: exit 2 naming the file,
    and the previous one is still there, byte for byte, with no temporary left beside it."""
    w = str(tmp_path / "w")
    shutil.copytree(reference[0], w)
    path = os.path.join(w, name)
    before = open(path, "rb").read()
    _fail_writes(monkeypatch, path, err)
    capsys.readouterr()
    assert _train_main(w) == 2
    monkeypatch.undo()
    _one_error_line(capsys.readouterr().err, path, err)
    assert open(path, "rb").read() == before
    assert not [f for f in os.listdir(w) if f.startswith(f".{name}.tmp-")]


@pytest.fixture
def fake_eval(monkeypatch):
    """`python -m jaxft.eval` in this process with loading and decoding replaced (a model of no weights;
    generation i of a call says "The answer is i.", finished two at a time as decoding would): what is
    under test is the output directory. Returns (main, the prompt counts decoded per call)."""
    import types

    import jaxft.models
    from jaxft.eval import runner
    from jaxft.eval.__main__ import main

    calls = []

    def fake_generate(model, tokenizer, prompts, decode, *, stats=None, on_generations=None):
        calls.append(len(prompts))
        out = [types.SimpleNamespace(text=f" The answer is {i}.", token_ids=[0]) for i in range(len(prompts))]
        for start in range(0, len(out), 2):
            on_generations({j: out[j] for j in range(start, min(start + 2, len(out)))})
        return out

    monkeypatch.setattr(jaxft.models, "load_model", lambda *a, **k: (types.SimpleNamespace(dtype="float32"), None))
    monkeypatch.setattr(runner, "generate", fake_generate)
    return main, calls


def _eval_argv(out):
    return ["--model=fake", "--task=gsm8k", "--limit=6", "--batch_size=2", f"--output_dir={out}"]


@needs_shared
@pytest.mark.parametrize("name,after,decoded_again", [("predictions.partial.jsonl", 1, 4), ("predictions.jsonl", 0, 0),
                                                      ("metrics.json", 0, 0)])
@pytest.mark.parametrize("err", [FULL, DENIED], ids=["ENOSPC", "EACCES"])
def test_failing_eval_write_exits_2_and_the_rerun_loses_nothing(fake_eval, tmp_path, capsys, name, after,
                                                                  decoded_again, err):
    """The second chunk of finished predictions, predictions.jsonl or metrics.json cannot be written: exit 2
    with one line naming the file; every finished row before it is on disk (complete lines only), so the
    rerun decodes only what was never written and ends with each of the 6 problems exactly once."""
    from jaxft.data.tasks import load_task

    main, calls = fake_eval
    out = str(tmp_path / "out")
    path = os.path.join(out, name)
    os.makedirs(out)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as fault:  # undone alone: the fixture's fakes stay
        _fail_writes(fault, path, err, after=after)
        assert main(_eval_argv(out)) == 2
    _one_error_line(capsys.readouterr().err, path, err)
    partial = os.path.join(out, "predictions.partial.jsonl")
    kept = [json.loads(line) for line in open(partial)]
    assert open(partial, "rb").read().endswith(b"}\n")
    assert len(kept) == (2 if name == "predictions.partial.jsonl" else 6)
    assert not os.path.exists(os.path.join(out, "metrics.json"))
    assert os.path.exists(os.path.join(out, "predictions.jsonl")) == (name == "metrics.json")

    assert main(_eval_argv(out)) == 0
    assert calls == [6, decoded_again]
    preds = [json.loads(line) for line in open(os.path.join(out, "predictions.jsonl"))]
    assert [p["id"] for p in preds] == [ex.id for ex in load_task("gsm8k", "test", limit=6)]
    assert json.load(open(os.path.join(out, "metrics.json")))["n"] == 6
    assert not os.path.exists(partial)


# --- malformed JSON Lines ----------------------------------------------------------------------------


def test_a_damaged_metrics_line_is_named_not_dropped(reference, tmp_path, capsys):
    """A cut last line is what a kill leaves (dropped, the step redone); a bad line with more after it is
    damage: rerunning the workdir stops with exit 2 and one line naming metrics.jsonl and the line
    number, and the file is left as it was (nothing after the line silently thrown away)."""
    from jaxft.jsonl import read_jsonl

    w = str(tmp_path / "w")
    shutil.copytree(reference[0], w)
    path = os.path.join(w, "metrics.jsonl")
    lines = open(path).read().splitlines(keepends=True)
    damaged = "".join(lines[:2] + ['{"step": 3, "loss": 1.2\n'] + lines[3:])
    open(path, "w").write(damaged)
    capsys.readouterr()
    assert _train_main(w) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"\nerror: {path}:3: malformed JSON (" in f"\n{err}", err[-3000:]
    assert open(path).read() == damaged
    open(path, "w").write("".join(lines) + '{"step": 13, "lo')  # a torn tail only: read up to it
    assert len(read_jsonl(path, torn_tail=True)) == len(lines)


@needs_shared
def test_a_damaged_prediction_line_is_named(fake_eval, tmp_path, capsys):
    """predictions.partial.jsonl with a bad line before the last one: exit 2 naming the file and line,
    nothing touched; the same bad line as the last one is a torn chunk, redone by the rerun."""
    main, calls = fake_eval
    out = str(tmp_path / "out")
    with pytest.MonkeyPatch.context() as stop:  # a run that ends after its first chunk (2 rows on disk)
        from jaxft.eval import resume

        append = resume.EvalOutput.append

        def append_then_stop(self, rows):
            append(self, rows)
            raise KeyboardInterrupt

        stop.setattr(resume.EvalOutput, "append", append_then_stop)
        with pytest.raises(KeyboardInterrupt):
            main(_eval_argv(out))
    partial = os.path.join(out, "predictions.partial.jsonl")
    good = open(partial).read().splitlines(keepends=True)
    assert len(good) == 2
    damaged = good[0] + '{"index": 1, "generation": "x"\n' + good[1]
    open(partial, "w").write(damaged)
    capsys.readouterr()
    assert main(_eval_argv(out)) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"error: {partial}:2: not a complete prediction row" in err
    assert "--overwrite" in err and open(partial).read() == damaged
    open(partial, "w").write(good[0] + '{"index": 1, "generation": "x"\n')  # the last line: a torn chunk
    assert main(_eval_argv(out)) == 0
    assert calls == [6, 5]  # row 0 kept, the other five decoded


def test_sigterm_during_an_evaluation_then_the_same_command_loses_and_repeats_nothing(tiny_model_dir, tmp_path):
    """`python -m jaxft.eval` on a tiny model gets SIGTERM from outside while it decodes (once two rows are
    on disk, at whatever point decoding is then). Rerunning the same command continues: every one of the
    24 problems is in predictions.jsonl exactly once, in problem order, the rows finished before the
    signal unchanged, and only the others were decoded again."""
    import signal
    import time

    from jaxft.data.tasks import load_task

    out = str(tmp_path / "out")
    argv = [sys.executable, "-m", "jaxft.eval", f"--model={tiny_model_dir}", "--task=gsm8k", "--limit=24",
            "--batch_size=2", "--max_new_tokens=24", f"--output_dir={out}"]
    partial = os.path.join(out, "predictions.partial.jsonl")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if os.path.exists(partial) and open(partial, "rb").read().count(b"\n") >= 2:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.005)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGTERM, stderr[-3000:]  # stopped by the signal, not finished
    before = {}
    with open(partial, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                row = json.loads(line)
                before[row["index"]] = row["generation"]
    assert 2 <= len(before) < 24 and not os.path.exists(os.path.join(out, "metrics.json"))

    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{len(before)} problems already done, continuing" in proc.stdout
    preds = [json.loads(line) for line in open(os.path.join(out, "predictions.jsonl"))]
    ids = [p["id"] for p in preds]
    assert ids == [ex.id for ex in load_task("gsm8k", "test", limit=24)] and len(set(ids)) == 24
    for i, text in before.items():
        assert preds[i]["generation"] == text
    assert json.load(open(os.path.join(out, "metrics.json")))["n"] == 24
    assert not os.path.exists(partial)


# --- failing export writes ---------------------------------------------------------------------------

EXPORTS = {"merged": "merged", "peft": "peft", "gguf": "model.gguf"}


@pytest.fixture(scope="module")
def exports(reference, tmp_path_factory):
    """The reference run exported once in each format: the previous complete output a failed export must keep."""
    from jaxft.export import main as export_main

    d = tmp_path_factory.mktemp("exports")
    for fmt, name in EXPORTS.items():
        assert export_main([f"--checkpoint={reference[0]}", f"--out={d / name}", f"--format={fmt}"]) == 0
    return d


def _tree_bytes(path):
    if os.path.isfile(path):
        return open(path, "rb").read()
    return {os.path.relpath(os.path.join(root, f), path): open(os.path.join(root, f), "rb").read()
            for root, _, files in os.walk(path) for f in files}


@pytest.mark.parametrize("fmt", list(EXPORTS))
@pytest.mark.parametrize("err", [FULL, DENIED], ids=["ENOSPC", "EACCES"])
def test_failing_export_write_keeps_the_previous_export(reference, exports, tmp_path, capsys, monkeypatch, fmt, err):
    """Exporting over a previous export on a full disk (the library writing the weights fails) or into a
    directory that refuses the temporary: exit 2 with one line naming the output, the previous export
    intact byte for byte, and no temporary left."""
    import gguf

    from jaxft.export import main as export_main
    from jaxft.peft import export as peft_export

    out = str(tmp_path / EXPORTS[fmt])
    (shutil.copy if fmt == "gguf" else shutil.copytree)(str(exports / EXPORTS[fmt]), out)
    before = _tree_bytes(out)
    if err == FULL:
        def full(*args, **kwargs):
            raise OSError(FULL, os.strerror(FULL))

        if fmt == "gguf":
            monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
        else:
            monkeypatch.setattr(peft_export, "_save_safetensors", full)
    elif fmt == "gguf":
        _fail_writes(monkeypatch, out, DENIED)
    else:
        mkdir = os.mkdir

        def denied(p, *args, **kwargs):
            if os.path.basename(os.fsdecode(p)).startswith(f".{EXPORTS[fmt]}.tmp-"):
                raise OSError(DENIED, os.strerror(DENIED), os.fsdecode(p))
            return mkdir(p, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", denied)
    capsys.readouterr()
    assert export_main([f"--checkpoint={reference[0]}", f"--out={out}", f"--format={fmt}", "--overwrite"]) == 2
    monkeypatch.undo()
    _one_error_line(capsys.readouterr().err, out, err)
    assert _tree_bytes(out) == before
    assert os.listdir(tmp_path) == [EXPORTS[fmt]]
