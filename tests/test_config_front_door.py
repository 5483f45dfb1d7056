"""One reading of `--config=path[:arg]` for train, plan and study: the parameterised experiment config
names the same configs as the 15 historical files, and the learning rate follows the method after the
overrides unless someone set it."""

import os

import ml_collections
import pytest

from conftest import REPO
from jaxft.errors import ConfigError

CONFIGS = os.path.join(REPO, "configs")
FULL_LR, PEFT_LR = 2e-5, 2e-4  # the protocol's rates (docs/protocol.md), written out, not imported
# file stem -> registry name
MODELS = {"smollm2_135m": "smollm2-135m", "smollm2_360m": "smollm2-360m", "qwen25_05b": "qwen2.5-0.5b",
          "olmo1b": "olmo-1b", "gemma2b": "gemma-2b"}


def cfg(name: str) -> str:
    return os.path.join(CONFIGS, name)


def train_args(spec: str, *overrides: str):
    from jaxft.train.config import parse_args

    c, workdir, extra = parse_args([f"--config={spec}", "--workdir=w", *overrides])
    assert (workdir, extra) == ("w", {})
    return c


@pytest.mark.parametrize("stem", sorted(MODELS))
@pytest.mark.parametrize("method", ["full", "lora", "dora"])
def test_path_arg_form_is_the_historical_file(stem, method):
    model = MODELS[stem]
    shim = train_args(cfg(f"{stem}_{method}.py"))
    same = train_args(cfg(f"experiment.py:{model},{method}"))
    assert same.to_dict() == shim.to_dict()
    assert (shim.model, shim.method) == (model, method)
    assert shim.micro_batch_size == "auto"  # picked for the method and the device when the run starts
    assert shim.optim.learning_rate == (FULL_LR if method == "full" else PEFT_LR)
    gemma_full = (stem, method) == ("gemma2b", "full")
    assert (shim.mesh_shape.data, shim.mesh_shape.fsdp, shim.remat) == ((1, -1, "dots") if gemma_full
                                                                         else (-1, 1, "auto"))


def test_learning_rate_follows_the_method_after_overrides_unless_set():
    lora = cfg("smollm2_135m_lora.py")
    assert train_args(lora).optim.learning_rate == PEFT_LR
    assert train_args(lora, "--config.method=full").optim.learning_rate == FULL_LR
    assert train_args(cfg("smollm2_135m_full.py"), "--config.method=dora").optim.learning_rate == PEFT_LR
    # An explicit rate wins, before or after the method on the command line.
    assert train_args(lora, "--config.optim.learning_rate=1e-3", "--config.method=full").optim.learning_rate == 1e-3
    assert train_args(lora, "--config.method=full", "--config.optim.learning_rate=3e-5").optim.learning_rate == 3e-5
    # So does a rate the file sets itself.
    assert train_args(cfg("tiny.py"), "--config.method=full").optim.learning_rate == 3e-3
    assert train_args(cfg("quickstart.py"), "--config.method=dora").optim.learning_rate == 5e-4


def test_plan_reads_the_same_command_line():
    from jaxft.plan import parse

    c, path, hw, as_json = parse([f"--config={cfg('experiment.py:gemma-2b,full')}", "--devices=v5e-8", "--json",
                                  "--config.method=lora"])
    assert (c.model, c.method, c.optim.learning_rate, hw.count, as_json) == ("gemma-2b", "lora", PEFT_LR, 8, True)
    assert path.endswith("experiment.py:gemma-2b,full")
    with pytest.raises(ConfigError, match=r"argument '--workdir=w': expected --config=, --devices="):
        parse([f"--config={cfg('tiny.py')}", "--devices=cpu", "--workdir=w"])


def study(name: str):
    from jaxft.train.config import load_config_file

    s = load_config_file(cfg(name))
    s.config_root = REPO
    return s


@pytest.mark.parametrize("name,rates", [
    ("study.py", {"full": FULL_LR, "lora": PEFT_LR, "dora": PEFT_LR}),  # per-method files
    ("study_smollm2_cpu.py", {"full": FULL_LR, "lora": PEFT_LR, "dora": PEFT_LR}),  # study.learning_rates
    ("study_tiny.py", {"full": 3e-3, "lora": 3e-3, "dora": 3e-3}),  # tiny.py sets its own
])
def test_study_train_configs_keep_their_rates(name, rates):
    from jaxft.study import _train_config

    s = study(name)
    for model in s.models:
        for method, rate in rates.items():
            c = _train_config(s, model, method)
            assert (c.method, c.optim.learning_rate) == (method, rate), (model, method)


def test_study_without_rates_gets_the_methods_rate_on_a_lora_file():
    from jaxft.study import _train_config

    s = study("study_smollm2_cpu.py")  # configs/grid_smollm2_cpu.py is a LoRA file
    s.learning_rates = ml_collections.ConfigDict()
    assert _train_config(s, "smollm2-135m-instruct", "full").optim.learning_rate == FULL_LR
    assert _train_config(s, "smollm2-135m-instruct", "lora").optim.learning_rate == PEFT_LR


def test_bad_specs_are_named():
    with pytest.raises(ConfigError, match=r"configs/experiment.py:llama-7b,lora: expected MODEL,METHOD .*gemma-2b"):
        train_args(cfg("experiment.py:llama-7b,lora"))
    with pytest.raises(ConfigError, match=r"tiny.py: get_config\(\) takes no argument.*drop ':full'"):
        train_args(cfg("tiny.py:full"))
    with pytest.raises(ConfigError, match=r"config file '.*nope.py' does not exist"):
        train_args(cfg("nope.py:smollm2-135m,lora"))
    from jaxft.train.config import read_config, validate

    raw = read_config(cfg("smollm2_135m_lora.py"))  # as written: the rate left to the method
    assert raw.optim.learning_rate == 0.0
    with pytest.raises(ConfigError, match="optim.learning_rate=0.0 must be positive"):
        validate(raw)  # a config that skipped finalize() is refused, not trained at rate 0
