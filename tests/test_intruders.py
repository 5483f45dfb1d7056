"""Intruder dimensions, weight displacement, the LoRA bound and the flat-dict adapter merge."""

import numpy as np
import pytest
from flax import nnx

from jaxft.analysis import spectral as S
from jaxft.errors import ConfigError
from jaxft.models import ModelConfig, Transformer, flat_params, set_params

CFG = ModelConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=4)
Q0 = "model.layers.0.self_attn.q_proj.weight"


def base_flat(seed=0):
    return {k: np.asarray(v) for k, v in flat_params(Transformer(CFG, rngs=nnx.Rngs(seed))).items()}


def test_matrix_names_cover_seven_projections_per_layer():
    names = S.matrix_names(base_flat())
    assert len(names) == 2 * 7
    assert S.describe(names[0])[0] == 0 and S.describe(names[-1])[0] == 1
    assert {S.describe(n)[1] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                 "up_proj", "down_proj"}


def test_unchanged_model_has_no_intruders_and_no_displacement():
    base = base_flat()
    tuned = {k: v.copy() for k, v in base.items()}
    res = S.intruder_dimensions(base, tuned, k=10, epsilon=0.9)
    assert res["total"] == 0 and len(res["matrices"]) == 14
    assert all(min(r["max_cos"]) > 0.999 for r in res["matrices"])
    disp = S.weight_displacement(base, tuned)
    assert disp["total"] == 0 and all(r["abs"] == 0 and r["rel"] == 0 for r in disp["matrices"])


def planted(w0: np.ndarray, scale: float = 10.0, spread: int = 8):
    """W0 + σ·u vᵀ with u an even mix of W0's `spread` weakest left singular vectors (|cos| = 1/√spread
    with each, 0 with the top ones) and σ = scale·σ_max(W0), so u becomes W's top singular vector."""
    u0, s0, _ = np.linalg.svd(w0.astype(np.float64), full_matrices=False)
    u = u0[:, -spread:].sum(axis=1) / np.sqrt(spread)
    v = np.random.default_rng(0).standard_normal(w0.shape[1])
    v /= np.linalg.norm(v)
    return w0 + scale * s0[0] * np.outer(u, v), u


def test_planted_direction_is_an_intruder():
    base = base_flat()
    tuned = dict(base)
    tuned[Q0], _ = planted(base[Q0])
    res = S.intruder_dimensions(base, tuned, k=5, epsilon=0.5)
    row = next(r for r in res["matrices"] if r["name"] == Q0)
    assert row["count"] == 1 and abs(row["max_cos"][0] - 1 / np.sqrt(8)) < 0.01  # W0 tilts it slightly
    assert res["total"] == 1 and res["per_layer"] == {0: 1, 1: 0} and res["per_proj"]["q_proj"] == 1
    assert S.intruder_dimensions(base, tuned, k=5, epsilon=0.3)["total"] == 0  # 1/√8 ≈ 0.354 >= 0.3
    # against only W0's top-4 vectors the planted direction has cosine ~0
    row = next(r for r in S.intruder_dimensions(base, tuned, k=1, base_k=4)["matrices"] if r["name"] == Q0)
    assert row["max_cos"][0] < 0.05


def lora_flat(method="lora", seed=0, r=4, alpha=8.0):
    from jaxft.peft import apply_peft

    model = apply_peft(Transformer(CFG, rngs=nnx.Rngs(seed)), method, r=r, alpha=alpha, dropout=0.0)
    flat = flat_params(model)
    rng = np.random.default_rng(seed)
    values = {k: 0.1 * rng.standard_normal(v.shape) for k, v in flat.items() if k.endswith(".lora_B")}
    values.update({k: v * (1 + 0.2 * rng.standard_normal(v.shape)) for k, v in flat.items()
                   if k.endswith("lora_magnitude_vector")})
    set_params(model, values)
    return model, {k: np.asarray(v) for k, v in flat_params(model).items()}


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_flat_merge_matches_peft_merge(method):
    from jaxft.peft.export import merge_adapters

    model, flat = lora_flat(method)
    merged = S.merge_adapters_flat(flat, alpha=8.0)
    assert not S.has_adapters(merged)
    reference = {k: np.asarray(v) for k, v in flat_params(merge_adapters(model)).items()}
    assert set(merged) == set(reference)
    for k in reference:
        np.testing.assert_allclose(merged[k], reference[k], rtol=1e-5, atol=1e-6)


def test_lora_displacement_equals_update_norm_and_respects_bound():
    _, flat = lora_flat("lora", r=4, alpha=8.0)
    s = 8.0 / 4
    base = {k: v for k, v in flat.items() if ".lora_" not in k}
    res = S.compare(base, flat, alpha=8.0, k=5)
    disp = res["displacement"]
    assert len(disp["matrices"]) == 14
    for row in disp["matrices"]:
        module = row["name"][: -len(".weight")]
        update = s * flat[module + ".lora_B"].astype(np.float64) @ flat[module + ".lora_A"]
        assert abs(row["abs"] - np.linalg.norm(update)) < 1e-6 * np.linalg.norm(update)
        assert row["rel"] == pytest.approx(row["abs"] / np.linalg.norm(base[row["name"]].astype(np.float64)), rel=1e-9)
        assert row["lora_bound"] == pytest.approx(
            s * np.linalg.norm(flat[module + ".lora_B"]) * np.linalg.norm(flat[module + ".lora_A"]), rel=1e-6)
        assert row["abs"] <= row["lora_bound"] * (1 + 1e-9)
    assert disp["total"] == pytest.approx(np.sqrt(sum(r["abs"] ** 2 for r in disp["matrices"])))
    assert res["intruders"]["k"] == 5


def test_dora_has_no_lora_bound_and_scaling_options():
    _, flat = lora_flat("dora")
    assert S.lora_bounds(flat, alpha=8.0) == {}
    _, lora = lora_flat("lora", r=4, alpha=8.0)
    a = S.merge_adapters_flat(lora, alpha=8.0)
    b = S.merge_adapters_flat(lora, scaling=2.0, r=4)
    c = S.merge_adapters_flat(lora, alpha=4.0, rslora=True)  # 4/√4 = 2
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_allclose(a[k], c[k], rtol=1e-12)


def test_errors():
    base = base_flat()
    _, lora = lora_flat("lora")
    with pytest.raises(ConfigError, match="alpha"):
        S.merge_adapters_flat(lora)
    with pytest.raises(ConfigError, match="rank 4, but r=8"):
        S.merge_adapters_flat(lora, alpha=8.0, r=8)
    with pytest.raises(ConfigError, match="merge them first"):
        S.weight_displacement(base, lora)
    other = {k: np.zeros((3, 3)) if k == Q0 else v for k, v in base.items()}
    with pytest.raises(ConfigError, match="shape"):
        S.intruder_dimensions(base, other)
    with pytest.raises(ConfigError, match="epsilon"):
        S.intruder_dimensions(base, base, epsilon=0.0)
    with pytest.raises(ConfigError, match="no per-layer projection"):
        S.weight_displacement({}, {})
