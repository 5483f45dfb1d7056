"""What fine-tuning does: loss-Hessian spectra, intruder dimensions, weight displacement, and plots."""

from jaxft.analysis.hessian import (Eigs, HessianProblem, SpectralDensity, TraceEstimate, hessian_problem,
                                    hutchinson_trace, lanczos, lanczos_top_k, power_iteration, slq_density,
                                    tree_axpy, tree_dot, tree_norm, tree_random, tree_scale)
from jaxft.analysis.spectral import (compare, intruder_dimensions, lora_bounds, merge_adapters_flat,
                                     weight_displacement)

__all__ = ["Eigs", "HessianProblem", "SpectralDensity", "TraceEstimate", "hessian_problem", "hutchinson_trace",
           "lanczos", "lanczos_top_k", "power_iteration", "slq_density", "tree_axpy", "tree_dot", "tree_norm",
           "tree_random", "tree_scale", "compare", "intruder_dimensions", "lora_bounds", "merge_adapters_flat",
           "weight_displacement"]
