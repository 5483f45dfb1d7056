"""Gemma 3 (text), Qwen3 and Llama 3.x (llama3 rope scaling) against transformers on tiny random
checkpoints (tests/hf_tiny.py NEW_FAMILIES), and the real models' shapes.

References: transformers 5.24's Gemma3ForCausalLM (Gemma3TextConfig), Qwen3ForCausalLM and
LlamaForCausalLM (rope_type llama3), float32 on CPU; their own `generate` for greedy decoding.
Tolerances: float32 logits 1e-4 absolute (measured <= 2e-6 with logits up to ~2); bfloat16 compute
5% of max |logit| (measured about 1%: transformers' own bfloat16 model is as far from its float32
one); scan vs unrolled loss and gradients 1e-5 relative. The tiny Gemma 3 has a window of 4 tokens,
shorter than every test sequence (20 tokens, 24 generated), so a missing or wrong window moves the
logits by O(1) (measured 2.3 with weight_scale 4).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from hf_tiny import NEW_FAMILIES, make_hf_model
from jaxft.errors import UnsupportedConfigError
from jaxft.models import load_model, registry_config
from jaxft.models.hf_config import config_from_hf
from jaxft.models.params import abstract_model, count_params

TOL = 1e-4
FAMILIES = sorted(NEW_FAMILIES)  # gemma3, llama3, qwen3
SEQ = 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """family -> (transformers model, jaxft model, checkpoint dir), built once per module."""
    @functools.cache
    def build(family):
        d = str(tmp_path_factory.mktemp(family))
        ref = make_hf_model(family, 0, d, seed=1, weight_scale=4.0)  # larger logits: features show
        model, _ = load_model(d)
        return ref, model, d
    return build


@pytest.fixture(scope="module")
def g3(tiny):
    """The tiny Gemma 3, built in a setup phase (time guard: setup and call are timed apart)."""
    return tiny("gemma3")


@functools.partial(jax.jit, static_argnums=0)
def _jit_forward(graphdef, state, ids, mask, seg, pos):
    return nnx.merge(graphdef, state)(ids, mask, segment_ids=seg, positions=pos)


def _logits(model, ids, mask=None, seg=None, pos=None) -> np.ndarray:
    """The model's float32 logits, compiled whole (faster here than op-by-op dispatch)."""
    graphdef, state = nnx.split(model)
    args = (None if a is None else jnp.asarray(a, jnp.int32) for a in (ids, mask, seg, pos))
    return np.asarray(_jit_forward(graphdef, state, *args))


def _ids(seed, shape):
    return np.random.RandomState(seed).randint(3, 128, shape)


def _torch(ref, ids, mask=None):
    with torch.no_grad():
        kw = {} if mask is None else {"attention_mask": torch.tensor(mask)}
        return ref(torch.tensor(ids), **kw).logits.float().numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers_with_and_without_left_padding(tiny, family):
    ref, model, _ = tiny(family)
    ids = _ids(0, (3, SEQ))
    mask = np.ones_like(ids)
    mask[1, :5] = 0
    mask[2, :11] = 0
    got = _logits(model, ids)
    assert np.abs(got - _torch(ref, ids)).max() <= TOL
    got = _logits(model, ids, mask)
    assert np.abs(got - _torch(ref, ids, mask))[mask > 0].max() <= TOL


def test_gemma3_bfloat16_compute_stays_near_transformers(g3):
    ref, _, d = g3
    model16, _ = load_model(d, dtype="bfloat16")
    ids = _ids(1, (2, SEQ))
    want = _torch(ref, ids)
    got = _logits(model16, ids)
    ref16 = type(ref).from_pretrained(d, dtype=torch.bfloat16).eval()
    theirs = np.abs(_torch(ref16, ids) - want).max()
    ours = np.abs(got - want).max()
    print(f"gemma3 bf16 max|diff| vs float32 transformers: jaxft {ours:.3g}, transformers bf16 {theirs:.3g}")
    assert ours <= 0.05 * np.abs(want).max()


