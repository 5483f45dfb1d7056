"""Loss-Hessian spectra in tree mode: HVPs, Lanczos, power iteration, SLQ density, Hutchinson trace.

A vector is a pytree shaped like the analysed parameters (an `nnx.State`), so on a mesh it carries
the parameters' sharding; `tree_dot`/`tree_axpy`/`tree_scale` are all the linear algebra done on it.
The Hessian is that of the mean training loss (`jaxft.train.step.loss_fn`, dropout off) over a fixed
list of equally shaped batches, with respect to a chosen subset of the parameters. It is the loss the
model computes: DoRA layers differentiate their norm ||W + sBA|| here (`detach_norm` off), while
training detaches it as PEFT does; through the detached graph forward-mode tangents stop too, and the
HVP would be that of a surrogate whose norm is frozen at the evaluation point. All other
parameters and the batches are constants of the differentiation (passed to the jitted HVP as
arguments rather than captured, so XLA does not bake them into the program).

Memory bound. One vector of P float32 numbers takes 4·P bytes. An HVP (forward-over-reverse) needs
the parameters, about three vectors and roughly twice the activations of one gradient of one batch
(batches are accumulated one after another, so their number does not matter: split a large batch
into micro-batches of equal token count to bound activation memory without changing H). Lanczos with full
reorthogonalisation keeps all m basis vectors: m·P·4 bytes — SmolLM2-135M (P = 134.5M) with m = 30
needs 16 GB beside the model. Hence `basis_on_host=True`, which keeps the basis in host RAM (numpy,
same m·P·4 bytes) and moves one vector per step between host and device; `basis_dir=DIR`, which
memory-maps it to a temporary file when host RAM is short too (the page cache keeps what fits);
and `reorth="none"`,
which keeps 3 vectors (12·P bytes) and removes the duplicate ("ghost") Ritz values that loss of
orthogonality produces. SLQ holds one probe's basis at a time; power iteration holds k deflation
vectors plus two. Hutchinson holds two.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tempfile
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxft.errors import ConfigError
from jaxft.models.params import path_name
from jaxft.peft.adapters import DoRALinear
from jaxft.train.step import loss_fn

Vector = Any  # a pytree shaped like the analysed parameters
MatVec = Callable[[Vector], Vector]
_HI = jax.lax.Precision.HIGHEST  # TPUs would otherwise do float32 dots in bf16 passes


# ---------------------------------------------------------------------------------------------
# Tree linear algebra
# ---------------------------------------------------------------------------------------------

@jax.jit
def tree_dot(a: Vector, b: Vector) -> jax.Array:
    """Sum of leaf dot products, accumulated in float32 whatever the parameter dtype."""
    parts = [jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32), precision=_HI)
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    return sum(parts, jnp.zeros((), jnp.float32))


@jax.jit
def tree_axpy(alpha: jax.Array, x: Vector, y: Vector) -> Vector:
    return jax.tree.map(lambda u, v: (alpha * u + v).astype(v.dtype), x, y)


@jax.jit
def tree_scale(alpha: jax.Array, x: Vector) -> Vector:
    return jax.tree.map(lambda u: (alpha * u).astype(u.dtype), x)


def tree_norm(x: Vector) -> float:
    return float(jnp.sqrt(tree_dot(x, x)))


def tree_size(x: Vector) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(x)))


@functools.partial(jax.jit, static_argnames=("shape", "dtype", "dist"))
def _draw(key: jax.Array, shape: tuple, dtype: Any, dist: str) -> jax.Array:
    draw = jax.random.rademacher if dist == "rademacher" else jax.random.normal
    return draw(key, shape, jnp.float32).astype(dtype)


def tree_random(key: jax.Array, like: Vector, dist: str = "rademacher") -> Vector:
    """Rademacher (±1) or standard Gaussian entries, independent per leaf, placed like `like`.

    Drawn leaf by leaf: XLA compiles one sampler per distinct leaf shape, where a single jit over
    a few hundred leaves costs minutes of CPU compile time.
    """
    if dist not in ("rademacher", "gaussian"):
        raise ConfigError(f"probe distribution {dist!r} is not supported; allowed: 'rademacher', 'gaussian'")
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    out = [jax.device_put(_draw(k, tuple(x.shape), jnp.dtype(x.dtype), dist), getattr(x, "sharding", None))
           for k, x in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, out)


# ---------------------------------------------------------------------------------------------
# The Hessian of the training loss
# ---------------------------------------------------------------------------------------------

def param_filter(subset: str) -> Any:
    """'all' (every Param, adapters included), 'adapters' (LoRA/DoRA only) or a regex searched in HF names."""
    if subset == "all":
        return nnx.Param
    if subset == "adapters":
        return nnx.LoRAParam
    try:
        pattern = re.compile(subset)
    except re.error as e:
        raise ConfigError(f"parameter subset {subset!r} is neither 'all', 'adapters' nor a valid regex: {e}") from e
    return lambda path, x: isinstance(x, nnx.Param) and pattern.search(path_name(path)) is not None


@jax.jit
def _zeros_like(v: Vector) -> Vector:
    return jax.tree.map(jnp.zeros_like, v)


def check_batches(batches: Sequence[dict]) -> list[dict]:
    """Device copies of the batches; all must share keys and shapes so one compiled HVP serves all."""
    if not batches:
        raise ConfigError("the Hessian needs at least one batch")
    keys = set(batches[0])
    for i, b in enumerate(batches):
        if set(b) != keys:
            raise ConfigError(f"batch {i} has keys {sorted(b)}, batch 0 has {sorted(keys)}")
        for k in keys:
            if np.shape(b[k]) != np.shape(batches[0][k]):
                raise ConfigError(f"batch {i} field {k!r} has shape {np.shape(b[k])}, batch 0 has "
                                  f"{np.shape(batches[0][k])}; all batches must have one shape")
    return [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]


@dataclasses.dataclass
class HessianProblem:
    """H = ∇² mean_b loss(params; batch_b) at `params`.

    One jitted function per quantity takes a single batch (and accumulates into a donated running
    sum), so it compiles once, is reused for every batch and every call, and only one batch's
    activations are live at a time. (A lax.scan over stacked batches compiles markedly slower.)
    """

    graphdef: Any
    params: Vector  # the analysed subset at the evaluation point
    frozen: Any  # everything else (constants)
    batches: list[dict]
    subset: str

    def __post_init__(self):
        graphdef = self.graphdef

        def loss_one(params, frozen, batch):
            return loss_fn(params, frozen, graphdef, batch, None)

        def add(acc, weight, x):
            return jax.tree.map(lambda a, y: a + (weight * y).astype(a.dtype), acc, x)

        def loss(params, frozen, batch, acc, weight):
            return add(acc, weight, loss_one(params, frozen, batch))

        def grad(params, frozen, batch, acc, weight):
            return add(acc, weight, jax.grad(loss_one)(params, frozen, batch))

        def hvp(params, frozen, batch, v, acc, weight):
            hv = jax.jvp(lambda q: jax.grad(loss_one)(q, frozen, batch), (params,), (v,))[1]
            return add(acc, weight, hv)

        self._loss = jax.jit(loss, donate_argnums=3)
        self._grad = jax.jit(grad, donate_argnums=3)
        self._hvp = jax.jit(hvp, donate_argnums=4)
        self._loss_one = loss_one

    def _mean(self, fn, zero, *args):
        acc, weight = zero, jnp.float32(1.0 / len(self.batches))
        for batch in self.batches:
            acc = fn(self.params, self.frozen, batch, *args, acc, weight)
        return acc

    def loss_fn(self, params: Vector) -> jax.Array:
        """The analysed loss as a plain differentiable function of the subset (for exact references)."""
        return sum(self._loss_one(params, self.frozen, b) for b in self.batches) / len(self.batches)

    @property
    def num_params(self) -> int:
        return tree_size(self.params)

    def names(self) -> list[str]:
        return sorted(path_name(k) for k, _ in nnx.to_flat_state(self.params))

    def hvp(self, v: Vector) -> Vector:
        return self._mean(self._hvp, _zeros_like(v), v)

    def grad(self) -> Vector:
        return self._mean(self._grad, _zeros_like(self.params))

    def loss(self) -> float:
        return float(self._mean(self._loss, jnp.zeros((), jnp.float32)))


def with_true_loss(model: Any) -> Any:
    """A view of `model` (sharing its arrays; `model` is left as it is) whose DoRA norms are differentiated."""
    view = nnx.merge(*nnx.split(model))
    for _, module in nnx.iter_modules(view):
        if isinstance(module, DoRALinear):
            module.detach_norm = False
    return view


def hessian_problem(model: Any, batches: Sequence[dict], subset: str = "all") -> HessianProblem:
    """Split `model` into (analysed subset, constants) and bind the batches; the loss is the model's
    true loss (`with_true_loss`).

    batches: dicts with input_ids, targets, loss_mask (and optionally attention_mask), all the same
    shapes, as `jaxft.train.step.loss_fn` reads them.
    """
    graphdef, params, frozen = nnx.split(with_true_loss(model), param_filter(subset), ...)
    if not jax.tree.leaves(params):
        raise ConfigError(f"parameter subset {subset!r} selects no parameter of the model")
    return HessianProblem(graphdef, params, frozen, check_batches(batches), subset)


def dense_hessian(matvec: MatVec, like: Vector, max_size: int = 5000) -> np.ndarray:
    """The P x P matrix, one HVP per column (float64, symmetrised): a reference for small subsets."""
    flat, unravel = ravel_pytree(like)
    size = flat.shape[0]
    if size > max_size:
        raise ConfigError(f"dense_hessian: {size} parameters would need a {size}x{size} matrix; "
                          f"select a smaller subset (max_size={max_size})")
    unravel, ravel = jax.jit(unravel), jax.jit(lambda v: ravel_pytree(v)[0])
    eye = jnp.eye(size, dtype=flat.dtype)
    cols = [np.asarray(ravel(matvec(unravel(eye[i]))), np.float64) for i in range(size)]
    h = np.stack(cols, axis=1)
    return (h + h.T) / 2


# ---------------------------------------------------------------------------------------------
# Lanczos
# ---------------------------------------------------------------------------------------------


class _DeviceBasis:
    """Basis vectors stacked per leaf into [m, ...] device arrays (each slice sharded like its parameter).

    Preallocated. Gram–Schmidt runs leaf by leaf through small jitted kernels that XLA compiles once
    per distinct leaf shape (a single jit over all leaves compiles for minutes on CPU for a real model).
    """

    def __init__(self, like: Vector, m: int):
        self.leaves = [jnp.zeros((m,) + x.shape, x.dtype) for x in jax.tree.leaves(like)]
        self.treedef = jax.tree.structure(like)
        self.n = 0

    def append(self, v: Vector) -> None:
        self.leaves = [_set_row(s, self.n, x) for s, x in zip(self.leaves, jax.tree.leaves(v))]
        self.n += 1

    def orthogonalize(self, w: Vector) -> Vector:
        xs = jax.tree.leaves(w)
        mask = (np.arange(self.leaves[0].shape[0]) < self.n).astype(np.float32)
        for _ in range(2):  # classical Gram–Schmidt twice ("twice is enough")
            c = sum(_leaf_coefs(s, x) for s, x in zip(self.leaves, xs)) * mask
            xs = [_leaf_subtract(s, c, x) for s, x in zip(self.leaves, xs)]
        return jax.tree.unflatten(self.treedef, xs)

    def combine(self, coefs: np.ndarray) -> Vector:
        full = np.zeros(self.leaves[0].shape[0], np.float32)
        full[: len(coefs)] = coefs
        zeros = [jnp.zeros(s.shape[1:], s.dtype) for s in self.leaves]
        return jax.tree.unflatten(self.treedef, [_leaf_subtract(s, -full, z) for s, z in zip(self.leaves, zeros)])


@functools.partial(jax.jit, donate_argnums=0)
def _set_row(stack: jax.Array, j: int, x: jax.Array) -> jax.Array:
    return stack.at[j].set(x.astype(stack.dtype))


@jax.jit
def _leaf_coefs(stack: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.einsum("m...,...->m", stack.astype(jnp.float32), x.astype(jnp.float32), precision=_HI)


@jax.jit
def _leaf_subtract(stack: jax.Array, c: jax.Array, x: jax.Array) -> jax.Array:
    """x - Σ_i c_i stack_i."""
    proj = jnp.einsum("m,m...->...", c, stack.astype(jnp.float32), precision=_HI)
    return (x.astype(jnp.float32) - proj).astype(x.dtype)


class _HostBasis:
    """Basis vectors ravelled into rows of a host (numpy) matrix: m·P·4 bytes of RAM, not device memory.

    Preallocated (pages are only touched when a row is written). Leaves are copied to and from
    their slice of a row one by one, so nothing of size P is built on the device and nothing is
    compiled; Gram–Schmidt runs as two BLAS matrix-vector products over the filled rows.
    """

    def __init__(self, like: Vector, m: int, directory: str | None = None):
        leaves, self.treedef = jax.tree.flatten(like)
        self.shapes = [(tuple(x.shape), x.dtype, getattr(x, "sharding", None)) for x in leaves]
        sizes = [int(np.prod(x.shape)) for x in leaves]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        shape = (m, int(self.offsets[-1]))
        if directory is None:
            self.rows = np.empty(shape, np.float32)
        else:  # file-backed: the page cache holds what fits, the OS evicts the rest
            self._file = tempfile.TemporaryFile(dir=directory)
            self.rows = np.memmap(self._file, np.float32, "w+", shape=shape)
        self.n = 0

    def _ravel_into(self, v: Vector, out: np.ndarray) -> np.ndarray:
        for i, x in enumerate(jax.tree.leaves(v)):
            out[self.offsets[i]: self.offsets[i + 1]] = np.asarray(x, np.float32).reshape(-1)
        return out

    def _unravel(self, x: np.ndarray) -> Vector:
        leaves = [jax.device_put(x[self.offsets[i]: self.offsets[i + 1]].reshape(shape).astype(dtype), sharding)
                  for i, (shape, dtype, sharding) in enumerate(self.shapes)]
        return jax.tree.unflatten(self.treedef, leaves)

    def append(self, v: Vector) -> None:
        self._ravel_into(v, self.rows[self.n])
        self.n += 1

    def orthogonalize(self, w: Vector) -> Vector:
        x = self._ravel_into(w, np.empty(self.rows.shape[1], np.float32))
        basis = self.rows[: self.n]
        for _ in range(2):
            x -= (basis @ x) @ basis
        return self._unravel(x)

    def combine(self, coefs: np.ndarray) -> Vector:
        return self._unravel(np.asarray(coefs, np.float32) @ self.rows[: len(coefs)])


@dataclasses.dataclass
class Tridiagonal:
    """The Lanczos tridiagonal T (alphas on the diagonal, betas off it) and, if kept, its basis."""

    alphas: np.ndarray
    betas: np.ndarray
    basis: Any = None  # _DeviceBasis | _HostBasis | None
    residual_beta: float = 0.0  # ||r_m||: how far the Krylov space is from invariant

    def matrix(self) -> np.ndarray:
        m = len(self.alphas)
        t = np.diag(self.alphas.astype(np.float64))
        if m > 1:
            t += np.diag(self.betas[: m - 1], 1) + np.diag(self.betas[: m - 1], -1)
        return t

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """(Ritz values ascending, eigenvectors of T as columns), in float64."""
        return np.linalg.eigh(self.matrix())


def lanczos(matvec: MatVec, v0: Vector, m: int, *, reorth: str = "full", basis_on_host: bool = False,
            basis_dir: str | None = None, keep_basis: bool = False) -> Tridiagonal:
    """m steps of Lanczos from v0 (normalised here); stops early on an invariant subspace.

    reorth="full" orthogonalises each new vector against the whole basis (kept on device, or in host
    RAM with `basis_on_host`, or in a memory-mapped temporary file in `basis_dir`); reorth="none"
    keeps only the three-term recurrence (3 vectors of memory).
    """
    if reorth not in ("full", "none"):
        raise ConfigError(f"reorth={reorth!r}; allowed: 'full', 'none'")
    if m < 1:
        raise ConfigError(f"Lanczos needs m >= 1 steps, got {m}")
    m = min(m, tree_size(v0))
    basis = None
    if reorth == "full" or keep_basis:
        basis = _HostBasis(v0, m, basis_dir) if basis_on_host or basis_dir else _DeviceBasis(v0, m)
    v = tree_scale(1.0 / jnp.sqrt(tree_dot(v0, v0)), v0)
    alphas, betas = [], []
    v_prev = None
    for j in range(m):
        if basis is not None:
            basis.append(v)
        w = matvec(v)
        if v_prev is not None:
            w = tree_axpy(jnp.float32(-betas[-1]), v_prev, w)
        alpha = float(tree_dot(w, v))
        alphas.append(alpha)
        w = tree_axpy(jnp.float32(-alpha), v, w)
        if reorth == "full":
            w = basis.orthogonalize(w)
        beta = tree_norm(w)
        betas.append(beta)  # the last one is the residual norm β_m, not part of T
        scale = max(abs(a) for a in alphas) + max(betas)
        if j == m - 1 or beta <= 1e-6 * max(scale, 1e-30):  # done, or an invariant subspace
            break
        v_prev, v = v, tree_scale(jnp.float32(1.0 / beta), w)
    return Tridiagonal(np.asarray(alphas, np.float64), np.asarray(betas[:-1], np.float64),
                       basis if keep_basis or reorth == "full" else None, float(betas[-1]))


def distinct_ritz_values(t: Tridiagonal, rel_tol: float = 1e-5) -> np.ndarray:
    """Ritz values of T without ghosts (for Lanczos without reorthogonalisation), descending.

    Loss of orthogonality makes converged eigenvalues reappear as near-copies; copies within
    rel_tol·max|θ| are merged. A single (unrepeated) Ritz value that is also an eigenvalue of T with
    its first row and column deleted is spurious (Cullum & Willoughby) and is dropped.
    """
    theta = np.linalg.eigvalsh(t.matrix())
    tol = rel_tol * max(np.max(np.abs(theta)), 1e-30)
    hat = np.linalg.eigvalsh(t.matrix()[1:, 1:]) if len(theta) > 1 else np.array([])
    groups: list[list[float]] = []
    for x in np.sort(theta):
        if groups and x - groups[-1][-1] <= tol:
            groups[-1].append(x)
        else:
            groups.append([x])
    keep = []
    for g in groups:
        value = float(np.mean(g))
        if len(g) == 1 and hat.size and np.min(np.abs(hat - value)) <= tol:
            continue
        keep.append(value)
    return np.sort(np.asarray(keep))[::-1]


@dataclasses.dataclass
class Eigs:
    """Eigenvalue estimates in the requested order, with residual bounds where the method gives them."""

    values: np.ndarray
    vectors: list | None = None
    residuals: np.ndarray | None = None
    matvecs: int = 0


def _order(values: np.ndarray, which: str) -> np.ndarray:
    if which == "LA":
        return np.argsort(-values, kind="stable")
    if which == "SA":
        return np.argsort(values, kind="stable")
    if which == "LM":
        return np.argsort(-np.abs(values), kind="stable")
    raise ConfigError(f"which={which!r}; allowed: 'LA' (largest), 'SA' (smallest), 'LM' (largest magnitude)")


def lanczos_top_k(matvec: MatVec, like: Vector, k: int = 5, m: int | None = None, *, seed: int = 0,
                  reorth: str = "full", basis_on_host: bool = False, basis_dir: str | None = None,
                  which: str = "LA", return_vectors: bool = False) -> Eigs:
    """The k extreme eigenvalues (default: largest algebraic) from m Lanczos steps (default max(3k, 30)).

    Residuals are the usual bound |β_m · s_{m,i}|: ||H y_i - θ_i y_i|| for the unit Ritz vector y_i.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if return_vectors and reorth != "full":
        raise ConfigError("Ritz vectors need the basis: use reorth='full' with return_vectors=True")
    m = m or max(3 * k, 30)
    v0 = tree_random(jax.random.key(seed), like)  # Rademacher: one compiled sampler serves every method
    t = lanczos(matvec, v0, m, reorth=reorth, basis_on_host=basis_on_host, basis_dir=basis_dir,
                keep_basis=return_vectors)
    steps = len(t.alphas)
    if reorth == "none":
        values = distinct_ritz_values(t)
        values = values[_order(values, which)][:k]
        return Eigs(values, None, None, steps)
    theta, s = t.ritz()
    idx = _order(theta, which)[:k]
    residuals = np.abs(t.residual_beta * s[-1, idx])
    vectors = [t.basis.combine(s[:, i]) for i in idx] if return_vectors else None
    return Eigs(theta[idx], vectors, residuals, steps)


