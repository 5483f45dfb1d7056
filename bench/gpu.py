"""The benchmark for a lent GPU, one run: train-step throughput and MFU of Full FT / LoRA / DoRA against
torch + PEFT, the Hessian's cost, measured memory beside the planner's estimate, and greedy decoding
against transformers' `generate`.

Random weights with the real shapes (registry configs): timing and memory do not depend on the values,
and the GPU machine has no hub access. Every measurement runs in its own subprocess so that peak
memory is per case and one out-of-memory case does not end the run; each prints one JSON line.

    python bench/gpu.py [--out results.jsonl] [--sections train,hessian,memory,decode]

Train cases: bfloat16 compute, float32 master weights, AdamW (clip 1.0), sequence 2048, LoRA/DoRA
r=8, alpha=32, dropout 0.05 on all seven projections, on both sides. torch: eager transformers
(sdpa attention) + peft under bfloat16 autocast, as the study ran it.

Decode cases: bfloat16 weights and compute on both sides, random prompts, every row decodes exactly
`new` tokens (no EOS: random weights would end rows at random), so both sides do the same work and
the ratio is the cost of a decode step; jaxft's compilation is timed apart (warm_up).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from common import (LORA_ALPHA, LORA_R, compiled_train_step, decode_prompts, grad_hvp_seconds, jax_peak_bytes,
                    jaxft_decode, median_seconds, random_batch, run_isolated, torch_peft_step)

from jaxft.peft.methods import METHODS


def _jax_model(name: str, dtype: str, a: dict):
    import jax.numpy as jnp
    from flax import nnx

    from jaxft.models import Transformer, registry_config

    cfg = registry_config(name)
    model = Transformer(cfg, dtype=jnp.dtype(dtype), param_dtype=jnp.float32, rngs=nnx.Rngs(0), scan_layers=True,
                        remat=a["remat"], attention=a["attention"])
    return cfg, model


def case_jaxft_train(a: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxft.peft import apply_peft, split_params
    from jaxft.train.telemetry import device_peak_flops, train_flops_per_token

    cfg, model = _jax_model(a["model"], "bfloat16", a)
    if a["method"] != "full":
        apply_peft(model, a["method"], r=LORA_R, alpha=LORA_ALPHA, dropout=a["dropout"])
    graphdef, trainable, frozen = split_params(model, a["method"])
    del model
    batch = {k: jnp.asarray(v) for k, v in random_batch(cfg.vocab_size, a["batch"], a["seq"]).items()}
    one, compile_s = compiled_train_step(graphdef, trainable, frozen, batch, a["dropout"] > 0 and a["method"] != "full")
    sec = median_seconds(one, a["warmup"], a["steps"])
    tokens = a["batch"] * a["seq"]
    peak = device_peak_flops()
    flops = train_flops_per_token(cfg, a["method"], a["seq"]) * tokens
    return {"s_per_step": sec, "tokens_per_s": tokens / sec, "compile_s": compile_s,
            "mfu": flops / sec / peak if peak else None, "peak_bytes": jax_peak_bytes(),
            "device": jax.devices()[0].device_kind}


def case_torch_train(a: dict) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from jaxft.models.registry import HF_CONFIGS

    d = dict(HF_CONFIGS[a["model"]])
    hf_cfg = AutoConfig.for_model(d.pop("model_type"), **d)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="sdpa").cuda()
    b = {k: torch.from_numpy(v).cuda() for k, v in random_batch(hf_cfg.vocab_size, a["batch"], a["seq"]).items()}
    one = torch_peft_step(model, a["method"], b["input_ids"].long(), b["targets"].long(), dropout=a["dropout"],
                          autocast_dtype=torch.bfloat16, sync=torch.cuda.synchronize)
    torch.cuda.reset_peak_memory_stats()
    sec = median_seconds(one, a["warmup"], a["steps"])
    tokens = a["batch"] * a["seq"]
    return {"s_per_step": sec, "tokens_per_s": tokens / sec, "peak_bytes": torch.cuda.max_memory_allocated(),
            "device": torch.cuda.get_device_name()}


def case_hessian(a: dict) -> dict:
    import jax
    import numpy as np

    from jaxft.analysis import hessian as H

    a = dict(a, remat="none")
    cfg, model = _jax_model(a["model"], "float32", a)
    batches = [random_batch(cfg.vocab_size, a["batch"], a["seq"], seed=i) for i in range(a["micro_batches"])]
    problem = H.hessian_problem(model, batches, "all")
    v = H.tree_random(jax.random.key(0), problem.params)
    times = grad_hvp_seconds(problem, v, 3)
    t = time.perf_counter()
    top = H.lanczos_top_k(problem.hvp, problem.params, k=5, m=a["lanczos_steps"], basis_on_host=False)
    t_lanczos = time.perf_counter() - t
    return {"params": problem.num_params, **times, "hvp_over_grad": times["hvp_s"] / times["grad_s"],
            "lanczos_s": t_lanczos, "matvecs": top.matvecs,
            "top5": np.asarray(top.values).tolist(), "peak_bytes": jax_peak_bytes()}


def case_memory(a: dict) -> dict:
    """Gemma-2B Full FT on one device, measured peak beside the planner's estimate for the same setup."""
    import jax

    from jaxft.train import memory as mem
    from jaxft.train.config import load_config_file

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    c = load_config_file(os.path.join(root, a["config"]))
    c.remat, c.scan_layers, c.global_batch_size, c.micro_batch_size = a["remat"], True, a["batch"], a["batch"]
    c.attention = a["attention"]
    c.data.seq_len = a["seq"]
    c.mesh_shape.data, c.mesh_shape.fsdp = 1, 1
    s = mem.setup_from_config(c, 1)
    est = mem.estimate(s, a["batch"], a["remat"])
    out = case_jaxft_train(a)
    out["planner"] = {k: int(v) for k, v in est.items()}
    out["device_bytes"] = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
    return out


