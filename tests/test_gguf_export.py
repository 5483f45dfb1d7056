"""GGUF export: files that jaxft's and transformers' GGUF readers load back with the merged model's
logits and the source tokenizer's ids, in llama.cpp's layout, and clear refusals for bad input.

References: the adapted jaxft model's float32 logits (equal to transformers'/peft's, tests/test_export.py),
transformers' GGUF reader (llama, qwen2: it reads neither olmo nor gemma), the HF torch weights of the
tiny models for llama.cpp's layout (transformers' own reverse q/k permutation), the gguf package's
tensor name table, and the source tokenizer's ids on GSM8K questions.

Tolerances on max |logit diff| against the adapted float32 model: F32 1e-5 absolute (the same
float32 numbers; measured <= 5e-7), F16 5e-3 and Q8_0 5e-2 relative to max |logit| (measured up to
2.8e-3 and 2.4e-2 with the large random adapters of tests/test_export.py; a missing q/k permutation
or gemma's +1 would be O(1)).
"""

from __future__ import annotations

import functools
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from gguf import GGMLQuantizationType, GGUFReader, LlamaFileType
from gguf.constants import MODEL_ARCH_NAMES, MODEL_TENSORS, TENSOR_NAMES
from gguf.quants import dequantize
from tokenizers import Regex, Tokenizer as Backend, decoders, models, normalizers, pre_tokenizers, processors, trainers

from conftest import SHARED_DATA
from jaxft.errors import ConfigError, UnsupportedConfigError
from jaxft.export import main as export_main
from jaxft.export_gguf import export_gguf
from jaxft.models import load_model
from jaxft.models.gguf_loader import load_gguf
from jaxft.models.load import load_tokenizer
from jaxft.models.tokenizer import Tokenizer
from jaxft.peft import apply_peft
from jaxft.peft.export import export_peft
from tests.hf_tiny import make_hf_model
from tests.test_export import randomize

from transformers import AutoModelForCausalLM  # noqa: E402  (references, tests only)
from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor  # noqa: E402

TYPES = ("f32", "f16", "q8_0")
TOL = {"f32": 1e-5, "f16": 5e-3, "q8_0": 5e-2}  # f32 absolute, the others relative to max |logit|
FILE_TYPE = {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0}
TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _questions(split: str, n: int) -> list[str]:
    with open(os.path.join(SHARED_DATA, "gsm8k", f"{split}.jsonl")) as f:
        return [json.loads(line)["question"] for _, line in zip(range(n), f)]


SAMPLE = _questions("test", 40)


# --- tokenizers to carry over (trained on GSM8K-train with the tokenizers library) ----------------

@functools.cache
def byte_level_tokenizer(split: str) -> Tokenizer:
    """384 tokens: <pad>, <s>, </s>, the 256 byte symbols and merges; `split` picks the pre-tokenizer."""
    backend = Backend(models.BPE())
    if split == "gpt-2":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif split == "smollm":
        backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                         pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:  # qwen2: NFC, its regex split, then bytes
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(_questions("train", 600), trainers.BpeTrainer(
        vocab_size=384, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return Tokenizer(backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", chat_template=TEMPLATE)


@functools.cache
def sentencepiece_tokenizer():
    """Gemma-style: spaces as "▁", no pre-split, byte fallback through <0x00>..<0xFF>, BOS added.

    A transformers PreTrainedTokenizerFast, so the duck-typed interface is tested on both libraries.
    """
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    trained = Backend(models.BPE(unk_token="<unk>"))
    trained.normalizer = normalizers.Replace(" ", "\u2581")
    trained.train_from_iterator(_questions("train", 600), trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, show_progress=False))
    d = json.loads(trained.to_str())
    learned = sorted(d["model"]["vocab"].items(), key=lambda kv: kv[1])[len(specials):]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)] + [t for t, _ in learned])}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in d["model"]["merges"]]
    backend = Backend(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    backend.add_special_tokens(specials)
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", chat_template=TEMPLATE)


# --- the tiny families ------------------------------------------------------------------------------

# (id, family, variant, method, tokenizer, HF config overrides, transformers reads it)
CASES = [
    ("llama-tied-lora", "llama", 0, "lora", "smollm", {}, True),
    ("llama-bias-dora", "llama", 1, "dora", "gpt-2", {}, False),  # transformers' GGUF llama has no biases
    # vocab 400 > 384 tokens: UNUSED padding; intermediate 48: down_proj rows are no whole Q8_0 blocks
    ("qwen2-untied-lora", "qwen2", 1, "lora", "qwen2", dict(vocab_size=400, intermediate_size=48), True),
    ("olmo-clip-dora", "olmo", 1, "dora", "gpt-2", dict(attention_bias=False), False),
    ("gemma-spm-lora", "gemma", 0, "lora", "spm", dict(vocab_size=560, bos_token_id=2, eos_token_id=1), False),
]


def tokenizer_for(kind: str):
    return sentencepiece_tokenizer() if kind == "spm" else byte_level_tokenizer(kind)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, ids):
    return nnx.merge(graphdef, state)(ids)


