"""Evaluation settings are defined once and reach the decoder from every front door: a training config's
`eval` section, a study config's `eval` section (refill included) and `python -m jaxft.eval` flags."""

import json
import os

import pytest

from conftest import REPO, needs_shared
from jaxft.errors import ConfigError
from jaxft.eval import runner
from jaxft.eval.generate import DecodeSettings
from jaxft.eval.settings import DECODING_KEYS, PROBLEM_KEYS, EvalSettings, eval_settings_from

TINY = os.path.join(REPO, "configs", "tiny.py")


def test_section_fields_then_overrides_and_defaults_for_missing_keys():
    section = {"task": "svamp", "batch_size": 8, "every_steps": 5, "final_limit": 3}  # no refill: an old workdir
    s = eval_settings_from(section, limit=3, data_dir="", seed=7)
    assert (s.task, s.batch_size, s.limit, s.seed, s.data_dir) == ("svamp", 8, 3, 7, None)
    assert s.refill == EvalSettings().refill == 0 and s.max_new_tokens == EvalSettings().max_new_tokens
    assert eval_settings_from({"refill": 2}, refill=4).refill == 4  # overrides win


def test_one_set_of_defaults():
    from configs.study import get_config as study_config
    from jaxft.train.config import load_config_file

    default = EvalSettings()
    assert (DecodeSettings().batch_size, DecodeSettings().max_new_tokens) == (default.batch_size,
                                                                              default.max_new_tokens)
    train_eval = load_config_file(os.path.join(REPO, "configs", "smollm2_135m_lora.py")).eval
    for key in PROBLEM_KEYS + DECODING_KEYS:
        if key != "limit":  # the protocol evaluates 32 problems during training
            assert train_eval[key] == getattr(default, key), key
    study_eval = study_config().eval
    assert set(DECODING_KEYS) <= set(study_eval) and not set(PROBLEM_KEYS) & set(study_eval)  # those are per cell
    assert study_eval.refill == default.refill and study_eval.template == default.template


def test_bad_refill_is_a_config_error():
    with pytest.raises(ConfigError, match="0 <= refill <= batch_size; got batch_size=4, refill=5"):
        eval_settings_from({"batch_size": 4, "refill": 5})
    with pytest.raises(ConfigError, match="batch_size >= 1"):
        EvalSettings(batch_size=0)


def _capture_decoding(monkeypatch):
    """Replaces decoding: every generation says "The answer is 0."; records the settings it was given."""
    import types

    seen = []

    def fake_generate(model, tokenizer, prompts, decode, *, stats=None, on_generations=None):
        seen.append(decode)
        out = [types.SimpleNamespace(text=" The answer is 0.", token_ids=[0]) for _ in prompts]
        on_generations(dict(enumerate(out)))
        return out

    monkeypatch.setattr(runner, "generate", fake_generate)
    return seen


def test_refill_in_a_train_config_reaches_the_decoder(tmp_path, monkeypatch):
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    seen = _capture_decoding(monkeypatch)
    c = load_config_file(TINY, [("total_steps", "2"), ("checkpoint_every_steps", "2"), ("eval.final", "true"),
                                ("eval.final_limit", "2"), ("eval.batch_size", "4"), ("eval.refill", "3")])
    train(c, str(tmp_path / "run"), progress=False)
    assert [(d.batch_size, d.refill, d.refill_group) for d in seen] == [(4, 3, 3)]  # the default group is 1
    stored = [json.load(open(os.path.join(root, f))) for root, _, files in os.walk(tmp_path / "run")
              for f in files if f == "metrics.json"]
    assert [m["decoding"]["refill_group"] for m in stored] == [3]
    # "auto" in a training run is its data's template (plain here), though SmolLM2's tokenizer has a chat one
    assert c.eval.template == "auto" and c.data.template == "plain"
    assert [(m["template"], m["template_requested"]) for m in stored] == [("plain", "auto")]
    assert seen[0].stop_strings == ("\nQuestion:", "\n\n\n")


def test_refill_in_a_study_config_reaches_the_decoder(tmp_path, monkeypatch):
    from configs.study_tiny import get_config
    from jaxft.study import run_study

    seen = _capture_decoding(monkeypatch)
    study = get_config()
    study.config_root = REPO
    study.methods, study.benchmarks = ("zero-shot",), ("gsm8k",)
    study.eval.refill = 2
    cells = run_study(study, str(tmp_path / "study"), log=lambda *_: None)
    assert [c["status"] for c in cells] == ["ran"]
    assert [(d.batch_size, d.refill, d.max_new_tokens) for d in seen] == [(study.eval.batch_size, 2, 12)]


def _rows(generations):
    return [{"generation": g, "correct": g.strip() == "The answer is 1."} for g in generations]


