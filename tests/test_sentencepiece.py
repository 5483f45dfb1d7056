"""jaxft's SentencePiece-style GGUF tokenizer (`tokenizer.ggml.model == "llama"`) against
transformers' GGUF tokenizer (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, the reference).

Tiny files written here in Gemma-2B's layout (pad/eos/bos/unk first, control tokens, user-defined
"\\n\\n", "<table>" and space runs stored with real spaces, the 256 byte tokens, scored pieces with
no merges) and in Llama 2's (unk/bos/eos, bytes, pieces whose scores set the merge order, "▁"
prepended); then the real Gemma 3 270M file (`real`) on all 1,319 GSM8K test questions and chat
prompts. Exact equality of ids and decoded text: tokenization has no tolerance.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from conftest import SHARED_DATA
from jaxft.errors import WeightLoadError
from jaxft.models.tokenizer import Tokenizer

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
SP = "\u2581"

# Gemma 3's chat template (google/gemma-3-270m-it's tokenizer_config.json), text parts
GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)

EDGE_TEXTS = [
    "", " ", "  two leading spaces and two trailing  ", "tabs\tand\t\tnewlines\n\n\nend\n",
    "digits 1234567890 3.14 -7", "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "café naïve 日本語 emoji 🙂 ∑x²", "can't won't I'm", "<table><tr>cell</tr></table>", "<bos>inside<eos>",
    "<unk> and <mask> and <pad>", "a  b   c    d", "\u2581literal marker", "$1,234.56 + 50% = ?",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is 17 times 23?"}],
    [{"role": "system", "content": "You solve math."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}],
]


def _questions(split="test"):
    with open(os.path.join(SHARED_DATA, "gsm8k", f"{split}.jsonl")) as f:
        return [json.loads(line)["question"] for line in f if line.strip()]


def _train_pieces(texts, vocab_size):
    """A small BPE vocabulary learned here (tokenizers' trainer, words with SentencePiece's "▁" for
    the space before them): the characters, then the pieces in the order they were merged."""
    from tokenizers import Tokenizer as Backend, models, pre_tokenizers, trainers

    bpe = Backend(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="always")
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False))
    ordered = [t for t, _ in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])]
    return [t for t in ordered if len(t) == 1], [t for t in ordered if len(t) > 1]


def _write_spm_gguf(path, *, arch, tokens, types, scores, bos, eos, unk, pad=None, add_bos=True, add_eos=False,
                    add_space_prefix=False, template=None):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores(scores)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(unk)
    if pad is not None:
        w.add_pad_token_id(pad)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(add_eos)
    w.add_add_space_prefix(add_space_prefix)
    if template:
        w.add_chat_template(template)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _bytes():
    return [f"<0x{b:02X}>" for b in range(256)]


def _gemma_vocab(chars, merged):
    """Gemma-2B's layout, scaled down: ids 0-3 pad/eos/bos/unk, control tokens, user-defined tokens
    (newline runs, space runs stored with real spaces, an HTML tag, tabs), the byte tokens, then the
    pieces. Scores are shuffled: Gemma's reader must order merges by position, not by score."""
    control = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[@BOS@]", "<unused0>", "<unused1>",
               "<start_of_turn>", "<end_of_turn>"]
    user = ["\n", "\n\n", "\n\n\n", "  ", "   ", "    ", "<table>", "</table>", "<tr>", "</tr>", "\t", "\t\t"]
    pieces = [SP + SP, SP] + [c for c in chars if c != SP] + merged
    tokens = control + user + _bytes() + pieces
    types = [UNKNOWN if t == "<unk>" else CONTROL for t in control] + [USER_DEFINED] * len(user) + \
        [BYTE] * 256 + [NORMAL] * len(pieces)
    scores = np.random.default_rng(0).permutation(len(tokens)).astype(np.float32) * -1.0
    return tokens, types, scores.tolist()


