"""Exact-match evaluation: KV-cache greedy decoding and answer scorers."""


def __getattr__(name):  # lazy, so `jaxft.eval.generate` does not pull sympy in
    if name in ("is_correct", "extract_answer"):
        from jaxft.eval import scoring
        return getattr(scoring, name)
    raise AttributeError(name)


__all__ = ["is_correct", "extract_answer"]
