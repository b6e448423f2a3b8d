"""The five tutorial notebooks: each .ipynb is its jupytext .py, and each runs top to bottom with small settings."""

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the test extra installs jupytext")
nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")

TUTORIALS = sorted((Path(__file__).resolve().parent.parent / "docs" / "tutorials").glob("*.py"))


def test_there_are_the_five_parts_of_the_series():
    assert [path.stem for path in TUTORIALS] == ["01_score_matching", "02_diffusion", "03_wavegrad",
                                                 "04_fast_sampling", "05_guidance"]


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda path: path.stem)
def test_the_notebook_is_its_paired_script_without_outputs(script):
    """``jupytext --sync`` keeps the pair; a hand edit of one side alone shows here."""
    notebook = jupytext.read(script.with_suffix(".ipynb"))
    from_script = jupytext.read(script)
    assert [(cell.cell_type, cell.source) for cell in notebook.cells] == [
        (cell.cell_type, cell.source) for cell in from_script.cells]
    assert all(not cell.get("outputs") for cell in notebook.cells), "executed outputs are not committed"


@pytest.mark.slow
@pytest.mark.parametrize("script", TUTORIALS, ids=lambda path: path.stem)
def test_the_notebook_runs_top_to_bottom_with_small_settings(script, tmp_path, monkeypatch):
    monkeypatch.setenv("SCORELAB_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("SCORELAB_TUTORIAL_DIR", str(tmp_path))
    notebook = jupytext.read(script)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    images = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert images, "every part draws figures"
