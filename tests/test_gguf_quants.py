"""jaxft's GGUF dequantisation (jaxft/models/gguf_quants.py) against gguf's own
(`gguf.quants.dequantize`, the reference): synthetic blocks of every type jaxft reads (random
bytes, finite scales), the real tensors of both packaged files (`real`), and the loader's refusal
of a type it cannot read. Tolerance 0: the same float32 operations in ggml's order give the same
numbers (measured: max |diff| 0 on every tensor of both files).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T, GGUFReader
from gguf.quants import dequantize as reference

from jaxft.errors import WeightLoadError
from jaxft.models.gguf_quants import SUPPORTED_TYPES, dequantize

# byte offsets of the half-float scales (d, and m/dmin where there is one) in one block, from
# ggml's block structs (ggml-common.h); the rest of a block is random bits
HALF_FIELDS = {T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,), T.Q2_K: (80, 82),
               T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}
FLOATS = {T.F32: np.float32, T.F16: np.float16}


def _blocks(qtype: T, n: int, rng) -> np.ndarray:
    """n blocks of random bits as uint8 [n, bytes per block], scales finite."""
    if qtype in FLOATS:
        return rng.normal(size=(n, 1)).astype(FLOATS[qtype]).view(np.uint8)
    if qtype == T.BF16:
        return (rng.normal(size=(n, 1)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    size = GGML_QUANT_SIZES[qtype][1]
    b = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for off in HALF_FIELDS[qtype]:
        b[:, off:off + 2] = rng.normal(scale=0.05, size=(n, 1)).astype(np.float16).view(np.uint8)
    return b


def test_supported_types_are_all_checked_here():
    assert set(SUPPORTED_TYPES) == {t.name for t in (*HALF_FIELDS, *FLOATS, T.BF16)}


@pytest.mark.parametrize("name", SUPPORTED_TYPES)
def test_synthetic_blocks_equal_gguf(name):
    qtype = T[name]
    rng = np.random.default_rng(int(qtype))
    block_elems = GGML_QUANT_SIZES[qtype][0]
    rows = 8 if block_elems == 1 else 6
    data = _blocks(qtype, rows * (512 // block_elems), rng).reshape(rows, -1)  # 512 values a row, as a reader gives
    want = np.asarray(reference(data, qtype), np.float32).reshape(-1)
    got = dequantize(data, qtype, where="t")
    assert got.dtype == np.float32 and got.shape == want.shape == (rows * 512,)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).all() and np.abs(got).max() > 0


def test_unreadable_type_is_named_with_the_tensor_and_the_supported_types():
    data = np.zeros((4, GGML_QUANT_SIZES[T.IQ4_NL][1]), np.uint8)
    with pytest.raises(WeightLoadError, match=r"m\.gguf: tensor 'blk\.0\.attn_q\.weight' has GGML type IQ4_NL, which "
                                              r"jaxft cannot dequantise; supported: F32, F16, BF16, Q4_0, .*Q6_K"):
        dequantize(data, T.IQ4_NL, where="m.gguf: tensor 'blk.0.attn_q.weight'")
    with pytest.raises(WeightLoadError, match=r"t: 35 bytes are not whole Q8_0 blocks of 34 bytes"):
        dequantize(np.zeros(35, np.uint8), T.Q8_0, where="t")


def test_loader_names_the_tensor_it_cannot_dequantise(tmp_path):
    """A tiny llama file whose q projection is IQ4_NL: load_gguf refuses it naming file, tensor, type."""
    import gguf
    import jax.numpy as jnp

    from jaxft.models.gguf_loader import load_gguf

    hidden, ffn, vocab = 32, 64, 16
    path = tmp_path / "iq.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_block_count(1)
    w.add_feed_forward_length(ffn)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,),
              "blk.0.attn_norm.weight": (hidden,), "blk.0.ffn_norm.weight": (hidden,),
              "blk.0.attn_k.weight": (hidden, hidden), "blk.0.attn_v.weight": (hidden, hidden),
              "blk.0.attn_output.weight": (hidden, hidden), "blk.0.ffn_gate.weight": (ffn, hidden),
              "blk.0.ffn_up.weight": (ffn, hidden), "blk.0.ffn_down.weight": (hidden, ffn)}
    for name, shape in shapes.items():
        w.add_tensor(name, rng.normal(size=shape).astype(np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((hidden, hidden // 32 * GGML_QUANT_SIZES[T.IQ4_NL][1]), np.uint8),
                 raw_dtype=T.IQ4_NL)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(WeightLoadError, match=r"iq\.gguf: tensor 'blk\.0\.attn_q\.weight' has GGML type IQ4_NL.*"
                                              r"supported: F32, F16"):
        load_gguf(str(path), dtype=jnp.float32, param_dtype=jnp.float32)


@pytest.fixture(scope="module")
def gemma3_reader(gemma3_gguf_path):
    return GGUFReader(gemma3_gguf_path)


@pytest.mark.real
@pytest.mark.slow
def test_real_gemma3_file_types_and_tensors_equal_gguf(gemma3_reader):
    """Every type of the Gemma 3 270M Q4_K_M file: its smallest tensor of each type and the first
    16,384 rows of the Q8_0 token embedding (262,144 x 640), against gguf's decoder."""
    import time

    tensors = gemma3_reader.tensors
    assert {t.tensor_type.name for t in tensors} == {"F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"}
    picked = {}
    for t in sorted(tensors, key=lambda t: t.n_elements):
        picked.setdefault(t.tensor_type.name, t)
    embedding = next(t for t in tensors if t.name == "token_embd.weight")
    for t in [*picked.values(), embedding]:
        data = t.data if t is not embedding else t.data[:16384]
        t0 = time.perf_counter()
        got = dequantize(data, t.tensor_type, where=t.name)
        seconds = time.perf_counter() - t0
        want = np.asarray(reference(data, t.tensor_type), np.float32).reshape(-1)
        print(f"{t.name} {t.tensor_type.name} {got.size} values: max|diff| {float(np.abs(got - want).max())}, "
              f"jaxft {seconds:.3f} s")
        np.testing.assert_array_equal(got, want)


@pytest.mark.real
def test_real_smollm2_q4_1_tensors_equal_gguf(real_gguf_path):
    reader = GGUFReader(real_gguf_path)
    picked = {}
    for t in reader.tensors:
        picked.setdefault(t.tensor_type.name, t)
    assert set(picked) == {"F32", "Q4_1", "Q8_0"}
    for t in picked.values():
        np.testing.assert_array_equal(dequantize(t.data, t.tensor_type, where=t.name),
                                      np.asarray(reference(t.data, t.tensor_type), np.float32).reshape(-1))
