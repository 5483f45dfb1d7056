"""Fixed language-modelling batches for Hessian and training-dynamics studies.

Analysis batches are deliberately simple: texts are tokenised, joined by EOS into one stream and cut
into rows of seq_len + 1 tokens; input_ids = row[:-1], targets = row[1:], loss on every token. That
is the plain LM loss, not the prompt-masked SFT loss, so the Hessian describes the model on the
text distribution rather than on one prompt format.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from jaxft.errors import DataError
from jaxft.jsonl import iter_jsonl


def pack_tokens(stream: Sequence[int], batch_size: int, seq_len: int, num_batches: int) -> list[dict]:
    """num_batches dicts {input_ids, attention_mask, targets, loss_mask}, each [batch_size, seq_len]."""
    if min(batch_size, seq_len, num_batches) < 1:
        raise DataError(f"batch_size, seq_len and num_batches must be >= 1, got {batch_size}, {seq_len}, "
                        f"{num_batches}")
    need = num_batches * batch_size * (seq_len + 1)
    stream = np.asarray(stream, dtype=np.int32)
    if stream.size < need:
        raise DataError(f"{stream.size} tokens are too few for {num_batches} batches of {batch_size} x "
                        f"{seq_len + 1} tokens ({need}); use more examples or smaller batches")
    rows = stream[:need].reshape(num_batches, batch_size, seq_len + 1)
    ones = np.ones((batch_size, seq_len), np.int32)
    return [{"input_ids": r[:, :-1], "attention_mask": ones, "targets": r[:, 1:],
             "loss_mask": ones.astype(np.float32)} for r in rows]


def text_batches(texts: Iterable[str], tokenizer, batch_size: int, seq_len: int, num_batches: int) -> list[dict]:
    """Tokenise texts (EOS-separated) and pack them with `pack_tokens`, reading only as many as needed."""
    if tokenizer is None:
        raise DataError("tokenising text needs a tokenizer, and this model has none; use --data=random")
    eos = tokenizer.eos_token_id
    need = num_batches * batch_size * (seq_len + 1)
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
        if len(stream) >= need:
            break
    return pack_tokens(stream, batch_size, seq_len, num_batches)


def jsonl_texts(path: str) -> Iterable[str]:
    """question + "\\n" + answer per row (GSM8K layout), or the `text` field."""
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist")
    for where, row in iter_jsonl(path):
        if "text" in row:
            yield str(row["text"])
        elif "question" in row and "answer" in row:
            yield f"{row['question']}\n{row['answer']}"
        else:
            raise DataError(f"{where}: a row needs 'text', or 'question' and 'answer'")


def gsm8k_texts(limit: int | None = None) -> list[str]:
    """GSM8K train problems with their worked solutions, from jaxft's task loader."""
    from jaxft.data.tasks import load_task

    return [f"{ex.question}\n{ex.solution}" for ex in load_task("gsm8k", "train", limit=limit)]


def random_batches(vocab_size: int, batch_size: int, seq_len: int, num_batches: int, seed: int = 0) -> list[dict]:
    """Uniform random tokens: no text needed (tiny test models have no tokenizer)."""
    rng = np.random.default_rng(seed)
    return pack_tokens(rng.integers(0, vocab_size, num_batches * batch_size * (seq_len + 1)),
                       batch_size, seq_len, num_batches)