# ---------------------------------------------------------------------------------------------
# Power iteration
# ---------------------------------------------------------------------------------------------

def power_iteration(matvec: MatVec, like: Vector, k: int = 1, *, iters: int = 200, tol: float = 1e-6,
                    seed: int = 0) -> Eigs:
    """k eigenpairs of largest magnitude, one at a time, with Hotelling deflation.

    Eigenpair i iterates on H - Σ_{j<i} λ_j u_j u_jᵀ; each stops when the Rayleigh quotient changes by
    less than tol·|λ| or after `iters` products. Convergence goes like |λ_{i+1}/λ_i| per step.
    """
    values, vectors, total = [], [], 0
    for i in range(k):
        v = tree_random(jax.random.fold_in(jax.random.key(seed), i), like)
        v = tree_scale(1.0 / jnp.sqrt(tree_dot(v, v)), v)
        lam = None
        for _ in range(iters):
            w = matvec(v)
            total += 1
            for lj, uj in zip(values, vectors):
                w = tree_axpy(jnp.float32(-lj) * tree_dot(uj, v), uj, w)
            new = float(tree_dot(w, v))
            v = tree_scale(1.0 / jnp.sqrt(tree_dot(w, w)), w)
            done = lam is not None and abs(new - lam) <= tol * abs(new)
            lam = new
            if done:
                break
        values.append(lam)
        vectors.append(v)
    return Eigs(np.asarray(values), vectors, None, total)


