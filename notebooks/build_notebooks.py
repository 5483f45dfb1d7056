"""Regenerate the analysis notebooks (unexecuted): `python notebooks/build_notebooks.py`.

The notebooks only call jaxft; keeping their source here makes reviews of cell changes readable.
"""

import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

HESSIAN = [
    new_markdown_cell("""# Hessian spectrum of a tiny transformer

The loss Hessian with respect to (a subset of) the parameters, explored with Hessian-vector
products only: forward-over-reverse HVPs (`jaxft.analysis.hessian`), the top eigenvalues by
Lanczos and by power iteration, the spectral density by stochastic Lanczos quadrature (SLQ) and the
trace by Hutchinson's estimator. The model is a randomly initialised two-layer Llama-style
transformer, the data a random Markov chain over its 32-token vocabulary, so everything runs on a
CPU in well under a minute."""),
    new_code_cell("""%matplotlib inline
import time

import numpy as np
from flax import nnx
from IPython.display import display

from jaxft.analysis import hessian as H
from jaxft.analysis import plots
from jaxft.analysis.batches import markov_batches
from jaxft.models import ModelConfig, Transformer

cfg = ModelConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=4)
model = Transformer(cfg, rngs=nnx.Rngs(0))
batches = markov_batches(cfg.vocab_size, batch_size=8, seq_len=16, num_batches=2, seed=0)
problem = H.hessian_problem(model, batches, subset="all")
print(f"{problem.num_params} parameters, loss {problem.loss():.4f} over {len(batches)} batches")"""),
    new_markdown_cell("""## Top eigenvalues: Lanczos vs power iteration

Lanczos (full reorthogonalisation) gets all top-k Ritz values from one Krylov space; the residual
bound |β_m s_m,i| tells how converged each is. Power iteration finds one eigenpair at a time and
deflates it; it converges to the eigenvalue of largest *magnitude*. At initialisation this Hessian
is strongly indefinite, so that can be a negative one: Lanczos with `which="LM"` reproduces it."""),
    new_code_cell("""t0 = time.perf_counter()
top = H.lanczos_top_k(problem.hvp, problem.params, k=5, m=60)
t_lanczos = time.perf_counter() - t0
t0 = time.perf_counter()
power = H.power_iteration(problem.hvp, problem.params, k=2, iters=150, tol=1e-6)
t_power = time.perf_counter() - t0
magnitude = H.lanczos_top_k(problem.hvp, problem.params, k=2, m=60, which="LM")
print(f"Lanczos ({top.matvecs} HVPs, {t_lanczos:.1f}s, includes compiling the HVP):", np.round(top.values, 5))
print("  residual bounds:", np.array2string(top.residuals, precision=1))
print(f"power   ({power.matvecs} HVPs, {t_power:.1f}s):", np.round(power.values, 5))
print("Lanczos, largest magnitude:", np.round(magnitude.values, 5))
display(plots.plot_top_eigenvalues({"Lanczos (largest)": top.values, "Lanczos (largest |λ|)": magnitude.values,
                                    "power iteration": power.values}))"""),
    new_markdown_cell("""## Check against the dense Hessian of one weight matrix

Any regex over Hugging Face parameter names selects a subset. For one 16x16 projection the
Hessian block is small enough to form column by column from HVPs and diagonalise exactly."""),
    new_code_cell("""block = H.hessian_problem(model, batches, subset=r"layers\\.1\\.self_attn\\.o_proj\\.weight")
exact = np.linalg.eigvalsh(H.dense_hessian(block.hvp, block.params))[::-1]
approx = H.lanczos_top_k(block.hvp, block.params, k=5, m=60).values
print(block.names(), block.num_params, "parameters")
print("eigh   :", np.round(exact[:5], 6))
print("Lanczos:", np.round(approx, 6))
print("max relative error:", float(np.max(np.abs(approx / exact[:5] - 1))))"""),
    new_markdown_cell("""## Spectral density (SLQ) and trace (Hutchinson)

Each Rademacher probe gives an m-node Gauss quadrature (Ritz values, squared first eigenvector
components); Gaussian broadening turns the nodes into a density normalised to integrate to 1. Its
first moment estimates tr(H)/P, which Hutchinson's estimator measures directly. With an indefinite
Hessian the trace is a small difference of large positive and negative parts, so both estimates
carry a large standard error: compare the two within it."""),
    new_code_cell("""density = H.slq_density(problem.hvp, problem.params, probes=4, m=60, seed=0)
trace = H.hutchinson_trace(problem.hvp, problem.params, probes=60, seed=0)
print(f"density integrates to {np.trapezoid(density.density, density.grid):.6f}, sigma {density.sigma:.3g}")
P = problem.num_params
print(f"trace: Hutchinson {trace.mean:.2f} ± {trace.stderr:.2f} (60 probes);  "
      f"SLQ P·E[λ] {P * density.moment(1):.2f} ± {P * density.moment_stderr(1):.2f} (4 probes)")
print(f"SLQ E[λ²] = {density.moment(2):.4g}; top Ritz value of the probes {max(x.max() for x in density.nodes):.4f}")
display(plots.plot_density(density.grid, density.density))"""),
]

