"""KV-cache greedy decoding on a tiny random model: equal to re-running the full forward, with static
batches and with continuous batching (slots refilled mid-flight, the cache realigned), and `warm_up`
compiles exactly the shapes a later `generate_ids` call uses."""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxft.eval import generate as G
from jaxft.models import ModelConfig, Transformer

CFG = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, eos_token_id=1)


@functools.partial(jax.jit, static_argnums=0)
def _full_forward(graphdef, state, x):
    """One compile per model graph and width for every reference row (not one per call)."""
    return nnx.merge(graphdef, state)(x)


def _greedy_without_cache(model, prompt, n, eos=(1,), width=64):
    """Re-run the whole sequence every step. Right padding to one width (one compile) changes
    nothing at earlier positions: attention is causal."""
    graphdef, state = nnx.split(model)
    ids = list(prompt)
    for _ in range(n):
        row = np.zeros((1, width), np.int32)
        row[0, :len(ids)] = ids
        ids.append(int(jnp.argmax(_full_forward(graphdef, state, jnp.asarray(row))[0, len(ids) - 1])))
        if ids[-1] in eos:
            break
    return ids[len(prompt):]


# (2, 2): static batches; (2, 1): a freed slot is refilled at once; (4, 1): also halves the batch twice
# (4 -> 2 -> 1 slots) once no prompt is left to start.
@pytest.mark.parametrize("batch,refill", [(2, 2), (2, 1), (4, 1)])
def test_cached_decoding_equals_full_forward_and_warm_up_covers_every_shape(batch, refill):
    model = Transformer(CFG, rngs=nnx.Rngs(3))
    rng = np.random.RandomState(0)
    prompts = [list(rng.randint(2, 61, n)) for n in (3, 9, 17, 40, 5, 22, 11, 30, 7)]
    # EOS = a token the model emits early in some rows but not others, so rows finish at different
    # steps and slots are refilled while others decode (with chunk 4 the cache also has to be realigned).
    free_run = [_greedy_without_cache(model, p, 12, eos=()) for p in prompts]
    eos = collections.Counter(t for row in free_run for t in row).most_common(1)[0][0]
    want = [_greedy_without_cache(model, p, 12, eos=(eos,)) for p in prompts]
    assert len({len(w) for w in want}) > 2
    settings = G.DecodeSettings(max_new_tokens=12, batch_size=batch, bucket=8, chunk=4, refill=refill)
    compiled = (G._refill, G._decode_chunk, G._realign, G._halve)
    for f in compiled:
        f.clear_cache()
    seconds = G.warm_up(model, prompts, settings, eos_ids=[eos], pad_id=0)
    sizes = [f._cache_size() for f in compiled]
    # One prefill per padded group length: sorted lengths 3 5 7 9 11 17 22 30 40 in groups of 2 pad to
    # 8 16 24 32 40, one at a time to 8 8 8 16 16 24 24 32 40: five shapes either way.
    assert seconds > 0 and sizes[0] == 5
    assert sizes[3] == {2: 1, 4: 2}[batch]  # one halving shape per size below batch_size
    finished = []
    out = G.generate_ids(model, prompts, settings, eos_ids=[eos], pad_id=0, on_finished=finished.append)
    assert [f._cache_size() for f in compiled] == sizes  # nothing compiled again
    assert sorted(finished) == list(range(len(prompts)))
    for p, w, (ids, reason) in zip(prompts, want, out):
        assert ids == w
        assert reason == ("eos" if ids[-1] == eos else "length")


class _CharTokenizer:
    """One character per token id (ids 2..60), enough for `generate`'s stop-string path offline."""

    eos_token_id, pad_token_id = None, 0

    def __call__(self, text):
        return {"input_ids": [ord(c) - 63 for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i + 63) for i in ids if i >= 2)


def test_stop_strings_end_rows_early_and_cut_the_text():
    model = Transformer(CFG, rngs=nnx.Rngs(3))
    tok = _CharTokenizer()
    rng = np.random.RandomState(1)
    prompts = [tok.decode(rng.randint(2, 61, n)) for n in (4, 12, 7, 19, 9, 15)]
    full = [tok.decode(_greedy_without_cache(model, tok(p)["input_ids"], 16, eos=())) for p in prompts]
    stop = full[1][5:7]  # occurs mid-way in some rows only
    want = [text[:text.find(stop)] if stop in text else text for text in full]
    assert any(stop in t for t in full) and not all(stop in t for t in full)
    settings = G.DecodeSettings(max_new_tokens=16, batch_size=2, bucket=8, chunk=4, refill=1, stop_strings=(stop,))
    gens = G.generate(model, tok, prompts, settings, eos_ids=[])
    assert [g.text for g in gens] == want
    for g, text in zip(gens, full):
        assert g.finish_reason == ("stop_string" if stop in text else "length")
        if stop in text:  # decoding stopped within one chunk of the stop string
            assert len(g.token_ids) < 16 or text.find(stop) + len(stop) > 12


def test_the_batch_halves_for_the_tail_and_results_stay_exact(monkeypatch):
    """Seven short rows and one long one that starts last: once the queue is empty the batch goes
    4 -> 2 -> 1 slots while that row finishes, and every row still equals the uncached reference."""
    model = Transformer(CFG, rngs=nnx.Rngs(3))
    rng = np.random.RandomState(0)
    prompts = [list(rng.randint(2, 61, n)) for n in (3, 9, 17, 40, 5, 22, 11, 30, 7)]
    eos = (10, 20, 9)  # tokens of this seeded model's free run that end every row but the 40-token prompt's early
    want = [_greedy_without_cache(model, p, 16, eos=eos) for p in prompts]
    assert len(want[3]) == 16 and max(len(w) for i, w in enumerate(want) if i != 3) <= 7
    sizes = []
    halve = G._Engine.halve

    def spy(self, live):
        done = halve(self, live)
        sizes.append(self.slots_n) if done else None
        return done

    monkeypatch.setattr(G._Engine, "halve", spy)
    settings = G.DecodeSettings(max_new_tokens=16, batch_size=4, bucket=8, chunk=4, refill=1)
    out = G.generate_ids(model, prompts, settings, eos_ids=list(eos), pad_id=0)
    assert sizes == [2, 1]
    assert [ids for ids, _ in out] == want
