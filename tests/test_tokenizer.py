"""jaxft's torch-free tokenizer against transformers' tokenizers (the reference).

The GGUF tokenizer must give the same ids as transformers' GGUF tokenizer on every GSM8K test
question and on chat-formatted prompts; an HF directory's tokenizer must read and write what
transformers reads and writes. Exact equality: tokenization has no tolerance.
"""

import json
import os

import numpy as np
import pytest

from conftest import SHARED_DATA
from jaxft.errors import WeightLoadError
from jaxft.models.tokenizer import Tokenizer


def _questions(name="gsm8k", split="test"):
    with open(os.path.join(SHARED_DATA, name, f"{split}.jsonl")) as f:
        return [json.loads(line)["question"] for line in f if line.strip()]


@pytest.fixture(scope="module")
def ours(real_gguf_path):
    return Tokenizer.from_gguf(real_gguf_path)


@pytest.fixture(scope="module")
def reference(real_gguf_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.dirname(real_gguf_path), gguf_file=os.path.basename(real_gguf_path))


EDGE_TEXTS = [
    "", " ", "  leading spaces and trailing  ", "tabs\tand\nnewlines\n\n\n", "digits 1234567890 3.14 -7",
    "<|im_start|>user\nhi<|im_end|>", "café naïve 日本語 emoji 🙂 ∑x²", "can't won't I'm we'll",
    "$1,234.56 + 50% = ?", "<|endoftext|>inside<|endoftext|>",
]


def test_gguf_ids_equal_transformers_on_every_gsm8k_question(ours, reference):
    questions = _questions()
    assert len(questions) == 1319
    got = ours(questions)["input_ids"]
    want = reference(questions)["input_ids"]
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, (len(bad), questions[bad[0]])
    # and without special tokens (how completions are tokenized for training)
    assert ours(questions[:50], add_special_tokens=False)["input_ids"] == \
        reference(questions[:50], add_special_tokens=False)["input_ids"]


def test_gguf_chat_prompts_render_and_tokenize_as_transformers(ours, reference):
    from jaxft.data.prompts import build_prompt, select_shots
    from jaxft.data.tasks import load_task

    examples = load_task("gsm8k", "test", limit=20, data_dir=SHARED_DATA)
    shots = select_shots("gsm8k", 3, data_dir=SHARED_DATA)
    conversations = [
        [{"role": "user", "content": "What is 17 times 23?"}],
        [{"role": "system", "content": "You solve math."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}],
    ]
    for messages in conversations:
        for gen in (True, False):
            a = ours.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            b = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            assert a == b
            assert ours(a)["input_ids"] == reference(b)["input_ids"]
    for ex in examples:
        for k in (0, 3):
            prompt = build_prompt(ex, template="chat", shots=shots[:k], tokenizer=ours)
            assert prompt == build_prompt(ex, template="chat", shots=shots[:k], tokenizer=reference)
            assert ours(prompt)["input_ids"] == reference(prompt)["input_ids"]


def test_gguf_special_ids_edge_texts_and_decoding(ours, reference):
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(ours, name) == getattr(reference, name), name
        assert getattr(ours, name + "_id") == getattr(reference, name + "_id"), name
    assert len(ours) == len(reference)
    for text in EDGE_TEXTS:
        ids = ours(text)["input_ids"]
        assert ids == reference(text)["input_ids"], text
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == reference.decode(ids, skip_special_tokens=skip), text
    arr = ours(EDGE_TEXTS[4], return_tensors="np")["input_ids"]
    assert arr.shape == (1, len(ours(EDGE_TEXTS[4])["input_ids"])) and arr.dtype == np.int64


def test_hf_directory_round_trip_with_transformers(ours, reference, tmp_path):
    """transformers' saved tokenizer reads into ours with the same ids, and ours saves what it reads."""
    from transformers import AutoTokenizer

    reference.save_pretrained(tmp_path / "ref")
    from_ref = Tokenizer.from_dir(str(tmp_path / "ref"))
    ours.save_pretrained(str(tmp_path / "ours"))
    back = AutoTokenizer.from_pretrained(str(tmp_path / "ours"))
    texts = _questions()[:200] + EDGE_TEXTS
    want = reference(texts)["input_ids"]
    assert from_ref(texts)["input_ids"] == want
    assert back(texts)["input_ids"] == want
    for tok in (from_ref, back):
        assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == \
            (reference.bos_token_id, reference.eos_token_id, reference.pad_token_id)
    messages = [{"role": "user", "content": "hi"}]
    want_chat = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert from_ref.apply_chat_template(messages, add_generation_prompt=True) == want_chat
    assert back.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == want_chat


def _write_tokenizer_gguf(path, *, tokens, merges, types, pre, arch="qwen2", model="gpt2", add_bos=False):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_add_bos_token(add_bos)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_pre_tokenizer_split_and_bos_follow_the_file(ours, tmp_path):
    """A qwen2-style file (digits split one by one) with add_bos_token: the same ids as transformers."""
    from transformers import AutoTokenizer

    src = json.loads(ours.backend_tokenizer.to_str())
    vocab = src["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [" ".join(m) if isinstance(m, list) else m for m in src["model"]["merges"]]
    types = [3 if t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>") else 1 for t in tokens]
    texts = ["There are 12345 apples and 678 pears.", "x = 3.14159, y=  2"] + _questions()[:100]
    for add_bos in (False, True):
        path = tmp_path / f"q{int(add_bos)}.gguf"
        _write_tokenizer_gguf(path, tokens=tokens, merges=merges, types=types, pre="qwen2", add_bos=add_bos)
        mine = Tokenizer.from_gguf(str(path))
        ref = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
        assert mine(texts)["input_ids"] == ref(texts)["input_ids"]
        assert (mine(texts[0])["input_ids"][0] == 0) == add_bos
    # the split matters: one digit per token under qwen2's pattern, up to three under GPT-2's
    assert mine.decode(mine("12345", add_special_tokens=False)["input_ids"][:1]) == "1"


def test_bad_tokenizer_inputs_are_named(tmp_path):
    path = tmp_path / "wpm.gguf"
    _write_tokenizer_gguf(path, tokens=["[PAD]", "[UNK]", "a"], merges=[], types=[3, 3, 1], pre="default", model="bert")
    with pytest.raises(WeightLoadError, match=r"wpm\.gguf.*tokenizer\.ggml\.model='bert'.*supported: \['gpt2', 'llama'\]"):
        Tokenizer.from_gguf(str(path))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "tokenizer_config.json").write_text("{}")
    with pytest.raises(WeightLoadError, match=r"no tokenizer\.json"):
        Tokenizer.from_dir(str(tmp_path / "d"))
    (tmp_path / "d" / "tokenizer.json").write_text("{")
    with pytest.raises(WeightLoadError, match=r"tokenizer\.json: cannot be read"):
        Tokenizer.from_dir(str(tmp_path / "d"))
    no_template = Tokenizer(_empty_backend())
    with pytest.raises(WeightLoadError, match="no chat template"):
        no_template.apply_chat_template([{"role": "user", "content": "x"}])


def _empty_backend():
    from tokenizers import Tokenizer as Backend, models

    return Backend(models.WordLevel(vocab={"[UNK]": 0}, unk_token="[UNK]"))
