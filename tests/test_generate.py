"""KV-cache greedy decoding on a tiny random model: equal to re-running the full forward, and
`warm_up` compiles exactly the shapes a later `generate_ids` call uses."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxft.eval import generate as G
from jaxft.models import ModelConfig, Transformer

CFG = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, eos_token_id=1)


def _greedy_without_cache(model, prompt, n, width=64):
    """Re-run the whole sequence every step. Right padding to one width (one compile) changes
    nothing at earlier positions: attention is causal."""
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))
    ids = list(prompt)
    for _ in range(n):
        row = np.zeros((1, width), np.int32)
        row[0, :len(ids)] = ids
        ids.append(int(jnp.argmax(forward(state, jnp.asarray(row))[0, len(ids) - 1])))
        if ids[-1] == 1:
            break
    return ids[len(prompt):]


def test_cached_decoding_equals_full_forward_and_warm_up_covers_every_shape():
    model = Transformer(CFG, rngs=nnx.Rngs(3))
    rng = np.random.RandomState(0)
    prompts = [list(rng.randint(2, 61, n)) for n in (3, 9, 17, 40, 5)]
    settings = G.DecodeSettings(max_new_tokens=12, batch_size=2, bucket=8, chunk=4)
    G._prefill.clear_cache()
    G._decode_chunk.clear_cache()
    seconds = G.warm_up(model, prompts, settings, eos_ids=[1], pad_id=0)
    sizes = (G._prefill._cache_size(), G._decode_chunk._cache_size())
    assert seconds > 0 and sizes[0] == 3  # three length buckets: 8, 24, 40
    out = G.generate_ids(model, prompts, settings, eos_ids=[1], pad_id=0)
    assert (G._prefill._cache_size(), G._decode_chunk._cache_size()) == sizes  # nothing compiled again
    for p, (ids, reason) in zip(prompts, out):
        assert ids == _greedy_without_cache(model, p, 12)
        assert reason == ("eos" if ids[-1] == 1 else "length")
