"""The committed notebooks: outputs stripped, one path to set, short cells. (`make notebooks` executes them.)"""

import re

import nbformat
import pytest
from helpers import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
MAX_CELL_LINES = 6


def test_the_three_analysis_notebooks_are_there():
    assert [path.name for path in NOTEBOOKS] == [
        "01_what_lfm_does.ipynb",
        "02_sweep_analysis.ipynb",
        "03_robustness.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        number
        for number, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_reads_one_path_and_keeps_its_cells_short(path):
    code = [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    assert re.search(r"^RESULTS_DIR = None$", code[0], flags=re.MULTILINE), (
        "the first code cell sets RESULTS_DIR = None"
    )
    assert sum("RESULTS_DIR" in source for source in code) == 2  # set once, read once (results_dir)
    long = [source.splitlines()[0] for source in code if len(source.splitlines()) > MAX_CELL_LINES]
    assert not long, f"cells longer than {MAX_CELL_LINES} lines (move the code into the package): {long}"
    assert any("save_figure(" in source for source in code), "the notebook exports no figure"