def case_jaxft_decode(a: dict) -> dict:
    import jax.numpy as jnp
    from flax import nnx

    from jaxft.models import Transformer, registry_config

    model = Transformer(registry_config(a["model"]), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    return jaxft_decode(model, a["batch"], a["prompt"], a["new"])


def case_torch_decode(a: dict) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from jaxft.models.registry import HF_CONFIGS

    d = dict(HF_CONFIGS[a["model"]])
    hf_cfg = AutoConfig.for_model(d.pop("model_type"), **d)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.bfloat16).cuda().eval()
    ids = torch.tensor(decode_prompts(hf_cfg.vocab_size, a["batch"], a["prompt"])).cuda()

    def run():
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=a["new"], min_new_tokens=a["new"], pad_token_id=0)
        torch.cuda.synchronize()
        return out

    run()  # warm-up (CUDA context, kernels)
    t = time.perf_counter()
    out = run()
    sec = time.perf_counter() - t
    n = int(out[:, ids.shape[1]:].numel())
    return {"generated": n, "seconds": sec, "tokens_per_s": n / sec, "device": torch.cuda.get_device_name()}


CASES = {"jaxft_train": case_jaxft_train, "torch_train": case_torch_train, "hessian": case_hessian,
         "memory": case_memory, "jaxft_decode": case_jaxft_decode, "torch_decode": case_torch_decode}


def plan(sections: list[str], quick: bool) -> list[dict]:
    """Most important first: a run cut short by the machine's time limit keeps what matters."""
    w = dict(warmup=2, steps=4, dropout=0.05, remat="none", attention="cudnn", seq=2048)
    cases = []
    if "train" in sections:
        for kind in ("jaxft_train", "torch_train"):
            for method in METHODS:
                cases.append(dict(w, case=kind, model="qwen2.5-0.5b", method=method, batch=8))
    if "hessian" in sections:
        cases.append(dict(case="hessian", model="smollm2-135m", batch=8, seq=256, micro_batches=1,
                          lanczos_steps=20, attention="xla"))
    if "memory" in sections:
        cases.append(dict(w, case="memory", config="configs/gemma2b_full.py", model="gemma-2b", method="full",
                          batch=8, remat="full", attention="xla", warmup=1, steps=2))
    if "train" in sections:
        for method in METHODS:
            cases.append(dict(w, case="jaxft_train", model="smollm2-360m", method=method, batch=8))
        cases.append(dict(w, case="jaxft_train", model="qwen2.5-0.5b", method="full", batch=8, attention="xla"))
    if "decode" in sections:
        for model in ("smollm2-135m", "qwen2.5-0.5b"):
            for kind in ("jaxft_decode", "torch_decode"):
                cases.append(dict(case=kind, model=model, batch=32, prompt=128, new=256))
    if quick:  # smoke test of the harness on CPU: tiny shapes
        for c in cases:
            c.update(seq=32, batch=2, warmup=1, steps=1, lanczos_steps=3, prompt=8, new=4)
            if c["case"] != "memory":
                c["model"] = "smollm2-135m"
            c["attention"] = "dpa" if c.get("attention") == "cudnn" else c.get("attention", "xla")
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_bench.jsonl")
    ap.add_argument("--sections", default="train,hessian,memory")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, to check the harness on CPU")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case (JSON)
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args()
    if args.case:
        a = json.loads(args.case)
        print("RESULT " + json.dumps(CASES[a["case"]](a)), flush=True)
        return
    for a in plan(args.sections.split(","), args.quick):
        t = time.perf_counter()
        res = run_isolated(__file__, a, args.timeout)
        row = {**a, **res, "wall_s": time.perf_counter() - t}
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        brief = {k: row.get(k) for k in ("case", "model", "method", "attention", "remat", "batch", "s_per_step",
                                         "tokens_per_s", "mfu", "peak_bytes", "hvp_over_grad", "lanczos_s", "compile_s", "error")
                 if row.get(k) is not None}
        print(json.dumps(brief), flush=True)


if __name__ == "__main__":
    main()
