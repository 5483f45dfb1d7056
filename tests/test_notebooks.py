"""Both analysis notebooks execute top to bottom (nbclient, the python3 kernel ipykernel provides) on a
study directory of three tiny training runs (Full FT, LoRA, DoRA of configs/tiny.py, 3 steps each), passed
the way the committed outputs are made: JAXFT_NOTEBOOK_* environment variables."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO

pytestmark = pytest.mark.slow  # README's second test command (tests/time_guard.py)

NOTEBOOKS = os.path.join(REPO, "notebooks")
METHODS = ("full", "lora", "dora")
STEPS, PER_STEP, LIMIT = 3, 4, 16


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """<runs>/tiny/<method>/train for each method: the layout `python -m jaxft.study` writes."""
    from jaxft.train.config import load_config_file
    from jaxft.train.loop import train

    root = tmp_path_factory.mktemp("runs")
    for method in METHODS:
        c = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
        c.method = method
        c.data.limit, c.data.seq_len = LIMIT, 128
        c.global_batch_size, c.total_steps = PER_STEP, STEPS
        train(c, str(root / "tiny" / method / "train"), progress=False)
    return str(root), c


def execute(name: str, runs_dir: str, monkeypatch, **settings) -> list:
    monkeypatch.setenv("JAXFT_NOTEBOOK_RUNS", runs_dir)
    for key, value in settings.items():
        monkeypatch.setenv(f"JAXFT_NOTEBOOK_{key}", str(value))
    # The kernel is a fresh process in notebooks/: it imports jaxft from this checkout.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    # A failing cell raises CellExecutionError, which fails the test with the cell's traceback.
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": NOTEBOOKS}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name}: no figure was rendered"
    return outputs


def markdown_table(outputs: list, marker: str) -> dict[str, list[str]]:
    """{row label: cells} of the one Markdown output holding `marker`; the header row under key ''."""
    texts = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    found = [t for t in texts if marker in t]
    assert len(found) == 1, f"expected one table with {marker!r}, got {len(found)}"
    rows = [line.strip("|").split("|") for line in found[0].splitlines() if line.startswith("|")]
    return {cells[0].strip(): [x.strip() for x in cells[1:]] for cells in rows if not cells[0].startswith("---")}


def test_hessian_notebook_compares_the_three_runs(runs, monkeypatch):
    runs_dir, c = runs
    outputs = execute("hessian_spectrum.ipynb", runs_dir, monkeypatch, BATCH=2, SEQ=32, TOP_K=3,
                      LANCZOS_STEPS=8, SLQ_PROBES=2, SLQ_STEPS=6)
    table = markdown_table(outputs, "λ1")
    assert table[""] == list(METHODS)
    # The analysed subset is the middle layer's (layer 1 of 2) trainable parameters of each method,
    # counted here from the config's shapes: the seven projections, or their rank-r adapters.
    m = c.random_model
    q_out, kv_out = m.num_attention_heads * m.head_dim, m.num_key_value_heads * m.head_dim
    shapes = [(m.hidden_size, q_out), (m.hidden_size, kv_out), (m.hidden_size, kv_out), (q_out, m.hidden_size),
              (m.hidden_size, m.intermediate_size), (m.hidden_size, m.intermediate_size),
              (m.intermediate_size, m.hidden_size)]
    full = sum(i * o for i, o in shapes)
    lora = sum(c.peft.r * (i + o) for i, o in shapes)
    dora = lora + sum(o for _, o in shapes)
    assert table["parameters analysed"] == [f"{full:,d}", f"{lora:,d}", f"{dora:,d}"]
    assert table["tensors"] == ["7", "14", "21"]
    for i in (1, 2, 3):  # every method has its top-3 eigenvalues, finite, in descending order
        assert all(cell[0] in "-0123456789" for cell in table[f"λ{i} (residual bound)"])
    for cells in zip(*(table[f"λ{i} (residual bound)"] for i in (1, 2, 3))):
        values = [float(x.split(" (")[0]) for x in cells]
        assert values == sorted(values, reverse=True)


def test_dynamics_notebook_shows_the_three_runs(runs, monkeypatch):
    runs_dir, _ = runs
    outputs = execute("training_dynamics.ipynb", runs_dir, monkeypatch, INTRUDER_K=4)
    table = markdown_table(outputs, "examples seen")
    assert table[""] == list(METHODS)
    assert table["steps"] == [str(STEPS)] * 3
    assert table["examples seen"] == [str(STEPS * PER_STEP)] * 3
    kept = [json.load(open(os.path.join(runs_dir, "tiny", m, "train", "data_stats.json")))["kept"] for m in METHODS]
    assert table["epochs"] == [f"{STEPS * PER_STEP / k:.3g}" for k in kept]


def test_notebook_inputs_name_what_is_wrong(runs, tmp_path, monkeypatch):
    from jaxft.analysis.notebook_inputs import env_param, train_workdirs
    from jaxft.errors import ConfigError, DataError

    runs_dir, _ = runs
    model, dirs = train_workdirs(runs_dir, METHODS)
    assert model == "tiny" and dirs == {m: os.path.join(runs_dir, "tiny", m, "train") for m in METHODS}
    with pytest.raises(DataError, match="JAXFT_NOTEBOOK_RUNS"):
        train_workdirs(str(tmp_path / "absent"), METHODS)
    with pytest.raises(DataError, match=r"\['qlora'\]"):
        train_workdirs(runs_dir, ["full", "qlora"], model="tiny")
    with pytest.raises(DataError, match="no model has"):
        train_workdirs(runs_dir, ["qlora"])
    monkeypatch.setenv("JAXFT_NOTEBOOK_SEQ", "many")
    with pytest.raises(ConfigError, match="JAXFT_NOTEBOOK_SEQ='many' must be an int"):
        env_param("JAXFT_NOTEBOOK_SEQ", 256)
    monkeypatch.setenv("JAXFT_NOTEBOOK_SEQ", "64")
    assert env_param("JAXFT_NOTEBOOK_SEQ", 256) == 64