# ---------------------------------------------------------------------------------------------
# Spectral density (stochastic Lanczos quadrature) and trace (Hutchinson)
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SpectralDensity:
    """Gaussian-broadened SLQ density on `grid` (integrates to 1), with the quadrature behind it."""

    grid: np.ndarray
    density: np.ndarray
    nodes: list[np.ndarray]  # per probe: Ritz values
    weights: list[np.ndarray]  # per probe: squared first components (sum to 1)
    sigma: float

    def moment(self, p: int) -> float:
        """≈ tr(Hᵖ)/P: exact in expectation (Rademacher probes) for p < 2m."""
        return float(np.mean([np.sum(w * x ** p) for x, w in zip(self.nodes, self.weights)]))

    def moment_stderr(self, p: int) -> float:
        """Standard error of `moment(p)` from the spread over probes."""
        per_probe = [np.sum(w * x ** p) for x, w in zip(self.nodes, self.weights)]
        return float(np.std(per_probe, ddof=1) / np.sqrt(len(per_probe))) if len(per_probe) > 1 else float("nan")

    def to_dict(self) -> dict:
        return {"grid": self.grid.tolist(), "density": self.density.tolist(), "sigma": self.sigma,
                "nodes": [x.tolist() for x in self.nodes], "weights": [w.tolist() for w in self.weights]}