def _packed():
    """One row of two examples (9 and 8 tokens, both longer than the window) and 3 padding tokens."""
    ids = _ids(2, (1, SEQ))
    seg = np.asarray([[1] * 9 + [2] * 8 + [0] * 3])
    pos = np.asarray([list(range(9)) + list(range(8)) + [0] * 3])
    return ids, seg, pos


@pytest.mark.parametrize("impl", ["xla", "dpa", "chunked"])
def test_gemma3_packed_rows_equal_separate_rows(g3, impl, monkeypatch):
    """Packed rows (segment ids) keep attention inside each example and inside the window, on the
    explicit, the fused (jax.nn.dot_product_attention: an explicit local mask with padding, the
    kernel's local_window_size without) and the chunked path (blocks of 4 query rows)."""
    from jaxft.models import transformer

    monkeypatch.setattr(transformer, "ATTENTION_CHUNK", 4)
    ref, model, _ = g3
    ids, seg, pos = _packed()
    model.attention = impl
    try:
        packed = _logits(model, ids, seg=seg, pos=pos)
        assert np.abs(packed[:, :9] - _torch(ref, ids[:, :9])).max() <= TOL
        assert np.abs(packed[:, 9:17] - _torch(ref, ids[:, 9:17])).max() <= TOL
        if impl == "dpa":  # no mask at all: the kernel's own local_window_size
            full = _ids(3, (2, SEQ))
            assert np.abs(_logits(model, full) - _torch(ref, full)).max() <= TOL
    finally:
        model.attention = "xla"


def _packed_loss_and_grads(model, scan: bool, remat: str, impl: str):
    ids, seg, pos = (jnp.asarray(a) for a in _packed())
    graphdef, state = nnx.split(model)

    def loss(st):
        m = nnx.merge(graphdef, st)
        m.scan_layers, m.remat, m.attention = scan, remat, impl
        logits = m(ids.astype(jnp.int32), segment_ids=seg, positions=pos)
        return jnp.mean(jnp.where(seg[..., None] > 0, logits, 0.0) ** 2)  # padding carries no loss

    return jax.jit(jax.value_and_grad(loss))(state)


@pytest.fixture(scope="module")
def g3_unrolled(g3):
    return _packed_loss_and_grads(g3[1], False, "none", "xla")


@pytest.mark.parametrize("remat,impl", [("dots", "xla"), ("none", "dpa")])
def test_gemma3_scanned_layers_equal_unrolled_loss_and_gradients(g3, g3_unrolled, remat, impl):
    """Sliding and full layers in one lax.scan (the per-layer kind a scanned flag; with "dpa" it picks
    one of two kernel calls by lax.cond), with and without remat, against the unrolled layers, on
    packed rows."""
    (l1, g1), (l2, g2) = g3_unrolled, _packed_loss_and_grads(g3[1], True, remat, impl)
    assert abs(float(l1) - float(l2)) <= 1e-6 * abs(float(l1))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 1e-5 * (np.abs(a).max() + 1e-12)


def test_gemma3_greedy_generation_equals_transformers_past_the_window(g3):
    """jaxft's KV-cache decoder (continuous batching: 2 slots for 3 prompts, chunks of 8: a freed slot
    refilled while the other decodes, the cache realigned) against transformers' generate, one prompt at a time, 24 new tokens: six times the
    Gemma 3 window."""
    from jaxft.eval.generate import DecodeSettings, generate_ids

    ref, model, _ = g3
    prompts = [list(_ids(10 + n, (n,))) for n in (3, 7, 12)]
    settings = DecodeSettings(max_new_tokens=24, batch_size=2, bucket=16, chunk=8, refill=1, shrink=False)
    got = generate_ids(model, prompts, settings, eos_ids=[2], pad_id=0)
    for p, (ids, _) in zip(prompts, got):
        with torch.no_grad():
            out = ref.generate(torch.tensor([p]), max_new_tokens=24, do_sample=False, eos_token_id=2,
                               pad_token_id=0)[0, len(p):].tolist()
        assert ids == out[:len(ids)] and (len(ids) == 24 or ids[-1] == 2)
    assert len({t for ids, _ in got for t in ids}) > 5  # decoding wanders: the comparison means something