def _llama_vocab(chars, merged):
    """Llama 2's layout: <unk> <s> </s>, the byte tokens, pieces; random scores set the merge order."""
    pieces = [SP] + [c for c in chars if c != SP] + merged
    tokens = ["<unk>", "<s>", "</s>"] + _bytes() + pieces
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(pieces)
    rng = np.random.default_rng(1)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + (-rng.random(len(pieces)) * 100).round(1).tolist()
    return tokens, types, scores


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """(name, path) of tiny SentencePiece GGUFs: Gemma layout with and without BOS, with EOS and a
    chat template; Llama 2 layout with "▁" prepended."""
    d = tmp_path_factory.mktemp("spm")
    learned = _train_pieces(_questions("train")[:300], 400)
    g_tokens, g_types, g_scores = _gemma_vocab(*learned)
    l_tokens, l_types, l_scores = _llama_vocab(*learned)
    specs = {
        "gemma": dict(arch="gemma", tokens=g_tokens, types=g_types, scores=g_scores, pad=0, eos=1, bos=2, unk=3,
                      template=GEMMA3_TEMPLATE),
        "gemma3-no-bos-eos": dict(arch="gemma3", tokens=g_tokens, types=g_types, scores=g_scores, pad=0, eos=1,
                                  bos=2, unk=3, add_bos=False, add_eos=True),
        "llama": dict(arch="llama", tokens=l_tokens, types=l_types, scores=l_scores, bos=1, eos=2, unk=0,
                      add_space_prefix=True),
    }
    out = {}
    for name, spec in specs.items():
        path = d / name / "tok.gguf"
        path.parent.mkdir()
        _write_spm_gguf(path, **spec)
        out[name] = str(path)
    return out


def _reference(path):
    # PreTrainedTokenizerFast, not AutoTokenizer: the latter also wants a model config, which
    # transformers cannot read from a gemma (Gemma 1) file; the tokenizer is built the same way
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


@pytest.fixture(scope="module", params=["gemma", "gemma3-no-bos-eos", "llama"])
def pair(request, tiny_files):
    path = tiny_files[request.param]
    return request.param, Tokenizer.from_gguf(path), _reference(path)


@pytest.fixture(scope="module")
def gemma_pair(tiny_files):
    path = tiny_files["gemma"]
    return Tokenizer.from_gguf(path), _reference(path)


def test_tiny_spm_ids_equal_transformers(pair):
    name, ours, ref = pair
    texts = _questions()[:150] + EDGE_TEXTS
    assert ours(texts)["input_ids"] == ref(texts)["input_ids"], name
    assert ours(texts, add_special_tokens=False)["input_ids"] == ref(texts, add_special_tokens=False)["input_ids"]
    ids = ours("x y")["input_ids"]
    assert (ids[0] == ours.bos_token_id) == (name != "gemma3-no-bos-eos")
    assert (ids[-1] == ours.eos_token_id) == (name == "gemma3-no-bos-eos")
    for attr in ("bos_token", "eos_token", "unk_token", "pad_token", "bos_token_id", "eos_token_id", "unk_token_id",
                 "pad_token_id"):
        assert getattr(ours, attr) == getattr(ref, attr), (name, attr)
    assert len(ours) == len(ref)


def test_tiny_spm_decode_equals_transformers_and_round_trips(pair):
    name, ours, ref = pair
    for text in _questions()[:40] + EDGE_TEXTS:
        ids = ours(text)["input_ids"]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), (name, text)
        plain = ours(text, add_special_tokens=False)["input_ids"]
        # a literal "▁" reads back as a space (as in SentencePiece); Llama's decoder strips the
        # prepended space, so a leading space of the text goes with it
        if SP not in text and (name != "llama" or not text.startswith(" ")):
            assert ours.decode(plain) == text, (name, text)


def test_tiny_spm_merges_follow_position_for_gemma_and_scores_otherwise(tiny_files, gemma_pair):
    """The merge order is what the ids depend on: Gemma files by position (their scores are shuffled
    here), others by score. Reading the Gemma file as a Llama one (scores) must change the ids."""
    from jaxft.models.gguf_metadata import read_metadata
    from jaxft.models.sentencepiece import sentencepiece_backend

    ours, _ = gemma_pair
    meta = read_metadata(tiny_files["gemma"])
    by_score = sentencepiece_backend(meta["tokenizer.ggml.tokens"], types=meta["tokenizer.ggml.token_type"],
                                     scores=meta["tokenizer.ggml.scores"], merges=None, architecture="llama",
                                     unk_token="<unk>", add_space_prefix=False, where="t")
    texts = _questions()[:50]
    assert [e.ids for e in by_score.encode_batch(texts, add_special_tokens=False)] != \
        ours(texts, add_special_tokens=False)["input_ids"]


def test_tiny_spm_chat_template_from_the_file(gemma_pair):
    ours, ref = gemma_pair
    assert ours.chat_template == ref.chat_template == GEMMA3_TEMPLATE
    for messages in CONVERSATIONS:
        for gen in (True, False):
            a = ours.apply_chat_template(messages, add_generation_prompt=gen)
            assert a == ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            assert ours(a, add_special_tokens=False)["input_ids"] == ref(a, add_special_tokens=False)["input_ids"]


def test_tiny_spm_saved_tokenizer_reads_back_in_transformers(pair, tmp_path):
    from transformers import AutoTokenizer

    name, ours, ref = pair
    ours.save_pretrained(str(tmp_path))
    back = AutoTokenizer.from_pretrained(str(tmp_path))
    texts = _questions()[:30] + EDGE_TEXTS
    assert back(texts)["input_ids"] == ref(texts)["input_ids"], name


