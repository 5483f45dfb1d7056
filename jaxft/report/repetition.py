"""Repetition in generations: how much of a text re-says what it already said (degenerate loops).

Definition. Lower-case the text and split it on whitespace into words w_1..w_T (punctuation stays
attached, so "5." and "5" differ). Its word n-grams are g_i = (w_i, ..., w_{i+n-1}) for
i = 1..T-n+1. An occurrence g_i *repeats* when the same n-gram occurred earlier (g_j == g_i for
some j < i). The score is

    repetition = #{i : g_i repeats} / (T - n + 1)          (0 when T < n: nothing can repeat)

so it is 0 for text with no repeated n-gram and tends to 1 for a loop: k copies of a p-word cycle
give (pk - n + 1 - p) / (pk - n + 1). A generation with score >= LOOP_THRESHOLD is a "loop":
at least half of what it says is a repeat.
"""

from __future__ import annotations

from collections.abc import Iterable

LOOP_THRESHOLD = 0.5
DEFAULT_N = 4


def repetition_score(text: str, n: int = DEFAULT_N) -> float:
    """Fraction of word n-gram occurrences that repeat an earlier one in the same text."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    words = text.lower().split()
    total = len(words) - n + 1
    if total <= 0:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for i in range(total):
        gram = tuple(words[i:i + n])
        if gram in seen:
            repeats += 1
        else:
            seen.add(gram)
    return repeats / total


def summarize(generations: Iterable[str], n: int = DEFAULT_N) -> tuple[float, float] | None:
    """(mean repetition score, loop rate in percent) over a cell's generations; None if empty."""
    scores = [repetition_score(g, n) for g in generations]
    if not scores:
        return None
    loops = sum(s >= LOOP_THRESHOLD for s in scores)
    return sum(scores) / len(scores), 100.0 * loops / len(scores)