@pytest.mark.parametrize("family", FAMILIES)
def test_merged_export_loads_in_transformers(tiny, family, tmp_path):
    """The HF directory export (config_to_hf: model_type gemma3_text / qwen3, the hub's legacy rope keys,
    layer_types) reads back in transformers as the same model: float32 logits within 1e-4."""
    from transformers import AutoModelForCausalLM

    from jaxft.peft.export import export_merged

    ref, model, _ = tiny(family)
    out = export_merged(model, None, str(tmp_path / "merged"))
    back = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(back) is type(ref)
    ids = _ids(4, (2, SEQ))
    assert np.abs(_torch(back, ids) - _torch(ref, ids)).max() <= TOL


# --- configs --------------------------------------------------------------------------------------

def test_hub_and_transformers5_config_formats_agree():
    """The hub's legacy keys (rope_theta, rope_scaling, rope_local_base_freq, sliding_window_pattern)
    and transformers 5's rope_parameters per layer type give one ModelConfig."""
    common = dict(model_type="gemma3_text", vocab_size=128, hidden_size=32, intermediate_size=64,
                  num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                  sliding_window=8, query_pre_attn_scalar=16)
    legacy = config_from_hf(dict(common, rope_theta=1e6, rope_local_base_freq=1e4, sliding_window_pattern=3,
                                 rope_scaling={"rope_type": "linear", "factor": 8.0}))
    new = config_from_hf(dict(common, layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
                              rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0,
                                                                  "rope_theta": 1e6},
                                               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}))
    assert legacy == new and new.local_layers == (True, True, False) * 2 and new.rope_scaling.factor == 8.0
    llama = dict(model_type="llama", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4)
    scaling = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    assert config_from_hf(dict(llama, rope_theta=5e5, rope_scaling=scaling)) == \
        config_from_hf(dict(llama, rope_parameters=dict(scaling, rope_theta=5e5)))


@pytest.mark.parametrize("change,match", [
    (dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "supported rope types: default, linear, llama3"),
    (dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}), "'yarn'"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "needs low_freq_factor, high_freq_factor"),
    (dict(model_type="gemma3"), "multimodal Gemma 3"),
    (dict(model_type="gemma3_text", final_logit_softcapping=30.0), "final_logit_softcapping"),
    (dict(model_type="gemma3_text", attn_logit_softcapping=50.0), "attn_logit_softcapping"),
    (dict(model_type="gemma3_text", sliding_window=None), "sliding_window"),
    (dict(model_type="qwen3", use_sliding_window=True), "use_sliding_window"),
    (dict(model_type="qwen3", layer_types=["sliding_attention", "full_attention"]), "layer_types"),
])
def test_unsupported_fields_are_named(change, match):
    d = {**dict(model_type="llama", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4), **change}
    with pytest.raises(UnsupportedConfigError, match=match):
        config_from_hf(d, "m/config.json")


# The hub config.json values the registry relies on (transcribed by hand from huggingface.co, the
# files google/gemma-3-270m, google/gemma-3-1b-pt, Qwen/Qwen3-0.6B and meta-llama/Llama-3.2-1B; the
# -it / -Instruct repos differ only in eos_token_id), and each model's published parameter count
# (the safetensors total on the hub pages: 268,098,176 / 999,885,952 / 596,049,920 / 1,235,814,400;
# Qwen3-0.6B's card: 0.44B without embeddings, here 440,466,432 + 155,582,464 + 1,024).
_G3 = dict(model_type="gemma3_text", vocab_size=262144, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
           max_position_embeddings=32768, rope_theta=1000000.0, rope_local_base_freq=10000.0, rope_scaling=None,
           rms_norm_eps=1e-06, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256,
           sliding_window=512, attention_bias=False, attn_logit_softcapping=None, final_logit_softcapping=None,
           bos_token_id=2, eos_token_id=1, pad_token_id=0)
