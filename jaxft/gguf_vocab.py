"""The tokenizer half of a GGUF export: llama.cpp's `tokenizer.ggml.*` fields from a fast tokenizer.

Two kinds can be written: byte-level BPE (`tokenizer.ggml.model` "gpt2": SmolLM2, Qwen2.5, OLMo)
and SentencePiece-style BPE with byte fallback ("llama": Gemma). Anything else, or a byte-level
pre-tokenizer llama.cpp has no name for, is refused: a file that tokenizes differently from the
model it carries is worse than no file.

The tokenizer is duck-typed (jaxft's Tokenizer or a transformers fast tokenizer): only
`backend_tokenizer`, the special ids, `chat_template` and `add_bos_token` are read.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from jaxft.errors import UnsupportedConfigError

# gguf.TokenType values
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_UNMERGED_SCORE = -1e9  # multi-character pieces no merge builds: never preferred by llama.cpp's SPM


@dataclasses.dataclass
class GGUFVocab:
    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
    pre: str  # llama.cpp's pre-tokenizer name
    tokens: list[str]
    types: list[int]
    merges: list[str]
    scores: list[float] | None
    special_ids: dict[str, int | None]  # bos, eos, unk, pad
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None


def _fail(where: str, what: str) -> None:
    raise UnsupportedConfigError(f"{where}: {what}, so it cannot be written to a GGUF file")


def _steps(node: dict | None, key: str) -> list[dict]:
    if node is None:
        return []
    return list(node[key]) if node.get("type") == "Sequence" else [node]


def _byte_level_pre(d: dict, where: str) -> str:
    """llama.cpp's name for this byte-level split (the regex it applies before BPE)."""
    from jaxft.models.tokenizer import PRE_TOKENIZER_SPLITS  # the named splits jaxft's GGUF reader rebuilds

    norm = [n.get("type") for n in _steps(d.get("normalizer"), "normalizers")]
    if norm not in ([], ["NFC"]):
        _fail(where, f"its byte-level tokenizer has normalizer {norm} (llama.cpp applies none)")
    steps = _steps(d.get("pre_tokenizer"), "pretokenizers")
    kinds = [s.get("type") for s in steps]
    last = steps[-1] if steps else {}
    if kinds and kinds[-1] == "ByteLevel" and not last.get("add_prefix_space", False):
        regex = last.get("use_regex", True)
        if kinds == ["ByteLevel"] and regex:
            return "gpt-2"
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and regex:
            return "smollm"  # llama.cpp: each digit alone, then GPT-2's split
        if kinds == ["Split", "ByteLevel"] and not regex and steps[0].get("behavior") == "Isolated" \
                and not steps[0].get("invert"):
            pattern = steps[0].get("pattern", {}).get("Regex")
            for name in ("llama-bpe", "qwen2"):
                if pattern == PRE_TOKENIZER_SPLITS.get(name):
                    return name
    _fail(where, f"its byte-level pre-tokenizer {json.dumps(d.get('pre_tokenizer'))[:300]} has no llama.cpp "
                 f"name (known: GPT-2's split, SmolLM's digits + GPT-2, llama-bpe and qwen2 regex splits)")


def _sentencepiece_prefix(d: dict, where: str) -> bool:
    """Whether the SentencePiece-style tokenizer prepends "▁" (llama.cpp's add_space_prefix)."""
    norm = _steps(d.get("normalizer"), "normalizers")
    pre = _steps(d.get("pre_tokenizer"), "pretokenizers")
    replace = [n for n in norm if n.get("type") == "Replace"]
    if norm and replace and replace[0].get("pattern") == {"String": " "} and replace[0].get("content") == "\u2581" \
            and all(n.get("type") in ("Replace", "Prepend") for n in norm) \
            and all(p.get("type") == "Split" and p.get("pattern") == {"String": " "} for p in pre):
        return any(n.get("type") == "Prepend" and n.get("prepend") == "\u2581" for n in norm)
    if not norm and len(pre) == 1 and pre[0].get("type") == "Metaspace" and pre[0].get("replacement") == "\u2581":
        return pre[0].get("prepend_scheme", "always") in ("always", "first")
    _fail(where, f"its SentencePiece-style tokenizer has normalizer {json.dumps(d.get('normalizer'))[:200]} and "
                 f"pre-tokenizer {json.dumps(d.get('pre_tokenizer'))[:200]} (expected spaces replaced by '\u2581')")