def test_empty_generations_are_counted_and_warned_about_above_five_percent():
    """Empty or whitespace-only generations (an instruct model given plain prompts ends its turn at once)
    are counted in every evaluation's metrics; more than 5% of them print one warning line naming the
    count and the percentage. Counts here are by construction: 1 of 20 (5.0%, no warning), 2 of 20 and
    18 of 48 (warning)."""
    warned = []
    m = runner.exact_match_metrics(_rows(["The answer is 1."] * 19 + [" \n\t"]), template="plain",
                                   warn=warned.append)
    assert (m["n"], m["correct"], m["empty_generations"], m["exact_match"]) == (20, 19, 1, 95.0) and not warned
    m = runner.exact_match_metrics(_rows(["The answer is 1."] * 18 + ["", "\n"]), template="chat",
                                   warn=warned.append)
    assert m["empty_generations"] == 2 and warned == ["eval: warning: 2 of 20 generations (10.0%) are empty "
                                                      "(template 'chat')"]
    warned.clear()
    m = runner.exact_match_metrics(_rows(["The answer is 2."] * 30 + [""] * 18), template="plain",
                                   warn=warned.append)
    assert m["empty_generations"] == 18 and m["correct"] == 0 and len(warned) == 1
    assert warned[0].startswith("eval: warning: 18 of 48 generations (37.5%) are empty (template 'plain')")
    assert "--template=chat" in warned[0]
    assert runner.exact_match_metrics([], warn=warned.append)["empty_generations"] == 0 and len(warned) == 1


def _chat_tokenizer():
    from test_prompts import tiny_tokenizer

    return tiny_tokenizer()


def _fake_decoding(monkeypatch, texts, *, stop_after=None):
    """Decoding replaced: generation i is texts[i % len(texts)], finished two at a time; after `stop_after`
    chunks it raises KeyboardInterrupt (a kill that leaves those chunks on disk). Records each call's prompts."""
    import types

    calls = []

    def fake_generate(model, tokenizer, prompts, decode, *, stats=None, on_generations=None):
        calls.append(list(prompts))
        out = [types.SimpleNamespace(text=texts[i % len(texts)], token_ids=[0]) for i in range(len(prompts))]
        for chunk, start in enumerate(range(0, len(out), 2)):
            if stop_after is not None and chunk == stop_after:
                raise KeyboardInterrupt
            on_generations({j: out[j] for j in range(start, min(start + 2, len(out)))})
        return out

    monkeypatch.setattr(runner, "generate", fake_generate)
    return calls


MODEL = __import__("types").SimpleNamespace(dtype="float32")
# What fingerprint.json held before "auto" existed: a default's change must not add or rename a key.
FINGERPRINT_KEYS = {"model", "identity", "dtype", "task", "split", "shots", "template", "limit", "batch_size",
                    "refill", "max_new_tokens", "data_dir", "seed", "stop_strings", "prompts_sha256"}


@needs_shared
def test_metrics_record_the_resolved_template_and_empty_generations(tmp_path, monkeypatch, capsys):
    _fake_decoding(monkeypatch, ["", " The answer is 6."])
    out = str(tmp_path / "out")
    m = runner.evaluate(MODEL, _chat_tokenizer(), EvalSettings(limit=4, batch_size=2), output_dir=out,
                        progress=False)
    stored = json.load(open(os.path.join(out, "metrics.json")))
    assert stored == m and m["template"] == "chat" and m["template_requested"] == "auto"
    assert m["empty_generations"] == 2 and m["n"] == 4
    assert "eval: warning: 2 of 4 generations (50.0%) are empty (template 'chat')" in capsys.readouterr().err
    preds = [json.loads(line) for line in open(os.path.join(out, "predictions.jsonl"))]
    assert all(p["prompt"].startswith("<|user|>") for p in preds)
    # no chat template: plain prompts and plain's stop strings
    m = runner.evaluate(MODEL, None, EvalSettings(limit=2, batch_size=2), output_dir=str(tmp_path / "plain"),
                        progress=False)
    assert (m["template"], m["template_requested"], m["decoding"]["stop_strings"]) == ("plain", "auto",
                                                                                       ["\nQuestion:", "\n\n\n"])


@needs_shared
def test_an_output_of_explicit_chat_is_kept_under_the_auto_default(tmp_path, monkeypatch):
    """A cell evaluated with template="chat" (the running study sets it) and killed halfway: rerun with
    "chat" or with the new default "auto" (which resolves to chat) it continues with the problems not
    done, with a fingerprint of the same keys as before; a finished one is returned as stored."""
    from jaxft.eval.resume import FINGERPRINT

    out = str(tmp_path / "cell")
    calls = _fake_decoding(monkeypatch, [" The answer is 6."], stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        runner.evaluate(MODEL, _chat_tokenizer(), EvalSettings(template="chat", limit=6, batch_size=2),
                        output_dir=out, progress=False, if_changed="restart", identity={"method": "zero-shot"})
    fingerprint = json.load(open(os.path.join(out, FINGERPRINT)))
    assert set(fingerprint) == FINGERPRINT_KEYS and fingerprint["template"] == "chat"
    assert len(open(os.path.join(out, "predictions.partial.jsonl")).readlines()) == 2

    calls = _fake_decoding(monkeypatch, [" The answer is 6."])
    m = runner.evaluate(MODEL, _chat_tokenizer(), EvalSettings(limit=6, batch_size=2), output_dir=out,
                        progress=False, if_changed="error", identity={"method": "zero-shot"})
    assert [len(c) for c in calls] == [4]  # only the 4 problems not done were decoded
    assert json.load(open(os.path.join(out, FINGERPRINT))) == fingerprint
    assert m["n"] == 6 and m["template"] == "chat"
    again = runner.evaluate(MODEL, _chat_tokenizer(), EvalSettings(template="chat", limit=6, batch_size=2),
                            output_dir=out, progress=False, if_changed="error", identity={"method": "zero-shot"})
    assert again == m and [len(c) for c in calls] == [4]