HUB = {
    "gemma-3-270m": (dict(_G3, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                          layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3), 268_098_176),
    "gemma-3-1b-pt": (dict(_G3, hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
                           sliding_window_pattern=6), 999_885_952),
    "qwen3-0.6b": (dict(model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                        max_position_embeddings=40960, rope_theta=1000000, rope_scaling=None, rms_norm_eps=1e-06,
                        attention_bias=False, use_sliding_window=False, sliding_window=None,
                        max_window_layers=28, tie_word_embeddings=True, hidden_act="silu",
                        bos_token_id=151643, eos_token_id=151645), 596_049_920),
    "llama-3.2-1b": (dict(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                          num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                          max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-05,
                          rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                        "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                          hidden_act="silu", attention_bias=False, mlp_bias=False, tie_word_embeddings=True,
                          bos_token_id=128000, eos_token_id=128001), 1_235_814_400),
}


@pytest.mark.parametrize("name", sorted(HUB))
def test_real_size_shapes_and_parameter_counts(name):
    """Registry entries equal the hub configs; num_params (the planner's closed form) and the
    abstract model (jax.eval_shape) both give the published count; the -it twins share the shapes."""
    d, published = HUB[name]
    cfg = registry_config(name)
    assert cfg == config_from_hf(d)
    assert cfg.num_params() == count_params(abstract_model(cfg)) == published
    twin = {"gemma-3-270m": "gemma-3-270m-it", "gemma-3-1b-pt": "gemma-3-1b-it",
            "llama-3.2-1b": "llama-3.2-1b-instruct"}.get(name)
    if twin:
        assert registry_config(twin).replace(eos_token_id=cfg.eos_token_id) == cfg


def test_study_configs_and_planner_know_the_new_models():
    """configs/experiment.py:MODEL,METHOD and the new models' study grid load; the planner's plan of
    Gemma 3 270M LoRA counts the published parameters plus r=8 adapters on the seven projections."""
    from jaxft.plan import plan
    from jaxft.study import _train_config
    from jaxft.train.config import load_config_file
    from jaxft.train.memory import parse_devices

    study = load_config_file("configs/study_new_models.py")
    study.config_root = "."
    for key in study.models:
        c = _train_config(study, key, "lora")
        assert c.method == "lora" and c.model in HUB
    p = plan(load_config_file("configs/experiment.py:gemma-3-270m,lora"), parse_devices("rtx4090x1"))
    h, i, q, kv, r = 640, 2048, 4 * 256, 256, 8
    lora = 18 * r * ((h + q) * 2 + (h + kv) * 2 + (h + i) * 3)  # q, o; k, v; gate, up, down
    assert p["trainable_params"] == lora and p["params"] == 268_098_176 + lora
    assert p["fits"] and p["terms"]["peak"] < 24 * 2 ** 30


# --- the real Gemma 3 270M (Q4_K_M GGUF from the PyPI chunk packages) -------------------------------

@pytest.mark.real
@pytest.mark.slow
def test_real_gemma3_270m_gguf_matches_transformers_reading_the_same_file():
    """jaxft's GGUF loader against transformers' GGUF reader (its own name mapping, norm shift and
    gguf dequantisation) on the same file, float32, 600 tokens: past the 512-token window. Measured
    on 2026-12-03: max |logit diff| 1.4e-4 with logits up to 36, the same argmax everywhere."""
    import os

    from transformers import AutoModelForCausalLM

    from jaxft.models.gguf_loader import load_gguf
    from jaxft.models.registry import GGUF_PACKAGES, gguf_package_file

    names = [n for n, (dist, _) in GGUF_PACKAGES.items() if dist.startswith("gemma3-270m")]
    if not names:
        pytest.skip("no registry entry for the Gemma 3 270M GGUF packages")
    path = gguf_package_file(names[0])
    model = load_gguf(path, dtype=jnp.float32, param_dtype=jnp.float32)
    assert model.config == registry_config("gemma-3-270m").replace(
        norm_eps=model.config.norm_eps, eos_token_id=model.config.eos_token_id)  # eps went through float32
    ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                               dtype=torch.float32).eval()
    ids = np.asarray([[2] + list(range(1000, 1599))], np.int32)
    want = _torch(ref, ids)
    got = np.asarray(model(jnp.asarray(ids)))
    diff = float(np.abs(got - want).max())
    print(f"real gemma-3-270m: max|logit diff|={diff:.3g}, max|logit|={np.abs(want).max():.3g}")
    assert diff <= 2e-3 and (got.argmax(-1) == want.argmax(-1)).mean() >= 0.99
