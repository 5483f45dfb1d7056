"""The study's protocol, shared by every experiment config (one get_config() per file imports this).

Learning rates are our choice (the paper's section 4.4 says only that PEFT's is higher; the text
lost its values): 2e-4 for LoRA/DoRA, 2e-5 for Full FT (jaxft.train.config.LEARNING_RATES), cosine
decay after a linear warmup, AdamW with weight decay 0.01 on matrices only. Each setting beside the
paper's: docs/protocol.md. optim.learning_rate 0.0 means "the method's rate", filled after the
command line's overrides, so `--config.method=full` also takes the Full-FT rate.
"""

import ml_collections

from jaxft.eval.settings import eval_section
from jaxft.peft.methods import TARGETS


def get_base_config(model: str = "smollm2-135m", method: str = "lora") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = model  # registry name, hub id, HF dir, .gguf, or "random" (see random_model)
    c.tokenizer = ""  # "" = the model's own; needed for model="random"
    c.random_model = ml_collections.ConfigDict(dict(
        family="llama", vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=10000.0,
        tie_word_embeddings=True, eos_token_id=2))
    c.method = method  # full | lora | dora
    c.compute_dtype = "bfloat16"
    c.param_dtype = "float32"  # master weights
    c.scan_layers = True  # one lax.scan over layers: compile time independent of depth
    c.remat = "auto"  # auto | none | full | dots: rematerialise layer activations in the backward pass
    # (auto: none if the planner says it fits, else dots, else full; with micro_batch_size "auto" too,
    # accumulation comes first: remat only when one row per micro-step does not fit without it)
    c.attention = "auto"  # auto | xla (reference) | dpa (jax.nn.dot_product_attention) | cudnn (GPU flash,
    # bf16) | chunked (query blocks, no [b,h,s,s] scores); auto: cudnn on GPU+bf16, chunked on TPU, else xla
    c.loss_impl = "chunked"  # chunked (fused LM head + cross-entropy: no [tokens, vocab] logits) | dense
    c.loss_chunk = 512  # chunked: tokens per device whose [chunk, vocab] logits exist at one time

    c.peft = ml_collections.ConfigDict(dict(
        r=8, alpha=32.0, dropout=0.05, rslora=False, targets=TARGETS))

    c.data = ml_collections.ConfigDict(dict(
        task="orcamath", split="train", limit=10_000, data_dir="", template="plain",
        seq_len=512, packing=True, shuffle_seed=0, num_epochs=1, rows_per_step=0))
    # An epoch uses every example exactly once. Each step's examples are packed into a fixed number of
    # rows of seq_len tokens: rows_per_step 0 = the most any step of the run needs (see data_stats.json).

    c.global_batch_size = 64  # examples per optimizer step (the study's 64), not packed rows
    # rows per device per micro-step (gradient accumulation); 0 = none; "auto" = the largest that divides
    # the rows per device and fits the device's memory (jaxft.train.auto: printed, and recorded in jaxft_config.json)
    c.micro_batch_size = ml_collections.FieldReference("auto", field_type=object)  # "auto" or an int
    c.memory_limit_bytes = 0  # bytes per device "auto" may plan with; 0 = the device's (CPU: what is available)
    c.mesh_shape = ml_collections.ConfigDict(dict(data=-1, fsdp=1))  # -1 = all remaining devices

    c.optim = ml_collections.ConfigDict(dict(
        learning_rate=0.0, warmup_ratio=0.03, schedule="cosine", final_lr_ratio=0.0,  # 0.0: the method's
        weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0))

    c.total_steps = 0  # 0 = data.num_epochs epochs over the training examples; > 0 = that many steps
    c.checkpoint_every_steps = 200
    c.keep_checkpoints = 2
    c.max_consecutive_nonfinite = 5

    # task, split, shots, template, max_new_tokens, batch_size and refill: jaxft.eval.settings' defaults
    c.eval = eval_section(every_steps=0, limit=32, final=True, final_limit=200)

    # TensorBoard always; wandb=True also logs the same scalars to Weights & Biases (pip install
    # 'jaxft[wandb]'; WANDB_MODE=offline keeps the run in <workdir>/wandb/), one W&B run per workdir
    # across resumes. wandb_name "" = the workdir's name.
    c.logging = ml_collections.ConfigDict(dict(wandb=False, wandb_project="jaxft", wandb_name=""))
    return c


def get_cpu_config(model: str, *, examples: int, seq_len: int, steps: int) -> ml_collections.ConfigDict:
    """A LoRA run a 2-core CPU finishes in minutes on the first `examples` GSM8K-train examples: float32
    compute (bfloat16 matmuls are emulated on CPU), 4 examples per step, a checkpoint halfway, a 10%
    warmup and no evaluation during training."""
    c = get_base_config(model=model, method="lora")
    c.compute_dtype = "float32"
    c.data.task, c.data.split, c.data.limit = "gsm8k", "train", examples
    c.data.seq_len = seq_len
    c.global_batch_size = 4
    c.total_steps = steps
    c.checkpoint_every_steps = steps // 2
    c.optim.warmup_ratio = 0.1
    c.eval.every_steps = 0
    return c
