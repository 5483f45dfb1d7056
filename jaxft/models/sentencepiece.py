"""SentencePiece-style BPE from a GGUF's metadata (`tokenizer.ggml.model == "llama"`), torch-free.

llama.cpp files of SentencePiece models (Gemma, Gemma 3, Llama 2, Mistral, ...) carry the pieces,
their scores and token types but no merges. The tokenizer is rebuilt as a `tokenizers` BPE with
byte fallback, laid out as transformers' GGUF reader lays it out, so ids are the same as
`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, the reference the tests hold it to:

- merges: every split of a piece into two pieces of the vocabulary, best first. The priority of a
  piece is its score, except in Gemma files, whose scores do not follow the merge order: there it
  is the piece's position in the file (earlier = merged first). Ties: the longer left part first.
- Gemma: a space is "▁" before BPE (normalizer), nothing is prepended, whitespace-only pieces
  stored with real spaces ("  ") are respelled "▁▁"; other files: Metaspace, "▁" prepended once
  when the file's add_space_prefix (default true) says so, and stripped again when decoding.
  (transformers prepends whatever the flag says; llama.cpp and jaxft follow the flag.)
- control and unknown tokens (types 3, 2) are special added tokens, kept whole and skipped by
  `decode(skip_special_tokens=True)`; user-defined ones (type 4: "\\n\\n", "<table>", ...) are added
  tokens matched whole in the text; byte tokens "<0x41>" take any character no piece covers.
"""

from __future__ import annotations

from typing import Sequence

from jaxft.errors import WeightLoadError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # gguf.TokenType
SPACE = "\u2581"  # SentencePiece's visible space
GEMMA_ARCHITECTURES = ("gemma", "gemma2", "gemma3")


def respell_spaces(tokens: Sequence[str]) -> list[str]:
    """Gemma files store pieces of only spaces with real spaces; BPE sees them as "▁"s."""
    return [SPACE * len(t) if t and " " in t and not t.strip() else t for t in tokens]


def derive_merges(tokens: Sequence[str], priority: Sequence[float]) -> list[tuple[str, str]]:
    """The BPE merges a piece vocabulary implies: each (left, right) split of a piece whose halves
    are pieces too, ordered by the piece's priority (higher first), then the longer left half
    (so no two splits of one piece tie); equal priorities keep vocabulary order. A piece listed
    twice counts once, with its last priority."""
    known = set(tokens)
    found = []
    for piece, p in dict(zip(tokens, priority)).items():
        found.extend((p, piece[:k], piece[k:]) for k in range(1, len(piece))
                     if piece[:k] in known and piece[k:] in known)
    found.sort(key=lambda x: (x[0], len(x[1]), len(x[2])), reverse=True)
    return [(left, right) for _, left, right in found]


def sentencepiece_backend(tokens: Sequence[str], *, types: Sequence[int] | None, scores: Sequence[float] | None,
                          merges: Sequence[str] | None, architecture: str | None, unk_token: str | None,
                          add_space_prefix: bool, where: str):
    """A `tokenizers.Tokenizer` for the file's SentencePiece-style vocabulary (see the module doc)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tokens = list(tokens)
    types = list(types) if types is not None else [NORMAL] * len(tokens)
    if len(types) != len(tokens) or (scores is not None and len(scores) != len(tokens)):
        raise WeightLoadError(f"{where}: GGUF tokenizer.ggml.token_type / tokenizer.ggml.scores have "
                              f"{len(types)} / {len(scores or [])} entries for {len(tokens)} tokens")
    gemma = architecture in GEMMA_ARCHITECTURES
    if gemma and add_space_prefix:
        raise WeightLoadError(f"{where}: GGUF tokenizer.ggml.add_space_prefix=true in a {architecture} file is not "
                              f"supported (Gemma's SentencePiece model prepends no space; llama.cpp's converter "
                              f"writes false)")
    pieces = respell_spaces(tokens) if gemma else tokens
    if merges is not None:
        pairs = [tuple(m.split(" ", 1)) for m in merges]
    elif gemma:
        pairs = derive_merges(pieces, [-i for i in range(len(pieces))])
    elif scores is not None:
        pairs = derive_merges(pieces, scores)
    else:
        raise WeightLoadError(f"{where}: GGUF has neither tokenizer.ggml.scores nor tokenizer.ggml.merges, "
                              f"so a SentencePiece-style tokenizer cannot be built")
    vocab = {t: i for i, t in enumerate(pieces)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=pairs, unk_token=unk_token, fuse_unk=True,
                                   byte_fallback=True, dropout=None))
    strip = decoders.Strip(content=" ", left=1, right=0)
    if gemma:  # spaces become "▁" and nothing is prepended (Gemma's SentencePiece: no dummy prefix)
        backend.normalizer = normalizers.Replace(" ", SPACE)
        # a no-op after the normalizer (no spaces are left), kept so that the saved tokenizer.json is
        # the one transformers writes for Gemma
        backend.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    else:
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, split=False,
                                                         prepend_scheme="first" if add_space_prefix else "never")
    backend.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
                                        + ([strip] if add_space_prefix else []))
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                for t, ty in zip(tokens, types) if ty in (CONTROL, UNKNOWN)])
    user = [AddedToken(t, normalized=False, special=False)
            for t, ty in zip(tokens, types) if ty == USER_DEFINED and t in vocab]
    if user:
        backend.add_tokens(user)
    return backend