def jaxft_logits(model, ids: np.ndarray) -> np.ndarray:
    graphdef, state = nnx.split(model)
    return np.asarray(_forward(graphdef, state, jnp.asarray(ids, jnp.int32)))


def torch_logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids).long()).logits.numpy()


def max_diff(got: np.ndarray, want: np.ndarray, quant: str) -> float:
    """|diff| in TOL's units: absolute for f32, relative to max |logit| otherwise."""
    d = float(np.abs(got - want).max())
    return d if quant == "f32" else d / float(np.abs(want).max())


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def exported(request, tmp_path_factory):
    """An adapted tiny model with trained-looking adapters, exported in every type."""
    name, family, variant, method, tok_kind, overrides, hf_reads = request.param
    d = tmp_path_factory.mktemp(name)
    torch_model = make_hf_model(family, variant, str(d / "base"), **{"vocab_size": 384, **overrides})
    model, _ = load_model(str(d / "base"))
    apply_peft(model, method, r=4, alpha=8)
    randomize(model)
    tok = tokenizer_for(tok_kind)
    ids = np.asarray([tok(q)["input_ids"][:24] for q in SAMPLE[:2]], np.int32)
    files = {q: export_gguf(model, tok, str(d / f"{name}-{q}.gguf"), quant=q) for q in TYPES}
    return dict(name=name, family=family, model=model, tok=tok, tok_kind=tok_kind, torch_model=torch_model,
                ids=ids, want=jaxft_logits(model, ids), files=files, hf_reads=hf_reads)


def test_logits_round_trip_in_every_type(exported):
    """jaxft's loader (and transformers' where it reads the family) gives the merged model's logits."""
    for quant, path in exported["files"].items():
        loaded = load_gguf(path, dtype=jnp.float32, param_dtype=jnp.float32)
        want_cfg = exported["model"].config.to_dict()
        for key, value in loaded.config.to_dict().items():  # floats went through float32 metadata
            assert value == (pytest.approx(want_cfg[key], rel=1e-6) if isinstance(value, float) else want_cfg[key]), key
        got = max_diff(jaxft_logits(loaded, exported["ids"]), exported["want"], quant)
        print(f"{exported['name']} {quant} jaxft max|diff|={got:.3g}")
        assert got <= TOL[quant], (quant, got)
        if exported["hf_reads"]:
            hf = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                      dtype=torch.float32)
            got = max_diff(torch_logits(hf, exported["ids"]), exported["want"], quant)
            print(f"{exported['name']} {quant} transformers max|diff|={got:.3g}")
            assert got <= TOL[quant], (quant, got)
    assert quant == "q8_0" and got > 1e-4  # the Q8_0 file really is quantised


