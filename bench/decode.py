"""Greedy decoding of a packaged GGUF model (default SmolLM2-135M-Instruct; `--model=gemma-3-270m-q4` for
Gemma 3 270M) on the same 64 GSM8K prompts, batch 32, 256 new tokens: jaxft (jitted prefill +
while_loop over a static KV cache, continuous batching) vs transformers `generate` (torch CPU, static
batches; `--no_reference` leaves it out).

Generated tokens per second, one run each, side by side; the last line is the ratio. jaxft also runs
with static batches (`refill = batch`, transformers' schedule), so the report separates what the
schedule gains from what the per-step code gains.
"""

import argparse
import dataclasses
import time

import numpy as np

from common import machine_line, torch_reference


def _print_jaxft(runs):
    for name, (n, t, tc, group) in runs.items():
        print(f"jaxft {name:10s}: {n} tokens in {t:7.1f}s = {n / t:7.1f} generated tokens/s "
              f"(refill groups of {group}; compilation before it: {tc:.1f}s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max_new_tokens", type=int, default=256)
    ap.add_argument("--refill", type=int, default=0, help="continuous batching refill group (0: batch // 4)")
    ap.add_argument("--model", default="smollm2-135m-instruct-q4", help="a packaged GGUF (jaxft.models.registry)")
    ap.add_argument("--no_reference", action="store_true", help="jaxft only: no transformers run")
    args = ap.parse_args()

    import torch

    from jaxft.data.prompts import build_prompt
    from jaxft.data.tasks import load_task
    from jaxft.eval.generate import DecodeSettings, generate_ids, warm_up
    from jaxft.models import load_model
    from jaxft.models.registry import gguf_package_file

    path = gguf_package_file(args.model)
    model, tok = load_model(path)
    examples = load_task("gsm8k", "test", limit=args.n)
    prompts = [build_prompt(ex, template="plain") for ex in examples]
    ids = [tok(p)["input_ids"] for p in prompts]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    # No stop strings on either side: both decode until EOS or max_new_tokens.
    settings = DecodeSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch)

    # Compile every prefill/decode shape of the timed runs first (a one-off cost, reported apart).
    runs, rows_by_run = {}, {}
    for name, refill in (("static", args.batch), ("continuous", args.refill)):
        s = dataclasses.replace(settings, refill=refill)
        t_compile = warm_up(model, ids, s, eos_ids=[eos], pad_id=pad)
        t0 = time.perf_counter()
        out = generate_ids(model, ids, s, eos_ids=[eos], pad_id=pad)
        runs[name] = (sum(len(r[0]) for r in out), time.perf_counter() - t0, t_compile, s.refill_group)
        rows_by_run[name] = [r[0] for r in out]

    print(f"model: {args.model} ({path})")
    if args.no_reference:
        print(machine_line(torch))
        _print_jaxft(runs)
        return
    ref = torch_reference(path)
    tok.padding_side = "left"
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # same length bucketing as jaxft
    t0 = time.perf_counter()
    n_torch, torch_rows = 0, {}
    for lo in range(0, len(order), args.batch):
        idx = order[lo:lo + args.batch]
        rows = [ids[i] for i in idx]
        width = max(map(len, rows))
        batch = np.full((len(rows), width), pad)
        mask = np.zeros_like(batch)
        for r, p in enumerate(rows):
            batch[r, width - len(p):], mask[r, width - len(p):] = p, 1
        with torch.inference_mode():
            gen = ref.generate(input_ids=torch.tensor(batch), attention_mask=torch.tensor(mask),
                               max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=eos,
                               pad_token_id=pad)[:, width:].numpy()
        for i, row in zip(idx, gen):
            row = row.tolist()
            torch_rows[i] = row[:row.index(eos) + 1] if eos in row else row
            n_torch += len(torch_rows[i])
    t_torch = time.perf_counter() - t0

    print(machine_line(torch))
    _print_jaxft(runs)
    print(f"transformers: {n_torch} tokens in {t_torch:7.1f}s = {n_torch / t_torch:7.1f} generated tokens/s")
    for name, rows in rows_by_run.items():
        same = sum(rows[i] == torch_rows[i] for i in range(len(ids)))
        print(f"jaxft {name} generations identical to transformers': {same}/{len(ids)}")
    torch_rate = n_torch / t_torch
    n, t = runs["static"][:2]
    print(f"same static schedule: jaxft/transformers {(n / t) / torch_rate:.2f}")
    n, t = runs["continuous"][:2]
    print(f"decode jaxft/transformers speedup: {(n / t) / torch_rate:.2f}")


if __name__ == "__main__":
    main()
