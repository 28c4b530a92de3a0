"""Phase kernels started ahead: each phase still gets a fresh kernel of its own, and none outlives the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from jupyter_core.utils import run_sync

from runbook_lib import phase_kernels
from runbook_lib.phase_kernels import KernelsAhead

PROBE = "import os, sys\nprint(os.getpid(), 'runbook_lib.guide' in sys.modules, 'marker' in globals())\nmarker = 1"


def _alive(kernel: Any) -> bool:
    return bool(run_sync(kernel.is_alive)())


def _run(kernels: KernelsAhead, kernel: Any, folder: Path, name: str) -> tuple[int, bool, bool, Any]:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(PROBE)]
    source, target = folder / f"{name}.ipynb", folder / f"{name}-run.ipynb"
    nbformat.write(notebook, source)
    try:
        papermill.execute_notebook(str(source), str(target), kernel_name="python3", progress_bar=False, km=kernel)
    finally:
        kernels.release(kernel)
    cell = nbformat.read(target, as_version=4).cells[0]
    pid, warmed, reused = cell.outputs[0]["text"].split()
    return int(pid), warmed == "True", reused == "True", cell.execution_count


def test_each_phase_runs_in_a_fresh_kernel_started_ahead_with_the_runbook_imported(tmp_path: Path) -> None:
    handed: list[Any] = []
    with KernelsAhead([], tmp_path) as kernels:
        runs = []
        for number in range(3):
            kernel = kernels.take(another_follows=number < 2)
            handed.append(kernel)
            runs.append(_run(kernels, kernel, tmp_path, f"phase{number}"))

    assert len({pid for pid, *_ in runs}) == 3  # no kernel serves two phases
    assert all(warmed for _, warmed, _, _ in runs)  # the warm-up import ran before the first cell
    assert not any(reused for _, _, reused, _ in runs)  # nothing of an earlier phase is left in the namespace
    assert [count for *_, count in runs] == [1, 1, 1]  # the warm-up is not in the notebook's history
    assert not any(_alive(kernel) for kernel in handed)
    # The warm-up's client and papermill's are both closed with their kernel, none left to the collector.
    assert all(len(kernel.clients_made) == 2 for kernel in handed)
    assert not any(client.channels_running for kernel in handed for client in kernel.clients_made)


def test_a_kernel_started_for_a_phase_that_never_comes_is_shut_down(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), KernelsAhead([], tmp_path) as kernels:
        first = kernels.take(another_follows=True)
        waiting = kernels._next
        kernels.release(first)
        raise RuntimeError("the phase failed")

    assert waiting is not None and not _alive(waiting) and not _alive(first)


def test_a_kernel_that_dies_before_its_phase_fails_the_phase_not_its_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # nbclient stops a kernel it cannot reach and closes its sockets; releasing it afterwards must
    # not raise over the phase's own error (the run would report a socket error, not the phase).
    monkeypatch.setattr(phase_kernels, "_WARM_UP", "import os; os._exit(3)")
    with KernelsAhead([], tmp_path) as kernels:
        kernel = kernels.take(another_follows=False)
        with pytest.raises(RuntimeError, match="Kernel died"):
            _run(kernels, kernel, tmp_path, "phase")

    assert not _alive(kernel)
    assert not any(client.channels_running for client in kernel.clients_made)