def test_tensor_types_names_and_file_type(exported):
    """Vectors F32; matrices F32/F16/Q8_0 (F16 where a row is no whole Q8_0 block); llama.cpp names."""
    family = exported["family"]
    arch = next(a for a, n in MODEL_ARCH_NAMES.items() if n == family)
    allowed = {TENSOR_NAMES[t] for t in MODEL_TENSORS[arch]}
    for quant, path in exported["files"].items():
        r = GGUFReader(path)
        assert r.fields["general.architecture"].contents() == family
        assert r.fields["general.file_type"].contents() == FILE_TYPE[quant]
        fallback = 0
        for t in r.tensors:
            base, suffix = t.name.rsplit(".", 1)
            assert suffix in ("weight", "bias") and re.sub(r"^blk\.\d+\.", "blk.{bid}.", base) in allowed, t.name
            rows = int(t.shape[0])
            if len(t.shape) == 1:
                want = GGMLQuantizationType.F32
            elif quant == "q8_0":
                want = GGMLQuantizationType.Q8_0 if rows % 32 == 0 else GGMLQuantizationType.F16
                fallback += want == GGMLQuantizationType.F16
            else:
                want = GGMLQuantizationType.F32 if quant == "f32" else GGMLQuantizationType.F16
            assert t.tensor_type == want, (quant, t.name, t.tensor_type)
        if quant == "q8_0":
            assert fallback == (2 if exported["name"].startswith("qwen2") else 0)  # one ffn_down per layer


def test_tokenizer_round_trip(exported):
    """Same ids on GSM8K questions (BOS included), same special ids and chat template, read back by
    transformers' GGUF tokenizer and, for byte-level vocabularies (all it reads), jaxft's own. For
    the SentencePiece-style file also without its merges, as llama.cpp reads it: pairs merged best
    score first, rebuilt by transformers' own score-based reconstruction."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import get_gguf_tokenizer
    from transformers.integrations.gguf.gguf_tokenizer_mapping import sentencepiece_tokenizer as from_scores
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    tok, path = exported["tok"], exported["files"]["q8_0"]
    want = [tok(q)["input_ids"] for q in SAMPLE]
    # PreTrainedTokenizerFast, not AutoTokenizer: the latter also wants a model config, which
    # transformers cannot read for olmo and gemma files
    readers = [PreTrainedTokenizerFast.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))]
    if exported["family"] != "gemma":
        readers.append(load_tokenizer(path))
    for back in readers:
        assert [back(q)["input_ids"] for q in SAMPLE] == want
        assert (back.bos_token_id, back.eos_token_id, back.pad_token_id) == \
               (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
        assert back.chat_template == TEMPLATE
    fields = GGUFReader(path).fields
    assert len(fields["tokenizer.ggml.tokens"].contents()) == exported["model"].config.vocab_size
    assert fields["tokenizer.ggml.add_bos_token"].contents() == (exported["family"] == "gemma")
    kind = exported["tok_kind"]  # llama.cpp's names for the pre-tokenizer each fixture was built with
    assert fields["tokenizer.ggml.model"].contents() == ("llama" if kind == "spm" else "gpt2")
    assert fields["tokenizer.ggml.pre"].contents() == ("default" if kind == "spm" else kind)
    if exported["family"] == "gemma":
        _, spec, _ = get_gguf_tokenizer(path)
        spec.pop("merges")
        scored = from_scores(spec, GemmaTokenizer, vocab_scores=dict(zip(spec["tokens"], spec["scores"])))
        assert [scored(q, add_special_tokens=False)["input_ids"] for q in SAMPLE] == [w[1:] for w in want]


def test_llama_cpp_layout_against_hf_weights(exported):
    """Raw tensors in llama.cpp's layout: embeddings and norms as HF stores them (gemma's norms as
    1 + w), q/k weights and biases with rows interleaved for llama/olmo (undone here with
    transformers' own reverse permutation), in HF order for qwen2/gemma."""
    from jaxft.peft.export import merged_weight

    family, cfg = exported["family"], exported["model"].config
    hf = {k: v.numpy() for k, v in exported["torch_model"].state_dict().items()}
    raw = {t.name: np.asarray(dequantize(t.data, t.tensor_type)).reshape([int(x) for x in reversed(t.shape)])
           for t in GGUFReader(exported["files"]["f32"]).tensors}
    np.testing.assert_array_equal(raw["token_embd.weight"], hf["model.embed_tokens.weight"])
    if family == "olmo":  # non-parametric LayerNorm: no norm tensors at all
        assert not any("norm" in k for k in raw)
    else:
        np.testing.assert_allclose(raw["blk.1.ffn_norm.weight"], hf["model.layers.1.post_attention_layernorm.weight"]
                                   + (1.0 if family == "gemma" else 0.0), rtol=0, atol=1e-7)
    proc = LlamaTensorProcessor(config=dict(num_attention_heads=cfg.num_attention_heads,
                                            num_key_value_heads=cfg.num_key_value_heads))
    attn = exported["model"].model.layers[0].self_attn
    for gname, proj in (("attn_q", "q_proj"), ("attn_k", "k_proj")):
        for suffix in ("weight", "bias"):
            key = f"blk.0.{gname}.{suffix}"
            if key not in raw:
                continue
            got = raw[key]
            if family in ("llama", "olmo"):
                got = proc.process(got, key).weights
            want = np.asarray(merged_weight(getattr(attn, proj))) if suffix == "weight" else \
                hf[f"model.layers.0.self_attn.{proj}.bias"]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=key)


