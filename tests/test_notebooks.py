"""Executes every notebook top to bottom, as a user would."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
COLAB = NOTEBOOK_DIR / "colab.ipynb"  # run by its own test below, twice
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if p != COLAB)

pytestmark = pytest.mark.slow  # each notebook trains models


def _execute(path, cwd) -> list[dict]:
    """Runs the notebook in a fresh kernel; its code cells' outputs, none of them an error."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    return outputs


def _text(outputs) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    # The kernel sees the one CPU device a user's laptop has, not the 8 simulated ones the
    # rest of the suite uses: 8 device threads on 2 busy cores can starve XLA's collectives.
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    _execute(path, tmp_path)


def test_colab_notebook_runs_off_colab_and_resumes(tmp_path, monkeypatch):
    """With its switch off (no google.colab here) the Colab notebook trains a few steps on
    the embedded digits; run again on the same workdir, as after a disconnected runtime,
    it resumes from the checkpoint instead of starting afresh."""
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    workdir = tmp_path / "workdir"
    monkeypatch.setenv("GENJAX_NOTEBOOK_WORKDIR", str(workdir))
    first = _text(_execute(COLAB, tmp_path))
    assert "backend: cpu" in first and "Resumed from" not in first
    assert "trained to step 10 with conv_impl 'phase'" in first  # 'auto' on the CPU
    assert json.loads((workdir / "config.json").read_text())["model"]["conv_impl"] == "phase"
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["10", "5"]
    assert (workdir / "samples" / "step_000010.png").exists()
    again = _text(_execute(COLAB, tmp_path))
    assert f"Resumed from {workdir}/checkpoints/10 (step 10)" in again
    assert "trained to step 10" in again