def test_unsupported_tokenizer_inputs_are_named(tmp_path):
    import gguf

    path = tmp_path / "bert.gguf"
    w = gguf.GGUFWriter(str(path), "bert")
    w.add_tokenizer_model("bert")
    w.add_token_list(["[PAD]", "a"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    with pytest.raises(WeightLoadError, match=r"bert\.gguf.*tokenizer\.ggml\.model='bert'.*\['gpt2', 'llama'\]"):
        Tokenizer.from_gguf(str(path))
    from jaxft.models.sentencepiece import sentencepiece_backend

    with pytest.raises(WeightLoadError, match=r"f\.gguf: GGUF has neither tokenizer\.ggml\.scores nor"):
        sentencepiece_backend(["<unk>", "a"], types=None, scores=None, merges=None, architecture="llama",
                              unk_token="<unk>", add_space_prefix=True, where="f.gguf")
    with pytest.raises(WeightLoadError, match=r"f\.gguf: GGUF tokenizer\.ggml\.add_space_prefix=true in a gemma3 file"):
        sentencepiece_backend(["<unk>", "a"], types=None, scores=[0.0, 0.0], merges=None, architecture="gemma3",
                              unk_token="<unk>", add_space_prefix=True, where="f.gguf")


# --- the real Gemma 3 270M file ------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma3(gemma3_gguf_path):
    """(ours, transformers', seconds each took to build) for the real file, with Gemma 3's chat template
    set on both (the pretrained model's file carries none)."""
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    ours = Tokenizer.from_gguf(gemma3_gguf_path)
    t1 = time.perf_counter()
    ref = AutoTokenizer.from_pretrained(os.path.dirname(gemma3_gguf_path), gguf_file=os.path.basename(gemma3_gguf_path))
    t2 = time.perf_counter()
    assert ours.chat_template is None and ref.chat_template is None
    ours.chat_template = ref.chat_template = GEMMA3_TEMPLATE
    print(f"gemma-3-270m tokenizer built: jaxft {t1 - t0:.1f} s, transformers {t2 - t1:.1f} s")
    return ours, ref


@pytest.mark.real
def test_gemma3_ids_equal_transformers_on_every_gsm8k_question(gemma3):
    ours, ref = gemma3
    questions = _questions()
    assert len(questions) == 1319
    t0 = time.perf_counter()
    got = ours(questions)["input_ids"]
    seconds = time.perf_counter() - t0
    want = ref(questions)["input_ids"]
    same = sum(g == w for g, w in zip(got, want))
    print(f"gemma-3-270m GSM8K test: {same}/{len(questions)} identical, jaxft encodes all in {seconds:.2f} s")
    assert same == len(questions)
    assert ours(questions[:100], add_special_tokens=False)["input_ids"] == \
        ref(questions[:100], add_special_tokens=False)["input_ids"]
    assert ours.decode(got[0], skip_special_tokens=True) == questions[0]


@pytest.mark.real
def test_gemma3_chat_prompts_render_and_tokenize_as_transformers(gemma3):
    from jaxft.data.prompts import build_prompt, select_shots
    from jaxft.data.tasks import load_task

    ours, ref = gemma3
    for messages in CONVERSATIONS:
        for gen in (True, False):
            a = ours.apply_chat_template(messages, add_generation_prompt=gen)
            assert a == ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            assert ours(a, add_special_tokens=False)["input_ids"] == ref(a, add_special_tokens=False)["input_ids"]
    examples = load_task("gsm8k", "test", limit=30, data_dir=SHARED_DATA)
    shots = select_shots("gsm8k", 3, data_dir=SHARED_DATA)
    for ex in examples:
        for k in (0, 3):
            prompt = build_prompt(ex, template="chat", shots=shots[:k], tokenizer=ours)
            assert prompt == build_prompt(ex, template="chat", shots=shots[:k], tokenizer=ref)
            assert ours(prompt, add_special_tokens=False)["input_ids"] == \
                ref(prompt, add_special_tokens=False)["input_ids"]


@pytest.mark.real
def test_gemma3_special_tokens_edge_texts_and_decoding(gemma3):
    ours, ref = gemma3
    for attr in ("bos_token", "eos_token", "unk_token", "pad_token", "bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
    assert len(ours) == len(ref) == 262144
    for text in EDGE_TEXTS:
        ids = ours(text)["input_ids"]
        assert ids == ref(text)["input_ids"], text
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text
        if SP not in text:
            assert ours.decode(ours(text, add_special_tokens=False)["input_ids"]) == text