# --- generation -----------------------------------------------------------------------------------

def test_f16_greedy_generation_equals_merged_model(tmp_path):
    """A tiny llama with large weights (greedy decoding wanders instead of repeating one token)."""
    from jaxft.eval.generate import DecodeSettings, generate
    from jaxft.peft.export import merge_adapters

    make_hf_model("llama", 0, str(tmp_path / "base"), weight_scale=20.0, vocab_size=384)
    model, _ = load_model(str(tmp_path / "base"))
    apply_peft(model, "lora", r=4, alpha=8)
    randomize(model)
    tok = byte_level_tokenizer("gpt-2")
    path = export_gguf(model, tok, str(tmp_path / "m.gguf"), quant="f16")
    settings = DecodeSettings(max_new_tokens=16, batch_size=4)
    want = generate(merge_adapters(model), tok, SAMPLE[:4], settings)
    loaded, back = load_model(path)
    got = generate(loaded, back, SAMPLE[:4], settings)
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert len({tuple(w.token_ids) for w in want}) > 1 and len(set(want[0].token_ids)) > 2


# --- bad input ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_dir_with_tokenizer(tmp_path_factory):
    d = tmp_path_factory.mktemp("withtok")
    make_hf_model("llama", 0, str(d / "m"), vocab_size=384)
    byte_level_tokenizer("gpt-2").save_pretrained(str(d / "m"))
    return str(d / "m")


def test_cli_exports_hf_dir_and_adapter_dir(hf_dir_with_tokenizer, tmp_path):
    out = tmp_path / "x.gguf"
    assert export_main(["--checkpoint", hf_dir_with_tokenizer, "--out", str(out), "--format", "gguf",
                        "--quant", "q8_0"]) == 0
    model, tok = load_model(hf_dir_with_tokenizer)
    ids = np.asarray([tok(SAMPLE[0])["input_ids"]], np.int32)
    loaded, _ = load_model(str(out))
    assert max_diff(jaxft_logits(loaded, ids), jaxft_logits(model, ids), "q8_0") <= TOL["q8_0"]
    assert GGUFReader(str(out)).fields["general.name"].contents() == "m"

    apply_peft(model, "dora", r=4, alpha=8)
    randomize(model)
    adapter = export_peft(model, str(tmp_path / "adapter"), base_model=hf_dir_with_tokenizer)
    assert export_main(["--checkpoint", adapter, "--out", str(tmp_path / "a.gguf"), "--format", "gguf",
                        "--quant", "f32"]) == 0
    loaded, _ = load_model(str(tmp_path / "a.gguf"))
    assert max_diff(jaxft_logits(loaded, ids), jaxft_logits(model, ids), "f32") <= TOL["f32"]


def _cli_fails(args: list[str], capsys, match: str) -> None:
    capsys.readouterr()  # drop what building the fixtures printed
    assert export_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err, err


