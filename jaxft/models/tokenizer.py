"""jaxft's tokenizer: a `tokenizers.Tokenizer` plus the special tokens and chat template around it.

Built from a GGUF file's metadata or from an HF directory's `tokenizer.json`, with no torch and no
transformers on the path. It offers the small part of transformers' tokenizer interface that jaxft
uses (`tok(text)["input_ids"]`, `decode`, `apply_chat_template`, the special ids, `save_pretrained`),
so the data, eval and export code read the same whichever library built the tokenizer.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from jaxft.errors import WeightLoadError

# llama.cpp's token types (gguf.TokenType): 3 = CONTROL (special), 4 = USER_DEFINED (added, not special).
_CONTROL, _USER_DEFINED = 3, 4

# Pre-tokenizer splits by `tokenizer.ggml.pre`, for vocabularies not trained on GPT-2's split.
# Patterns as the models' own tokenizer.json files state them; anything else gets GPT-2's split.
PRE_TOKENIZER_SPLITS = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
PRE_TOKENIZER_SPLITS["llama3"] = PRE_TOKENIZER_SPLITS["llama-v3"] = PRE_TOKENIZER_SPLITS["llama-bpe"]
PRE_TOKENIZER_SPLITS["deepseek-r1-qwen"] = PRE_TOKENIZER_SPLITS["qwen2"]


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the spelling of byte-level vocabularies)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes a special token as a string or as {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _special_id(attr: str) -> property:
    """transformers' `<attr>_id`: the id of the special token held in `attr`, None when it is unset."""
    def token_id(self) -> int | None:
        token = getattr(self, attr)
        return None if token is None else self.backend_tokenizer.token_to_id(token)

    return property(token_id)