def _adds_bos(tok: Any, bos: int | None) -> bool:
    """Whether encoding puts BOS first: what the tokenizer does, whatever its add_bos_token flag says
    (a transformers tokenizer built around a backend reports False while the backend adds it)."""
    return bos is not None and list(tok("a")["input_ids"][:1]) == [bos]


def gguf_vocab(tok: Any, vocab_size: int, *, fallback_ids: dict[str, int | None] | None = None,
               where: str = "tokenizer") -> GGUFVocab:
    """llama.cpp's tokenizer fields for `tok`, padded with UNUSED "[PADi]" tokens to the model's vocab_size.

    `fallback_ids` (bos/eos/unk/pad, e.g. from the model config) fill special ids the tokenizer lacks.
    """
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        _fail(where, f"{type(tok).__name__} has no backend_tokenizer (only fast tokenizers are supported)")
    d = json.loads(backend.to_str())
    model = d.get("model", {})
    if model.get("type") != "BPE":
        _fail(where, f"its model is {model.get('type')!r}; supported: BPE (byte-level, or SentencePiece-style "
                     f"with byte_fallback)")
    kind = "llama" if model.get("byte_fallback") else "gpt2"
    pre = "default" if kind == "llama" else _byte_level_pre(d, where)
    space_prefix = _sentencepiece_prefix(d, where) if kind == "llama" else False

    by_id: dict[int, str] = {int(i): t for t, i in model.get("vocab", {}).items()}
    added = {int(a["id"]): a for a in d.get("added_tokens", [])}
    by_id.update({i: a["content"] for i, a in added.items()})
    if max(by_id, default=-1) >= vocab_size:
        _fail(where, f"it has token id {max(by_id)} but the model's vocab_size is {vocab_size}")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    if any(m.count(" ") != 1 for m in merges):
        _fail(where, "a merge has a piece containing a space (GGUF writes merges as 'left right')")
    ids = {name: getattr(tok, f"{name}_token_id", None) for name in ("bos", "eos", "unk", "pad")}
    for name, value in (fallback_ids or {}).items():
        if ids.get(name) is None:
            ids[name] = value

    tokens, types = [], []
    for i in range(vocab_size):
        text = by_id.get(i)
        tokens.append(f"[PAD{i}]" if text is None else text)
        if text is None:
            types.append(UNUSED)
        elif kind == "llama" and i == ids["unk"]:
            types.append(UNKNOWN)
        elif kind == "llama" and _BYTE_TOKEN.fullmatch(text):
            types.append(BYTE)
        elif i in added:
            types.append(CONTROL if added[i].get("special") else USER_DEFINED)
        else:
            types.append(NORMAL)
    scores = None
    if kind == "llama":  # llama.cpp's SPM merges the best-scoring pair: score = -merge rank
        rank = {m.replace(" ", ""): r for r, m in reversed(list(enumerate(merges)))}
        scores = [-float(rank[t]) if t in rank else (0.0 if len(t) == 1 else _UNMERGED_SCORE) for t in tokens]
    template = getattr(tok, "chat_template", None)
    return GGUFVocab(model=kind, pre=pre, tokens=tokens, types=types, merges=merges, scores=scores,
                     special_ids=ids, add_bos=_adds_bos(tok, ids["bos"]),
                     add_eos=bool(getattr(tok, "add_eos_token", False)), add_space_prefix=space_prefix,
                     chat_template=template if isinstance(template, str) else None)


def write_vocab(writer: Any, v: GGUFVocab) -> None:
    """Add the fields to a gguf.GGUFWriter (before its header is written)."""
    writer.add_tokenizer_model(v.model)
    writer.add_tokenizer_pre(v.pre)
    writer.add_token_list(v.tokens)
    writer.add_token_types(v.types)
    if v.scores is not None:
        writer.add_token_scores(v.scores)
    if v.merges:
        writer.add_token_merges(v.merges)
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
              "pad": writer.add_pad_token_id}
    for name, value in v.special_ids.items():
        if value is not None:
            adders[name](int(value))
    writer.add_add_bos_token(v.add_bos)
    writer.add_add_eos_token(v.add_eos)
    writer.add_add_space_prefix(v.add_space_prefix)
    if v.chat_template:
        writer.add_chat_template(v.chat_template)
