"""Hessian tools against the exact Hessian of a ~900-parameter model (jax.hessian, numpy eigh).

Everything runs in float32 (x64 stays off); the exact Hessian is float32 too, so agreement is limited
by float32 HVP rounding (~1e-6 relative), well inside the 1e-3 targets.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxft.analysis import hessian as H
from jaxft.analysis.batches import random_batches
from jaxft.errors import ConfigError
from jaxft.models import ModelConfig, Transformer, flat_params, set_params
from jaxft.train.step import loss_fn

CFG = ModelConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, head_dim=4)


def tiny_model():
    model = Transformer(CFG, rngs=nnx.Rngs(0))
    # larger-than-init weights give a spread-out spectrum with separated top eigenvalues
    set_params(model, {k: (v * 15 if v.ndim == 2 else v) for k, v in flat_params(model).items()})
    return model


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    batches = random_batches(CFG.vocab_size, 4, 8, 2, seed=0)
    problem = H.hessian_problem(model, batches, "all")
    flat, unravel = ravel_pytree(problem.params)

    def batch_loss(f, b):  # independent of hessian.py: jax.hessian per batch, then the mean
        return loss_fn(unravel(f), problem.frozen, problem.graphdef, b, None)

    exact = jax.jit(jax.hessian(batch_loss))
    hess = np.mean([np.asarray(exact(flat, b), np.float64) for b in batches], axis=0)
    hess = (hess + hess.T) / 2
    eigs = np.linalg.eigvalsh(hess)[::-1]
    return dict(model=model, batches=batches, problem=problem, hess=hess, eigs=eigs, unravel=unravel)


def _flat(v):
    return np.asarray(ravel_pytree(v)[0], np.float64)


def test_hvp_matches_exact_hessian_and_compiles_once(setup):
    p, hess = setup["problem"], setup["hess"]
    assert p.num_params == hess.shape[0] == 920
    from_hvps = H.dense_hessian(p.hvp, p.params)  # all 920 HVPs of unit vectors
    np.testing.assert_allclose(from_hvps, hess, rtol=0, atol=1e-5 * np.abs(hess).max())
    assert p._hvp._cache_size() == 1


def test_lanczos_top5_matches_eigh(setup, tmp_path):
    p, exact = setup["problem"], setup["eigs"][:5]
    for where in ({}, {"basis_dir": str(tmp_path)}):  # device; host (file-backed: the same code as RAM)
        top = H.lanczos_top_k(p.hvp, p.params, k=5, m=40, **where)
        np.testing.assert_allclose(top.values, exact, rtol=1e-3)
        assert np.all(top.residuals < 1e-3 * exact[0])


def test_lanczos_ritz_vectors_are_eigenvectors(setup):
    p, hess = setup["problem"], setup["hess"]
    top = H.lanczos_top_k(p.hvp, p.params, k=2, m=40, return_vectors=True)
    for lam, vec in zip(top.values, top.vectors):
        x = _flat(vec)
        assert abs(np.linalg.norm(x) - 1) < 1e-4
        assert np.linalg.norm(hess @ x - lam * x) < 1e-3 * abs(lam)


def test_lanczos_without_reorth_dedups_ghosts(setup):
    p, exact = setup["problem"], setup["eigs"][:5]
    t = H.lanczos(p.hvp, H.tree_random(jax.random.key(0), p.params, "rademacher"), 120, reorth="none")
    raw = np.linalg.eigvalsh(t.matrix())
    assert np.sum(np.abs(raw - exact[0]) < 1e-4 * exact[0]) > 1  # ghost copies of the top eigenvalue
    top = H.lanczos_top_k(p.hvp, p.params, k=5, m=120, reorth="none")
    np.testing.assert_allclose(top.values, exact, rtol=1e-3)


def test_power_iteration_with_deflation(setup):
    p, eigs = setup["problem"], setup["eigs"]
    by_magnitude = eigs[np.argsort(-np.abs(eigs))][:3]  # power iteration finds largest |λ|
    assert by_magnitude[2] < 0  # this spectrum's third-largest |λ| is negative: deflation must reach it
    power = H.power_iteration(p.hvp, p.params, k=3, iters=600, tol=1e-6)
    np.testing.assert_allclose(power.values, by_magnitude, rtol=1e-3)
    lm = H.lanczos_top_k(p.hvp, p.params, k=3, m=40, which="LM")
    np.testing.assert_allclose(lm.values, by_magnitude, rtol=1e-3)


def test_slq_density_normalised_and_moments(setup):
    p, eigs = setup["problem"], setup["eigs"]
    probes = 10
    d = H.slq_density(p.hvp, p.params, probes=probes, m=40, seed=0)
    assert abs(np.trapezoid(d.density, d.grid) - 1) < 1e-9
    for w in d.weights:
        assert abs(w.sum() - 1) < 1e-6
    m1, m2 = np.mean(eigs), np.mean(eigs ** 2)
    # The first moment is a Hutchinson estimate of tr(H)/P: its standard error with Rademacher probes
    # is sqrt(2·Σ_{i≠j} H_ij² / probes)/P. Allow 4 standard errors; m2 to 10%.
    hess = setup["hess"]
    se = np.sqrt(2 * (np.sum(hess ** 2) - np.sum(np.diag(hess) ** 2)) / probes) / len(eigs)
    assert abs(d.moment(1) - m1) < 4 * se
    assert abs(d.moment(2) - m2) < 0.1 * m2
    # broadening by a symmetric kernel keeps the mean: the density's own mean matches too
    assert abs(np.trapezoid(d.grid * d.density, d.grid) - d.moment(1)) < 1e-3 * np.sqrt(m2)


def test_broaden_unnormalised_mass_is_one():
    grid, dens, sigma = H.broaden([np.array([0.0, 1.0])], [np.array([0.25, 0.75])], sigma=0.05)
    assert sigma == 0.05 and abs(np.trapezoid(dens, grid) - 1) < 1e-9
    assert abs(np.trapezoid(grid * dens, grid) - 0.75) < 1e-6


def test_regex_subset_block_and_hutchinson_trace(setup):
    """lm_head only: the loss is convex in it (PSD block), so Hutchinson's relative error is small."""
    hess, unravel, p_all = setup["hess"], setup["unravel"], setup["problem"]
    sub = H.hessian_problem(setup["model"], setup["batches"], r"^lm_head\.")
    assert sub.names() == ["lm_head.weight"] and sub.num_params == 128
    mask = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.full_like(x, "lm_head" in jax.tree_util.keystr(path)), p_all.params)
    idx = _flat(mask) > 0
    block = hess[np.ix_(idx, idx)]
    v = H.tree_random(jax.random.key(1), sub.params, "rademacher")
    np.testing.assert_allclose(_flat(sub.hvp(v)), block @ _flat(v), atol=1e-4 * np.abs(block).max())
    exact = np.trace(block)
    est = H.hutchinson_trace(sub.hvp, sub.params, probes=100, seed=0)
    assert abs(est.mean - exact) < 0.05 * exact
    assert est.stderr < 0.03 * exact


def test_subset_selection_and_errors():
    from jaxft.peft import apply_peft

    model = tiny_model()
    batches = random_batches(CFG.vocab_size, 2, 4, 1)
    layer = H.hessian_problem(model, batches, r"layers\.0\.mlp\.")
    assert all(re.search(r"layers\.0\.mlp\.", n) for n in layer.names()) and len(layer.names()) == 3
    apply_peft(model, "lora", r=2, alpha=4)
    adapters = H.hessian_problem(model, batches, "adapters")
    assert adapters.names() and all(n.endswith(("lora_A", "lora_B")) for n in adapters.names())
    assert adapters.num_params == 2 * (4 * (8 + 8) + 3 * (8 + 16))  # r·(in + out) per projection
    with pytest.raises(ConfigError, match="selects no parameter"):
        H.hessian_problem(model, batches, "nothing_matches_this")
    with pytest.raises(ConfigError, match="valid regex"):
        H.hessian_problem(model, batches, "(")
    with pytest.raises(ConfigError, match="one shape"):
        H.hessian_problem(model, batches + random_batches(CFG.vocab_size, 3, 4, 1), "all")
