"""A phase run in JupyterLab leaves its executed notebook in the run folder, written by its own kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

from runbook_lib.drill import NOTEBOOKS_DIR
from runbook_lib.kernel_record import KernelRecord


def _notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """Write a notebook of (kind, source) cells, as JupyterLab saves one, and return its path."""
    notebook = nbformat.v4.new_notebook()
    for kind, source in cells:
        notebook.cells.append(nbformat.v4.new_code_cell(source) if kind == "code"
                              else nbformat.v4.new_markdown_cell(source))
    nbformat.write(notebook, path)
    return path


def _outputs(document: dict[str, Any]) -> list[tuple[int | None, list[dict[str, Any]]]]:
    """Return each code cell's execution count and outputs, as nbformat reads them (multi-line text joined)."""
    notebook = nbformat.reads(json.dumps(document), as_version=4)
    return [(c.execution_count, [json.loads(json.dumps(o)) for o in c.outputs])
            for c in notebook.cells if c.cell_type == "code"]


def test_each_cell_gets_what_its_latest_execution_published(tmp_path: Path) -> None:
    source = _notebook(tmp_path / "lab.ipynb", [("markdown", "# Phase"), ("code", "a = 1"), ("code", "print(a)"),
                                                ("code", "show()")])
    record = KernelRecord(tmp_path / "run" / "notebooks" / "00_preflight.ipynb", source)
    record.published("execute_input", {"code": "print(a)", "execution_count": 1}, "m1")
    record.published("stream", {"name": "stdout", "text": "first\n"}, "m1")
    record.published("execute_input", {"code": "print(a)\n", "execution_count": 2}, "m2")  # run again
    record.published("stream", {"name": "stdout", "text": "1\n"}, "m2")
    record.published("stream", {"name": "stdout", "text": "2\n"}, "m2")
    record.published("execute_input", {"code": "show()", "execution_count": 3}, "m3")
    record.published("display_data", {"data": {"text/plain": "0/19"}, "metadata": {},
                                      "transient": {"display_id": "bar"}}, "m3")
    record.published("update_display_data", {"data": {"text/plain": "19/19"}, "metadata": {},
                                             "transient": {"display_id": "bar"}}, "m3")
    record.published("error", {"ename": "ConfirmationRequired", "evalue": "waits", "traceback": ["note", "waits"]},
                     "m3")
    record.published("stream", {"name": "stdout", "text": "not ours\n"}, "comm-message")

    path = record.write()

    document = json.loads(path.read_text())
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))
    assert _outputs(document) == [
        (None, []),  # never run: as it was saved
        (2, [{"output_type": "stream", "name": "stdout", "text": "1\n2\n"}]),
        (3, [{"output_type": "display_data", "data": {"text/plain": "19/19"}, "metadata": {}},
             {"output_type": "error", "ename": "ConfirmationRequired", "evalue": "waits",
              "traceback": ["note", "waits"]}]),
    ]
    assert "".join(document["cells"][0]["source"]) == "# Phase"


def test_a_cell_run_before_the_record_began_keeps_its_saved_outputs_and_new_code_is_added(tmp_path: Path) -> None:
    saved = nbformat.v4.new_notebook()
    saved.cells = [nbformat.v4.new_code_cell("params = 1", execution_count=4,
                                             outputs=[nbformat.v4.new_output("stream", text="saved\n")])]
    source = tmp_path / "lab.ipynb"
    nbformat.write(saved, source)
    record = KernelRecord(tmp_path / "kept.ipynb", source)
    record.begin("earlier-1", "params = 1", 1, seen=False)
    record.published("execute_input", {"code": "ctx.ledger.state", "execution_count": 2}, "m2")
    record.published("execute_result", {"data": {"text/plain": "RunState()"}, "metadata": {}, "execution_count": 2},
                     "m2")
    record.published("execute_input", {"code": "noisy()", "execution_count": 3}, "m3")
    record.published("stream", {"name": "stdout", "text": "gone\n"}, "m3")
    record.published("clear_output", {"wait": True}, "m3")
    record.published("stream", {"name": "stdout", "text": "kept\n"}, "m3")

    document = record.notebook()

    assert _outputs(document) == [
        (1, [{"output_type": "stream", "name": "stdout", "text": "saved\n"}]),
        (2, [{"output_type": "execute_result", "data": {"text/plain": "RunState()"}, "metadata": {},
              "execution_count": 2}]),
        (3, [{"output_type": "stream", "name": "stdout", "text": "kept\n"}]),
    ]
    assert [c["source"] for c in document["cells"][1:]] == ["ctx.ledger.state", "noisy()"]


def test_a_live_kernel_writes_the_phase_notebook_after_every_cell(tmp_path: Path) -> None:
    lab_copy = _notebook(tmp_path / "00_preflight.ipynb", [
        ("code", "run_dir = " + repr(str(tmp_path / "run"))),
        ("code", "from runbook_lib import kernel_record\n"
                 f"kernel_record.record_phase(run_dir, '00_preflight', {str(NOTEBOOKS_DIR / '00_preflight.ipynb')!r})\n"
                 "print('recording')"),
        ("code", "from IPython.display import display, HTML\ndisplay(HTML('<b>table</b>'))\nprint('checked')"),
        ("code", "1 / 0"),
    ])
    kept = tmp_path / "run" / "notebooks" / "00_preflight.ipynb"
    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, "JPY_SESSION_NAME": str(lab_copy)})
    try:
        sources = [c.source for c in nbformat.read(lab_copy, as_version=4).cells]
        for source in sources[:3]:
            client.execute_interactive(source, timeout=60)
        after_three = json.loads(kept.read_text())
        client.execute_interactive(sources[3], timeout=60)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

    outputs = _outputs(after_three)
    assert [count for count, _ in outputs] == [1, 2, 3, None]
    assert outputs[1][1] == [{"output_type": "stream", "name": "stdout", "text": "recording\n"}]
    assert [o["output_type"] for o in outputs[2][1]] == ["display_data", "stream"]
    assert outputs[2][1][0]["data"]["text/html"] == "<b>table</b>"
    final = _outputs(json.loads(kept.read_text()))
    assert final[3][0] == 4 and final[3][1][0]["ename"] == "ZeroDivisionError"


@pytest.mark.parametrize("phase", ["00_preflight", "06_batch_replication"])
def test_the_committed_notebook_stands_in_when_the_kernel_serves_none(tmp_path: Path, phase: str) -> None:
    record = KernelRecord(tmp_path / f"{phase}.ipynb", NOTEBOOKS_DIR / f"{phase}.ipynb")

    document = record.notebook()

    committed = json.loads((NOTEBOOKS_DIR / f"{phase}.ipynb").read_text())
    assert [c["source"] for c in document["cells"]] == [c["source"] for c in committed["cells"]]