def broaden(nodes: Sequence[np.ndarray], weights: Sequence[np.ndarray], sigma: float | None = None,
            grid: np.ndarray | None = None, num_points: int = 1000) -> tuple[np.ndarray, np.ndarray, float]:
    """(grid, density, sigma): Σ weights·N(t; node, σ²) averaged over probes, normalised on the grid.

    sigma defaults to 1% of the node range; the grid spans the nodes plus 5σ on each side.
    """
    allx = np.concatenate([np.asarray(x, np.float64) for x in nodes])
    span = float(allx.max() - allx.min())
    if sigma is None:
        sigma = 0.01 * span if span > 0 else max(1e-3 * float(np.abs(allx).max()), 1e-6)
    if grid is None:
        grid = np.linspace(allx.min() - 5 * sigma, allx.max() + 5 * sigma, num_points)
    grid = np.asarray(grid, np.float64)
    density = np.zeros_like(grid)
    for x, w in zip(nodes, weights):
        z = (grid[:, None] - np.asarray(x)[None, :]) / sigma
        density += np.exp(-0.5 * z * z) @ np.asarray(w) / (sigma * np.sqrt(2 * np.pi))
    density /= len(nodes)
    area = np.trapezoid(density, grid)
    if area > 0:
        density = density / area
    return grid, density, float(sigma)