def test_cli_refuses_bad_quant_existing_out_and_missing_tokenizer(hf_dir_with_tokenizer, tmp_path, capsys):
    base = ["--checkpoint", hf_dir_with_tokenizer, "--format", "gguf"]
    _cli_fails(base + ["--out", str(tmp_path / "q.gguf"), "--quant", "q4_k"], capsys, "allowed: f32, f16, q8_0")
    _cli_fails(["--checkpoint", hf_dir_with_tokenizer, "--out", str(tmp_path / "m"), "--quant", "f16"], capsys,
               "--format=gguf only")
    assert os.listdir(tmp_path) == []

    out = tmp_path / "m.gguf"
    out.write_bytes(b"not a gguf")
    _cli_fails(base + ["--out", str(out)], capsys, "pass --overwrite")
    assert out.read_bytes() == b"not a gguf"
    assert export_main(base + ["--out", str(out), "--overwrite"]) == 0
    assert GGUFReader(str(out)).fields["general.file_type"].contents() == LlamaFileType.MOSTLY_F16  # default
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]

    bare = tmp_path / "bare"
    make_hf_model("llama", 0, str(bare))  # weights only, no tokenizer files
    _cli_fails(["--checkpoint", str(bare), "--out", str(tmp_path / "b.gguf"), "--format", "gguf"], capsys,
               "has no tokenizer")
    assert not (tmp_path / "b.gguf").exists()


@pytest.mark.parametrize("family,variant,match", [
    ("gemma", 1, "tie_word_embeddings=False"),  # llama.cpp's gemma has no output.weight
    ("olmo", 1, "attention_bias=True"),  # llama.cpp's olmo has no bias tensors
])
def test_unsupported_architectures_are_refused(family, variant, match, tmp_path, capsys):
    d = str(tmp_path / "m")
    make_hf_model(family, variant, d, vocab_size=384)
    byte_level_tokenizer("gpt-2").save_pretrained(d)
    _cli_fails(["--checkpoint", d, "--out", str(tmp_path / "x.gguf"), "--format", "gguf"], capsys, match)
    assert sorted(os.listdir(tmp_path)) == ["m"]


def _tokenizer(backend) -> Tokenizer:
    return Tokenizer(backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def test_unwritable_tokenizers_are_refused(tmp_path):
    make_hf_model("llama", 0, str(tmp_path / "m"), vocab_size=384)
    model, _ = load_model(str(tmp_path / "m"))
    out = str(tmp_path / "x.gguf")
    wordlevel = Backend(models.WordLevel({"<pad>": 0, "<s>": 1, "</s>": 2, "[UNK]": 3}, unk_token="[UNK]"))
    with pytest.raises(UnsupportedConfigError, match="'WordLevel'; supported: BPE"):
        export_gguf(model, _tokenizer(wordlevel), out)
    odd = Backend.from_str(byte_level_tokenizer("gpt-2").backend_tokenizer.to_str())
    odd.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel()])
    with pytest.raises(UnsupportedConfigError, match="has no llama.cpp name"):
        export_gguf(model, _tokenizer(odd), out)
    make_hf_model("llama", 0, str(tmp_path / "s"))  # vocab_size 128 < the tokenizer's 384
    small, _ = load_model(str(tmp_path / "s"))
    with pytest.raises(UnsupportedConfigError, match="vocab_size is 128"):
        export_gguf(small, byte_level_tokenizer("gpt-2"), out)
    with pytest.raises(ConfigError, match="allowed: f32, f16, q8_0"):
        export_gguf(model, byte_level_tokenizer("gpt-2"), out, quant="q4_0")
    assert sorted(os.listdir(tmp_path)) == ["m", "s"]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    import gguf

    make_hf_model("llama", 0, str(tmp_path / "m"), vocab_size=384)
    model, _ = load_model(str(tmp_path / "m"))
    tok = byte_level_tokenizer("gpt-2")
    out = tmp_path / "out" / "x.gguf"
    export_gguf(model, tok, str(out), quant="f32")
    before = out.read_bytes()

    def broken(self, *, progress=False):
        self.fout[0].write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(model, tok, str(out), quant="f16", overwrite=True)
    assert os.listdir(tmp_path / "out") == ["x.gguf"] and out.read_bytes() == before
    with pytest.raises(OSError, match="disk full"):
        export_gguf(model, tok, str(tmp_path / "out" / "y.gguf"))
    assert os.listdir(tmp_path / "out") == ["x.gguf"]


# --- the real SmolLM2-135M-Instruct -------------------------------------------------------------

