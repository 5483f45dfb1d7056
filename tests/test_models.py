"""Model ports against transformers on tiny random checkpoints (float32)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from hf_tiny import FAMILY_VARIANTS, make_hf_model
from jaxft.models import load_model

CASES = [(f, v) for f in FAMILY_VARIANTS for v in range(len(FAMILY_VARIANTS[f]))]
TOL = 1e-4  # max |delta logits| in float32


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{v}" for f, v in CASES])
def pair(request, tmp_path_factory):
    family, variant = request.param
    d = str(tmp_path_factory.mktemp(f"{family}{variant}"))
    ref = make_hf_model(family, variant, d, seed=variant + 1)
    model, tok = load_model(d)
    return ref, model, family


def _ids(seed, shape, vocab=128):
    return np.random.RandomState(seed).randint(3, vocab, shape)


def test_logits_match_transformers(pair):
    ref, model, _ = pair
    ids = _ids(0, (3, 11))
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits.numpy()
    got = np.asarray(model(jnp.asarray(ids, jnp.int32)))
    assert got.dtype == np.float32 and got.shape == (3, 11, 128)
    assert np.abs(got - want).max() <= TOL


def test_left_padding_matches_transformers_and_unpadded_rows(pair):
    ref, model, _ = pair
    ids = _ids(1, (3, 10))
    mask = np.ones_like(ids)
    mask[1, :4] = 0
    mask[2, :7] = 0
    with torch.no_grad():
        want = ref(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    got = np.asarray(model(jnp.asarray(ids, jnp.int32), jnp.asarray(mask)))
    real = mask > 0
    assert np.abs(got - want)[real].max() <= TOL
    for row, start in ((1, 4), (2, 7)):  # each padded row equals the same tokens without padding
        alone = np.asarray(model(jnp.asarray(ids[row:row + 1, start:], jnp.int32)))
        assert np.abs(got[row, start:] - alone[0]).max() <= TOL


@pytest.mark.parametrize("impl", ["dpa", "chunked"])
def test_fused_attention_path_matches_transformers(pair, impl, monkeypatch):
    """attention="dpa" (jax.nn.dot_product_attention, what "cudnn" calls on a GPU) and "chunked" (query
    blocks of 2 rows here, 512 by default) against transformers, for unpadded rows (no mask: the flash
    fast path), left padding, and packed rows (segment ids)."""
    from jaxft.models import transformer

    monkeypatch.setattr(transformer, "ATTENTION_CHUNK", 2)
    ref, model, _ = pair
    ids = _ids(5, (3, 10))
    mask = np.ones_like(ids)
    mask[1, :4] = 0
    model.attention = impl
    try:
        with torch.no_grad():
            want = ref(torch.tensor(ids)).logits.numpy()
            want_pad = ref(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
            want_a = ref(torch.tensor(ids[:1, :6])).logits.numpy()
            want_b = ref(torch.tensor(ids[:1, 6:])).logits.numpy()
        assert np.abs(np.asarray(model(jnp.asarray(ids, jnp.int32))) - want).max() <= TOL
        got_pad = np.asarray(model(jnp.asarray(ids, jnp.int32), jnp.asarray(mask)))
        assert np.abs(got_pad - want_pad)[mask > 0].max() <= TOL
        seg = jnp.asarray([[1] * 6 + [2] * 4])
        pos = jnp.asarray([list(range(6)) + list(range(4))])
        packed = np.asarray(model(jnp.asarray(ids[:1], jnp.int32), segment_ids=seg, positions=pos))
        assert np.abs(packed[:, :6] - want_a).max() <= TOL
        assert np.abs(packed[:, 6:] - want_b).max() <= TOL
        model.attention = "flash"
        with pytest.raises(ValueError, match="allowed"):
            model(jnp.asarray(ids, jnp.int32))
    finally:
        model.attention = "xla"


def test_bfloat16_compute_stays_close(pair, tmp_path):
    ref, model32, _ = pair
    ids = _ids(2, (2, 8))
    # Reload the same weights with bfloat16 compute (float32 master weights).
    d = tmp_path / "m"
    ref.save_pretrained(d)
    model16, _ = load_model(str(d), dtype="bfloat16")
    a = np.asarray(model32(jnp.asarray(ids, jnp.int32)))
    b = np.asarray(model16(jnp.asarray(ids, jnp.int32)))
    assert b.dtype == np.float32  # logits always float32
    assert model16.model.embed_tokens.weight[...].dtype == jnp.float32
    assert np.abs(a - b).max() <= 0.05 * max(1.0, np.abs(a).max())


def test_olmo_clip_qkv_is_active(tmp_path):
    """The clip variant must differ from the same weights without clipping (so clipping is tested)."""
    ref = make_hf_model("olmo", 1, str(tmp_path / "clip"), seed=3)
    cfg = json.load(open(tmp_path / "clip" / "config.json"))
    cfg["clip_qkv"] = None
    os.makedirs(tmp_path / "noclip")
    ref.save_pretrained(tmp_path / "noclip")
    json.dump(cfg, open(tmp_path / "noclip" / "config.json", "w"))
    ids = jnp.asarray(_ids(3, (1, 6)), jnp.int32)
    a = np.asarray(load_model(str(tmp_path / "clip"))[0](ids))
    b = np.asarray(load_model(str(tmp_path / "noclip"))[0](ids))
    assert np.abs(a - b).max() > 1e-3


def test_sharded_safetensors_checkpoint(tmp_path):
    ref = make_hf_model("llama", 1, str(tmp_path / "one"), seed=4)
    ref.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert os.path.isfile(tmp_path / "sharded" / "model.safetensors.index.json")
    ids = jnp.asarray(_ids(4, (2, 7)), jnp.int32)
    a = np.asarray(load_model(str(tmp_path / "sharded"))[0](ids))
    with torch.no_grad():
        want = ref(torch.tensor(np.asarray(ids))).logits.numpy()
    assert np.abs(a - want).max() <= TOL


def test_chunked_attention_gradients_equal_the_explicit_path(monkeypatch):
    """The chunked path (blocks rematerialised in the backward) gives the explicit path's loss and
    gradients on packed rows, float32, within 1e-5 relative."""
    from flax import nnx

    from jaxft.models import ModelConfig, Transformer
    from jaxft.models import transformer

    monkeypatch.setattr(transformer, "ATTENTION_CHUNK", 4)
    cfg = ModelConfig(family="llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    model = Transformer(cfg, rngs=nnx.Rngs(0), scan_layers=True)
    ids = jnp.asarray(np.random.RandomState(0).randint(0, 64, (2, 16)), jnp.int32)
    seg = jnp.asarray([[1] * 9 + [2] * 5 + [0] * 2, [1] * 16])
    pos = jnp.asarray([list(range(9)) + list(range(5)) + [0, 0], list(range(16))])
    graphdef, params = nnx.split(model)

    def loss(p, impl):
        m = nnx.merge(graphdef, p)
        m.attention = impl
        return jnp.mean(m(ids, segment_ids=seg, positions=pos) ** 2)

    (l1, g1), (l2, g2) = (jax.value_and_grad(loss)(params, impl) for impl in ("xla", "chunked"))
    assert abs(float(l1) - float(l2)) <= 1e-6 * abs(float(l1))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        assert np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-5 * (np.abs(np.asarray(a)).max() + 1e-12)


@pytest.mark.parametrize("rows", [1, 8, 64, 65, 300])
@pytest.mark.parametrize("dtype,preferred", [(jnp.float32, None), (jnp.bfloat16, None), (jnp.bfloat16, jnp.float32)])
def test_project_equals_x_times_w_transposed_on_every_row_count(rows, dtype, preferred):
    """`project` takes the (W xᵀ)ᵀ form for 2..FEW_ROWS rows on CPU and x Wᵀ otherwise; both must be
    x Wᵀ (float64 reference; tolerance: one rounding of the output dtype over a 96-term sum)."""
    from jaxft.models.transformer import FEW_ROWS, project

    assert 1 < 8 <= FEW_ROWS < 65  # the grid above covers both branches
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 1, 96)).astype(np.float32)
    w = rng.standard_normal((40, 96)).astype(np.float32)
    xd, wd = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
    y = project(xd, wd, preferred_element_type=preferred)
    assert y.shape == (rows, 1, 40) and y.dtype == (preferred or dtype)
    ref = np.asarray(xd, np.float64) @ np.asarray(wd, np.float64).T
    tol = 1e-4 if y.dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(np.asarray(y, np.float64), ref, rtol=tol, atol=tol * 10)
    # and its gradient (training with tiny batches goes through the same branch)
    g = jax.grad(lambda a: jnp.sum(project(a, jnp.asarray(w)) ** 2))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(g), 2 * (x @ w.T) @ w, rtol=1e-3, atol=1e-3)
