"""llama.cpp's tensor types -> float32, vectorised numpy from ggml's block layouts.

jaxft reads the quantised types real GGUF files carry (the legacy 32-element blocks Q4_0 .. Q8_0
and the 256-element K-quants Q2_K .. Q6_K) and F32, F16, BF16. Each block is decoded with the
float32 operations in ggml's own order (`d * scale` first, then `* q`, then `- min`), so the result
is the same float32 llama.cpp and gguf's reference decoder compute. Anything else (the IQ*, TQ* and
FP4 types; Q8_K, which only llama.cpp's matmuls use) is refused by name rather than guessed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from gguf import GGMLQuantizationType as T

from jaxft.errors import WeightLoadError

QK_K = 256  # elements per K-quant super-block


def _f16(b: np.ndarray) -> np.ndarray:
    """[n, 2] little-endian half floats -> [n, 1] float32."""
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[n, 16] bytes -> [n, 32]: the low nibbles are elements 0..15, the high ones 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    """[n, 4] bytes of one little-endian uint32 -> [n, 32]: bit j is element j's fifth bit."""
    word = np.ascontiguousarray(qh).view("<u4")
    return ((word >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)


def _affine(q: np.ndarray, d: np.ndarray, m: np.ndarray | None = None, sign: int = 1) -> np.ndarray:
    """float32 q * d, then + m (sign 1) or - m (sign -1), into one new array: the integer q is
    converted inside the ufunc, so no float copy of it is made (the token embedding of a 256k
    vocabulary is 10x faster this way)."""
    out = np.multiply(q, d, out=np.empty(np.broadcast_shapes(q.shape, d.shape), np.float32), dtype=np.float32)
    if m is not None:
        (np.add if sign > 0 else np.subtract)(out, m, out=out)
    return out


def _q4_0(b):  # d, 16 bytes of nibbles: (q - 8) * d
    return _affine(_nibbles(b[:, 2:18]).astype(np.int8) - 8, _f16(b[:, 0:2]))


def _q4_1(b):  # d, m, nibbles: q * d + m
    return _affine(_nibbles(b[:, 4:20]), _f16(b[:, 0:2]), _f16(b[:, 2:4]))


def _q5_0(b):  # d, 32 high bits, nibbles: (q - 16) * d
    q = _nibbles(b[:, 6:22]) | (_high_bits(b[:, 2:6]) << 4)
    return _affine(q.astype(np.int8) - 16, _f16(b[:, 0:2]))


def _q5_1(b):  # d, m, 32 high bits, nibbles: q * d + m
    q = _nibbles(b[:, 8:24]) | (_high_bits(b[:, 4:8]) << 4)
    return _affine(q, _f16(b[:, 0:2]), _f16(b[:, 2:4]))


def _q8_0(b):  # d, 32 int8
    return _affine(b[:, 2:34].view(np.int8), _f16(b[:, 0:2]))


def _k_scales_mins(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K's 12 bytes -> eight 6-bit scales and eight 6-bit mins, as float32 [n, 8].
    Sub-blocks 0-3 take the low six bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7
    take a nibble of bytes 8-11 plus the top two bits of bytes 0-3 (scales) and 4-7 (mins)."""
    lo_sc, lo_m, packed = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([lo_sc & 0x3F, (packed & 0x0F) | ((lo_sc >> 6) << 4)], axis=1)
    mn = np.concatenate([lo_m & 0x3F, (packed >> 4) | ((lo_m >> 6) << 4)], axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _q2_k(b):
    """16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit values, d, dmin.
    Element (half h, shift j, l) is bits 2j of qs[32h + l], in sub-block 8h + 2j + l // 16."""
    n = b.shape[0]
    sc = b[:, 0:16]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    q = (b[:, 16:80].reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
    dl = (d * (sc & 0x0F).astype(np.float32)).reshape(n, 2, 4, 2, 1)
    ml = (dmin * (sc >> 4).astype(np.float32)).reshape(n, 2, 4, 2, 1)
    return _affine(q.reshape(n, 2, 4, 2, 16), dl, ml, -1).reshape(n, QK_K)


def _q3_k(b):
    """32 bytes of high-bit masks, 64 bytes of 2-bit values, 12 bytes of 6-bit signed scales, d.
    Element (half h, shift j, l): low bits 2j of qs[32h + l], minus 4 unless bit 4h + j of
    hmask[l] is set; scale i has a nibble of byte i % 8 and two bits of byte 8 + i % 4."""
    n = b.shape[0]
    hmask, qs, s = b[:, 0:32], b[:, 32:96], b[:, 96:108]
    d = _f16(b[:, 108:110])
    i = np.arange(16)
    low = (s[:, i % 8] >> (4 * (i // 8)).astype(np.uint8)) & 0x0F
    high = (s[:, 8 + i % 4] >> (2 * (i // 4)).astype(np.uint8)) & 0x03
    scale = (low | (high << 4)).astype(np.int8) - 32
    lo = (qs.reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
    hi = (hmask.reshape(n, 1, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 2, 4, 1)) & 1
    q = lo.astype(np.int8) - np.where(hi == 1, 0, 4).astype(np.int8)
    dl = (d * scale.astype(np.float32)).reshape(n, 2, 4, 2, 1)
    return _affine(q.reshape(n, 2, 4, 2, 16), dl).reshape(n, QK_K)


def _q4_k(b):
    """d, dmin, 12 scale bytes, 128 bytes of nibbles: sub-block 2p takes the low nibbles of bytes
    32p..32p+31, sub-block 2p + 1 their high nibbles; y = (d * scale) * q - dmin * min."""
    n = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k_scales_mins(b[:, 4:16])
    q = (b[:, 16:144].reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 0x0F
    return _affine(q.reshape(n, 8, 32), (d * sc)[:, :, None], (dmin * mn)[:, :, None], -1).reshape(n, QK_K)


def _q5_k(b):
    """Q4_K plus 32 bytes of fifth bits: bit g of qh[l] belongs to sub-block g."""
    n = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k_scales_mins(b[:, 4:16])
    lo = (b[:, 48:176].reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 0x0F
    hi = (b[:, 16:48].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
    q = lo.reshape(n, 8, 32) | (hi << 4)
    return _affine(q, (d * sc)[:, :, None], (dmin * mn)[:, :, None], -1).reshape(n, QK_K)


def _q6_k(b):
    """128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, d. Element (half h,
    quarter k, l): nibble k // 2 of ql[64h + 32(k % 2) + l], bits 2k of qh[32h + l], minus 32,
    scale 8h + 2k + l // 16."""
    n = b.shape[0]
    scales = b[:, 192:208].view(np.int8).astype(np.float32)
    d = _f16(b[:, 208:210])
    lo = (b[:, 0:128].reshape(n, 2, 1, 64) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 0x0F
    hi = (b[:, 128:192].reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
    q = (lo.reshape(n, 2, 4, 32) | (hi << 4)).astype(np.int8) - 32
    dl = (d * scales).reshape(n, 2, 4, 2, 1)
    return _affine(q.reshape(n, 2, 4, 2, 16), dl).reshape(n, QK_K)


def _bf16(b):
    return (np.ascontiguousarray(b).view("<u2").astype(np.uint32) << 16).view(np.float32)


# type -> (elements per block, bytes per block, decoder of [n_blocks, bytes] uint8 -> [n_blocks, elements])
_DECODERS: dict[T, tuple[int, int, Callable[[np.ndarray], np.ndarray]]] = {
    T.F32: (1, 4, lambda b: np.ascontiguousarray(b).view("<f4").astype(np.float32)),
    T.F16: (1, 2, lambda b: np.ascontiguousarray(b).view("<f2").astype(np.float32)),
    T.BF16: (1, 2, _bf16),
    T.Q4_0: (32, 18, _q4_0),
    T.Q4_1: (32, 20, _q4_1),
    T.Q5_0: (32, 22, _q5_0),
    T.Q5_1: (32, 24, _q5_1),
    T.Q8_0: (32, 34, _q8_0),
    T.Q2_K: (QK_K, 84, _q2_k),
    T.Q3_K: (QK_K, 110, _q3_k),
    T.Q4_K: (QK_K, 144, _q4_k),
    T.Q5_K: (QK_K, 176, _q5_k),
    T.Q6_K: (QK_K, 210, _q6_k),
}
SUPPORTED_TYPES = tuple(t.name for t in _DECODERS)


def type_name(qtype) -> str:
    try:
        return T(int(qtype)).name
    except ValueError:
        return f"type id {int(qtype)}"


def dequantize(data: np.ndarray, qtype, *, where: str = "tensor") -> np.ndarray:
    """The float32 values of one tensor's raw data (as GGUFReader gives it: any dtype, any shape,
    the bytes in file order), flat; the caller reshapes. `where` names the tensor in errors."""
    try:
        block, size, decode = _DECODERS[T(int(qtype))]
    except (KeyError, ValueError):
        raise WeightLoadError(f"{where} has GGML type {type_name(qtype)}, which jaxft cannot dequantise; "
                              f"supported: {', '.join(SUPPORTED_TYPES)}") from None
    raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if raw.size % size:
        raise WeightLoadError(f"{where}: {raw.size} bytes are not whole {type_name(qtype)} blocks of {size} bytes")
    return decode(raw.reshape(-1, size)).reshape(-1)
