"""The fine-tuning methods and the layers PEFT adapts, named once for configs, CLIs, studies, benches and reports.

No jax or model imports, so configs and the report can read these names without loading a framework.
"""

METHODS = ("full", "lora", "dora")
# Every linear projection of a decoder layer (attention and MLP): the study adapts all seven.
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
