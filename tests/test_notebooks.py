"""Both analysis notebooks execute top to bottom (nbclient, the python3 kernel ipykernel provides)."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


@pytest.mark.parametrize("name", ["hessian_spectrum.ipynb", "training_dynamics.ipynb"])
def test_notebook_runs(name):
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    # A failing cell raises CellExecutionError, which fails the test with the cell's traceback.
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": NOTEBOOKS}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was rendered"
