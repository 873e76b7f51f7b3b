"""Execute the notebooks under notebooks/ with a real kernel; a failing cell fails the test."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path):
    if path.name.startswith("02_"):
        pytest.importorskip("stable_baselines3", reason="the RL notebook needs recworld[rl]")
    if path.name.startswith("03_"):
        pytest.importorskip("xllamacpp", reason="the STS notebook runs the embedded LLM: recworld[local]")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    # run from a copy of the layout so the notebook's run folders land in tmp_path
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    (tmp_path / "notebooks").mkdir()
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path / "notebooks")}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "the notebook should show its plots"
