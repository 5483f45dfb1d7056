"""The fine-tuning methods and the layers PEFT adapts, named once for configs, CLIs, studies, benches and reports.

No jax or model imports, so configs and the report can read these names without loading a framework.
"""

METHODS = ("full", "lora", "dora")
# Every linear projection of a decoder layer (attention and MLP): the study adapts all seven. They are also
# the only layers jaxft adapts: the LM head and the embeddings are refused as targets (jaxft.peft.apply).
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Modules (HF full names) a PEFT target could name that jaxft does not adapt: the model reads their
# weights directly (the tied or untied head, the chunked loss), so an adapter there would have no effect.
UNADAPTED = ("model.embed_tokens", "lm_head")
