"""jaxft: fine-tune small language models in JAX/Flax and study what fine-tuning does to them."""

__version__ = "0.1.0"