class Tokenizer:
    """The tokenizer interface jaxft's data, eval and export code use."""

    def __init__(self, backend, *, bos_token: str | None = None, eos_token: str | None = None,
                 pad_token: str | None = None, unk_token: str | None = None,
                 chat_template: str | None = None, add_bos_token: bool = False, name_or_path: str = ""):
        self.backend_tokenizer = backend
        self.bos_token, self.eos_token, self.pad_token, self.unk_token = bos_token, eos_token, pad_token, unk_token
        self.chat_template = chat_template
        self.add_bos_token = bool(add_bos_token)
        self.name_or_path = name_or_path
        self.padding_side = "left"

    # --- ids -------------------------------------------------------------------------------------
    bos_token_id = _special_id("bos_token")
    eos_token_id = _special_id("eos_token")
    pad_token_id = _special_id("pad_token")
    unk_token_id = _special_id("unk_token")

    @property
    def vocab_size(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    # --- text <-> ids ----------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def __call__(self, text: str | list[str], add_special_tokens: bool = True,
                 return_tensors: str | None = None) -> dict[str, Any]:
        """{"input_ids", "attention_mask"}: lists, or [1, n] int arrays with return_tensors="np"."""
        if isinstance(text, str):
            ids = self.encode(text, add_special_tokens)
            out = {"input_ids": ids, "attention_mask": [1] * len(ids)}
            if return_tensors == "np":
                import numpy as np

                out = {k: np.asarray([v], np.int64) for k, v in out.items()}
            return out
        if return_tensors is not None:
            raise ValueError("return_tensors is supported for one text only")
        encs = self.backend_tokenizer.encode_batch(list(text), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encs], "attention_mask": [[1] * len(e.ids) for e in encs]}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend_tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], *, tokenize: bool = False,
                            add_generation_prompt: bool = False, **kwargs):
        """Render the model's Jinja chat template as HF does (trim_blocks, lstrip_blocks, sandboxed)."""
        if not self.chat_template:
            raise WeightLoadError(f"{self.name_or_path or 'tokenizer'}: has no chat template")
        text = _compiled_template(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=self.bos_token or "",
            eos_token=self.eos_token or "", pad_token=self.pad_token or "", unk_token=self.unk_token or "",
            **kwargs)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    # --- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str) -> None:
        """tokenizer.json + tokenizer_config.json, which transformers' AutoTokenizer reads."""
        os.makedirs(directory, exist_ok=True)
        self.backend_tokenizer.save(os.path.join(directory, "tokenizer.json"))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": self.add_bos_token,
                  "bos_token": self.bos_token, "eos_token": self.eos_token, "pad_token": self.pad_token,
                  "unk_token": self.unk_token, "clean_up_tokenization_spaces": False}
        if self.chat_template:
            config["chat_template"] = self.chat_template
        with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
            json.dump({k: v for k, v in config.items() if v is not None}, f, indent=2)
            f.write("\n")

    @classmethod
    def from_dir(cls, path: str) -> "Tokenizer":
        """An HF directory's fast tokenizer (tokenizer.json) with its tokenizer_config.json."""
        from tokenizers import Tokenizer as Backend

        tj = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tj):
            raise WeightLoadError(f"{path}: no tokenizer.json (jaxft reads fast tokenizers only; "
                                  f"convert a slow one once with transformers' AutoTokenizer.save_pretrained)")
        try:
            backend = Backend.from_file(tj)
        except Exception as e:  # the tokenizers library raises plain Exceptions on bad JSON
            raise WeightLoadError(f"{tj}: cannot be read as a tokenizer: {e}") from None
        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the latter wins
            p = os.path.join(path, name)
            if os.path.isfile(p):
                with open(p) as f:
                    try:
                        config.update(json.load(f))
                    except json.JSONDecodeError as e:
                        raise WeightLoadError(f"{p}: not valid JSON (line {e.lineno}): {e.msg}") from None
        template = config.get("chat_template")
        jinja = os.path.join(path, "chat_template.jinja")
        if template is None and os.path.isfile(jinja):
            with open(jinja) as f:
                template = f.read()
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return cls(backend, bos_token=_token_text(config.get("bos_token")),
                   eos_token=_token_text(config.get("eos_token")), pad_token=_token_text(config.get("pad_token")),
                   unk_token=_token_text(config.get("unk_token")), chat_template=template,
                   add_bos_token=bool(config.get("add_bos_token", False)), name_or_path=path)

    @classmethod
    def from_gguf(cls, path: str, metadata: dict[str, Any] | None = None) -> "Tokenizer":
        """The tokenizer a GGUF's metadata describes: byte-level BPE (`tokenizer.ggml.model` "gpt2":
        SmolLM2, Qwen2.5, OLMo, Llama 3) or SentencePiece-style BPE ("llama": Gemma, Gemma 3, Llama 2)."""
        from tokenizers import AddedToken, processors

        from jaxft.models.gguf_metadata import read_metadata

        meta = read_metadata(path) if metadata is None else metadata
        field = lambda key, default=None: meta.get(f"tokenizer.{key}", default)  # noqa: E731
        kind = field("ggml.model")
        tokens = field("ggml.tokens")
        if kind not in GGUF_TOKENIZER_MODELS:
            raise WeightLoadError(f"{path}: GGUF tokenizer.ggml.model={kind!r} is not supported; supported: "
                                  f"{list(GGUF_TOKENIZER_MODELS)} (byte-level BPE: SmolLM2, Qwen2.5, OLMo, Llama 3; "
                                  f"SentencePiece-style BPE: Gemma, Gemma 3, Llama 2)")
        if not tokens:
            raise WeightLoadError(f"{path}: GGUF has no tokenizer.ggml.tokens")

        def special(key):
            i = field(f"ggml.{key}")
            return None if i is None or not 0 <= int(i) < len(tokens) else tokens[int(i)]

        bos, eos, unk = special("bos_token_id"), special("eos_token_id"), special("unknown_token_id")
        if kind == "gpt2":
            backend = _byte_level_backend(path, tokens, field("ggml.token_type"), field("ggml.merges"),
                                          field("ggml.pre"))
            add_bos = bool(field("ggml.add_bos_token", False))
        else:
            from jaxft.models.sentencepiece import sentencepiece_backend

            backend = sentencepiece_backend(
                tokens, types=field("ggml.token_type"), scores=field("ggml.scores"), merges=field("ggml.merges"),
                architecture=meta.get("general.architecture"), unk_token=unk,
                add_space_prefix=bool(field("ggml.add_space_prefix", True)), where=path)
            add_bos = bool(field("ggml.add_bos_token", True))  # llama.cpp's default for these vocabularies
        # the named special tokens stay whole too (transformers adds them as special tokens; llama.cpp
        # matches control and unknown-type tokens whole)
        named = [t for t in dict.fromkeys((bos, eos, unk, special("padding_token_id")))
                 if t is not None and backend.token_to_id(t) is not None]
        backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in named])
        add_bos, add_eos = add_bos and bos is not None, bool(field("ggml.add_eos_token", False)) and eos is not None
        if add_bos or add_eos:
            pre, post = ([bos] if add_bos else []), ([eos] if add_eos else [])
            backend.post_processor = processors.TemplateProcessing(
                single=" ".join(pre + ["$A"] + post),
                pair=" ".join(pre + ["$A"] + post + [f"{t}:1" for t in pre] + ["$B:1"] + [f"{t}:1" for t in post]),
                special_tokens=[(t, backend.token_to_id(t)) for t in dict.fromkeys(pre + post)])
        return cls(backend, bos_token=bos, eos_token=eos, pad_token=special("padding_token_id"), unk_token=unk,
                   chat_template=field("chat_template"), add_bos_token=add_bos, name_or_path=path)


GGUF_TOKENIZER_MODELS = ("gpt2", "llama")


def _byte_level_backend(path: str, tokens: list[str], types: list[int] | None, merges: list[str] | None,
                        pre: str | None):
    """Byte-level BPE: the vocabulary in GPT-2's byte alphabet, the split named by `pre`."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as Backend

    if merges is None:
        raise WeightLoadError(f"{path}: GGUF has no tokenizer.ggml.merges")
    types = types or [1] * len(tokens)
    spelling = _byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {}
    for i, t in enumerate(tokens):  # a token outside the byte alphabet is respelled from its UTF-8 bytes
        vocab[t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))] = i
    backend = Backend(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges],
                                 fuse_unk=False, byte_fallback=False))
    split = PRE_TOKENIZER_SPLITS.get(pre)
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    # Control tokens stay whole and are skipped when decoding with skip_special_tokens; a control
    # token spelled outside the byte alphabet is a mislabel in the file and is left as it is.
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                for t, ty in zip(tokens, types) if ty == _CONTROL and set(t) <= alphabet])
    user = [AddedToken(t, normalized=False, special=False)
            for t, ty in zip(tokens, types) if ty == _USER_DEFINED and t in vocab]
    if user:
        backend.add_tokens(user)
    return backend


_TEMPLATES: dict[str, Any] = {}


def _compiled_template(source: str):
    if source not in _TEMPLATES:
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(x, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        _TEMPLATES[source] = env.from_string(source)
    return _TEMPLATES[source]