def slq_density(matvec: MatVec, like: Vector, *, probes: int = 8, m: int = 30, seed: int = 0,
                dist: str = "rademacher", sigma: float | None = None, grid: np.ndarray | None = None,
                num_points: int = 1000, reorth: str = "full", basis_on_host: bool = False,
                basis_dir: str | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature: each probe v gives the m-node Gauss rule of vᵀ f(H) v / vᵀv."""
    nodes, weights = [], []
    for i in range(probes):
        v = tree_random(jax.random.fold_in(jax.random.key(seed), i), like, dist)
        theta, s = lanczos(matvec, v, m, reorth=reorth, basis_on_host=basis_on_host, basis_dir=basis_dir).ritz()
        nodes.append(theta)
        weights.append(s[0] ** 2)
    grid, density, sigma = broaden(nodes, weights, sigma, grid, num_points)
    return SpectralDensity(grid, density, nodes, weights, sigma)


@dataclasses.dataclass
class TraceEstimate:
    mean: float
    stderr: float
    samples: np.ndarray


def hutchinson_trace(matvec: MatVec, like: Vector, probes: int = 100, *, seed: int = 0,
                     dist: str = "rademacher") -> TraceEstimate:
    """tr(H) ≈ mean of zᵀHz; Rademacher probes give the lowest variance (2·Σ_{i≠j} H_ij²)."""
    if probes < 1:
        raise ConfigError(f"probes must be >= 1, got {probes}")
    samples = []
    for i in range(probes):
        z = tree_random(jax.random.fold_in(jax.random.key(seed), i), like, dist)
        samples.append(float(tree_dot(z, matvec(z))))
    x = np.asarray(samples)
    stderr = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return TraceEstimate(float(x.mean()), stderr, x)