# Real-model tolerances against the merged float32 model (logits up to ~30): F32 1e-5 absolute
# (measured 0: the same numbers through the same compiled graph), F16 5e-3 and
# Q8_0 5e-2 relative to max |logit| (measured 7.7e-4 and 2.0e-2).
REAL_TOL = {"f32": 1e-5, "f16": 5e-3, "q8_0": 5e-2}


@pytest.mark.real
@pytest.mark.slow
def test_real_smollm2_after_lora_steps(tmp_path):
    """3 LoRA steps on SmolLM2-135M-Instruct, exported in every type (F16 by the CLI from the
    workdir): logits in jaxft's reader (and transformers' for F16; the tiny tests cover every type),
    file sizes, the tokenizer's ids on 100 GSM8K questions, and the F16 file's greedy generations
    equal the merged model's."""
    from jaxft.eval.generate import DecodeSettings, generate
    from jaxft.models.params import flat_params
    from jaxft.peft.export import merge_adapters
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train
    from jaxft.train.restore import restore_model

    c = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.py"))
    c.total_steps, c.checkpoint_every_steps, c.data.limit, c.eval.final = 3, 3, 16, False
    c.data.seq_len, c.global_batch_size, c.optim.learning_rate = 64, 2, 2e-3
    c.scan_layers = True  # one layer body to compile: the train step compiles in half the time
    work = str(tmp_path / "run")
    train(c, work, progress=False)
    trained, tok, _ = restore_model(work)
    assert any(k.endswith(".lora_B") and np.abs(np.asarray(v)).max() > 0 for k, v in flat_params(trained).items())

    paths = {q: str(tmp_path / f"smollm2-{q}.gguf") for q in TYPES}
    assert export_main(["--checkpoint", work, "--out", paths["f16"], "--format", "gguf"]) == 0  # f16: default
    for quant in ("f32", "q8_0"):
        export_gguf(trained, tok, paths[quant], quant=quant)
    sizes = {q: os.path.getsize(p) for q, p in paths.items()}
    print("real sizes MiB:", {q: round(n / 2**20, 1) for q, n in sizes.items()})
    assert sizes["f32"] > 1.9 * sizes["f16"] > 1.9 * 1.6 * sizes["q8_0"]  # 4, 2 and 34/32 bytes a weight

    f16_model, back = load_model(paths["f16"])
    merged = merge_adapters(trained)
    for attr in ("scan_layers", "remat", "attention"):  # the same static graph as the loaded models:
        setattr(merged, attr, getattr(f16_model, attr))  # one compile serves both
    prompts = [f"Question: {q}\nAnswer:" for q in SAMPLE[:3]]
    rows = [tok(p)["input_ids"] for p in prompts]
    ids = np.asarray([r[:min(map(len, rows))] for r in rows], np.int32)
    want = jaxft_logits(merged, ids)
    for quant, path in paths.items():
        loaded = f16_model if quant == "f16" else load_gguf(path, dtype=jnp.float32, param_dtype=jnp.float32)
        got = max_diff(jaxft_logits(loaded, ids), want, quant)
        print(f"real {quant}: jaxft max|diff|={got:.3g}")
        assert got <= REAL_TOL[quant], (quant, got)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=os.path.basename(paths["f16"]),
                                              dtype=torch.float32)
    got = max_diff(torch_logits(hf, ids), want, "f16")
    print(f"real f16: transformers max|diff|={got:.3g}")
    assert got <= REAL_TOL["f16"]
    del hf

    questions = _questions("test", 200)[100:]
    assert [back(q)["input_ids"] for q in questions] == [tok(q)["input_ids"] for q in questions]
    assert (back.bos_token_id, back.eos_token_id, back.pad_token_id, back.chat_template) == \
           (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.chat_template)

    settings = DecodeSettings(max_new_tokens=24, batch_size=4)
    got = generate(f16_model, back, prompts, settings)
    ref = generate(merged, tok, prompts, settings)
    assert [g.token_ids for g in got] == [r.token_ids for r in ref]
    assert all(len(r.token_ids) > 8 for r in ref)


# --- the newer families ---------------------------------------------------------------------------

