"""Evaluation settings are defined once and reach the decoder from every front door: a training config's
`eval` section, a study config's `eval` section (refill included) and `python -m jaxft.eval` flags."""

import json
import os

import pytest

from conftest import REPO
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