DYNAMICS = [
    new_markdown_cell("""# Training dynamics: Full fine-tuning vs LoRA

A tiny transformer is first "pre-trained" on one random Markov chain, then fine-tuned on another
with full fine-tuning and with LoRA. We compare loss and gradient-norm curves, then what each
method did to the weights: intruder dimensions (Shuttleworth et al., 2024) and the displacement
||W - W0||_F, with the LoRA bound s·||B||_F·||A||_F."""),
    new_code_cell("""%matplotlib inline
import numpy as np
from flax import nnx
from IPython.display import display
from matplotlib.figure import Figure

from jaxft.analysis import plots, spectral
from jaxft.analysis.batches import markov_batches
from jaxft.analysis.dynamics import train_curve
from jaxft.models import ModelConfig, Transformer

cfg = ModelConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8)
pretrain_data = markov_batches(cfg.vocab_size, batch_size=16, seq_len=32, num_batches=4, seed=1)
finetune_data = markov_batches(cfg.vocab_size, batch_size=16, seq_len=32, num_batches=4, seed=2)
base, pre_hist = train_curve(Transformer(cfg, rngs=nnx.Rngs(0)), "full", pretrain_data, steps=150,
                             learning_rate=1e-3)
print(f"pre-training loss {pre_hist['loss'][0]:.3f} -> {pre_hist['loss'][-1]:.3f}")"""),
    new_markdown_cell("""## Fine-tune with both methods

Same data, same number of steps, AdamW with gradient clipping at 1; LoRA (r=4, alpha=8) on all
seven projections gets a larger learning rate, as is usual. (Full fine-tuning reuses the
pre-training learning rate, so both share one compiled train step.)"""),
    new_code_cell("""runs = {}
runs["full"] = train_curve(base, "full", finetune_data, steps=60, learning_rate=1e-3)
runs["lora"] = train_curve(base, "lora", finetune_data, steps=60, learning_rate=5e-3, r=4, alpha=8)
histories = {name: hist for name, (_, hist) in runs.items()}
for name, hist in histories.items():
    print(f"{name:5s} loss {hist['loss'][0]:.3f} -> {hist['loss'][-1]:.3f}")
fig = Figure(figsize=(11, 4), layout="constrained")
ax_loss, ax_grad = fig.subplots(1, 2)
plots.plot_curves(histories, "loss", ax=ax_loss)
plots.plot_curves(histories, "grad_norm", ax=ax_grad, log=True, title="gradient norm (before clipping)")
display(fig)"""),
    new_markdown_cell("""## Intruder dimensions and weight displacement

For each of the 14 projection matrices: how many of the fine-tuned matrix's top-10 left singular
vectors have no counterpart (max |cos| < 0.5) among the base matrix's singular vectors, and how far
the matrix moved. LoRA's update is merged (W0 + s·B·A) before the comparison."""),
    new_code_cell("""results = {name: spectral.compare_models(base, tuned, k=10, epsilon=0.5) for name, (tuned, _) in runs.items()}
for name, res in results.items():
    disp = res["displacement"]
    print(f"{name:5s} intruders {res['intruders']['total']:3d}   ||ΔW||_F total {disp['total']:.4f}   "
          f"mean relative {np.mean([r['rel'] for r in disp['matrices']]):.4f}")
lora_rows = results["lora"]["displacement"]["matrices"]
assert all(r["abs"] <= r["lora_bound"] * (1 + 1e-6) for r in lora_rows), "the LoRA bound must hold"
fig = Figure(figsize=(13, 7), layout="constrained")
axes = fig.subplots(2, 2)
for col, name in enumerate(runs):
    plots.plot_per_layer(results[name]["intruders"]["matrices"], "count", ax=axes[0, col],
                         title=f"{name}: intruder dimensions", ylabel="count")
    plots.plot_per_layer(results[name]["displacement"]["matrices"], "abs", ax=axes[1, col],
                         title=f"{name}: ||W - W0||_F", ylabel="||ΔW||_F, stacked over matrices",
                         bound_key="lora_bound" if name == "lora" else None)
display(fig)"""),
]


def build(cells, name):
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    path = os.path.join(HERE, name)
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    print(build(HESSIAN, "hessian_spectrum.ipynb"))
    print(build(DYNAMICS, "training_dynamics.ipynb"))