# Gemma 3 at the 270M model's layout (6 layers: llama.cpp's pattern of five sliding and one global,
# head_dim 256 = query_pre_attn_scalar, local rope base 10000), Qwen3 (head_dim 128), Llama 3 with
# llama3 rope scaling (the rope_freqs tensor). transformers' GGUF reader is a second reference for
# gemma3 and qwen3 only at these head dims (it assumes 256 and 128) and ignores rope_freqs and
# rope.scaling.*, so Llama 3 and the linear-scaled Gemma 3 go through jaxft's reader alone.
_G3_LAYOUT = dict(vocab_size=560, bos_token_id=2, eos_token_id=1, num_hidden_layers=6, layer_types=["sliding_attention"] * 5 + ["full_attention"], head_dim=256,
                  query_pre_attn_scalar=256,
                  rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
NEW_CASES = [("gemma3", _G3_LAYOUT, "spm", True), ("qwen3", dict(head_dim=128), "qwen2", True),
             ("llama3", {}, "smollm", False)]


@pytest.mark.parametrize("family,overrides,tok_kind,hf_reads", NEW_CASES, ids=[c[0] for c in NEW_CASES])
def test_new_families_round_trip(family, overrides, tok_kind, hf_reads, tmp_path):
    """F32 (1e-5 absolute; measured 0) and Q8_0 (5e-2 of max |logit|; measured <= 4.1e-2) files read
    back by jaxft with the model's logits and config (floats as float32), llama.cpp's tensor names."""
    from jaxft.models.config import RopeScaling

    make_hf_model(family, 0, str(tmp_path / "base"), seed=2, **{"vocab_size": 384, **overrides})
    model, _ = load_model(str(tmp_path / "base"))
    tok = tokenizer_for(tok_kind)
    ids = np.asarray([tok(q)["input_ids"][:16] for q in SAMPLE[:2]], np.int32)
    variants = [model.config]
    if family == "gemma3":  # also llama.cpp's linear scaling of the global layers (rope.scaling.*)
        variants.append(model.config.replace(rope_scaling=RopeScaling("linear", 2.0)))
    arch = next(a for a, n in MODEL_ARCH_NAMES.items() if n == model.config.family)
    allowed = {TENSOR_NAMES[t] for t in MODEL_TENSORS[arch]}
    for cfg in variants:
        model.config = cfg  # the rope tables are built from the model's config at each call
        want = jaxft_logits(model, ids)
        for quant in ("f32", "q8_0"):
            path = export_gguf(model, tok, str(tmp_path / f"{family}-{quant}.gguf"), quant=quant, overwrite=True)
            loaded = load_gguf(path, dtype=jnp.float32, param_dtype=jnp.float32)
            want_cfg = cfg.to_dict()
            for key, value in loaded.config.to_dict().items():  # floats went through float32 metadata
                pairs = value.items() if isinstance(value, dict) else [(None, value)]
                for sub, v in pairs:
                    w = want_cfg[key] if sub is None else want_cfg[key][sub]
                    assert v == (pytest.approx(w, rel=1e-6) if isinstance(v, float) else w), (key, sub)
            got = max_diff(jaxft_logits(loaded, ids), want, quant)
            print(f"{family} {cfg.rope_scaling} {quant}: jaxft max|diff|={got:.3g}")
            assert got <= TOL[quant]
            for t in GGUFReader(path).tensors:
                assert re.sub(r"^blk\.\d+\.", "blk.{bid}.", t.name.rsplit(".", 1)[0]) in allowed, t.name
        if hf_reads and cfg.rope_scaling is None:
            hf = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=f"{family}-f32.gguf", dtype=torch.float32)
            got = max_diff(torch_logits(hf, ids), want, "f32")
            print(f"{family} f32: transformers max|diff|={got:.3g}")
            assert got <= TOL["f32"]


def test_gemma3_outside_llama_cpp_fixed_choices_is_refused(tmp_path):
    make_hf_model("gemma3", 0, str(tmp_path / "m"), vocab_size=560)  # 3 layers: sliding, full, sliding
    model, _ = load_model(str(tmp_path / "m"))
    with pytest.raises(UnsupportedConfigError, match="every 6th layer global"):
        export_gguf(model, sentencepiece_tokenizer(), str(tmp_path / "x.gguf"))
    assert sorted(os.listdir(tmp_path)) == ["m"]
