"""Every phase notebook runs clean under nbval (`pytest --nbval-lax`) against the embedded backend.

The notebooks are copied into a temporary folder with their parameters injected by papermill's own
parameterizer, so every cell is the committed one plus papermill's `injected-parameters` cell. One
pytest subprocess then runs all copies in phase order: the phases share one run folder through its
ledger, so they must run one after the other, in a single invocation.

The kernels run as they would in JupyterLab (RUNBOOK_HEADLESS unset, so progress shows as widgets);
`confirm_job=True` stands in for the operator pressing the Confirm button in phase 06.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from runbook_lib.drill import DRILL_PARAMS, NOTEBOOKS_DIR, _drill_parameters, phase_names
from runbook_lib.embedded.seed import GroundTruth, seed_vaults
from runbook_lib.embedded.server import EmbeddedBackend, start_backend
from runbook_lib.guide import HEADLESS_ENV

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebooks")]

PHASES = phase_names()
# Phases whose notebooks take `confirm_job`; confirming is what a headless test must do to get past 06.
CONFIRMING_PHASES = ("06", "07")
NBVAL_TIMEOUT_SECONDS = 600


def _reset_moto(endpoint: str) -> None:
    """Drop every account's resources: moto's state is process-global and other modules share it."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def parameters_for(phase: str, run_dir: Path, params_file: Path = DRILL_PARAMS) -> dict[str, Any]:
    """Return the papermill parameters a phase's copy gets: absolute paths, and the confirmation."""
    parameters: dict[str, Any] = {"params_file": str(params_file.resolve()), "run_dir": str(run_dir.resolve())}
    if phase.startswith(CONFIRMING_PHASES):
        parameters["confirm_job"] = True
    return parameters


def parameterized_copy(phase: str, run_dir: Path, params_file: Path = DRILL_PARAMS) -> nbformat.NotebookNode:
    """Return the phase notebook with its parameters injected exactly as papermill injects them."""
    # Loaded as papermill loads it (its loader adds the metadata its parameterizer expects).
    notebook = load_notebook_node(str(NOTEBOOKS_DIR / f"{phase}.ipynb"))
    return parameterize_notebook(notebook, parameters_for(phase, run_dir, params_file))


@dataclass(frozen=True)
class NbvalRun:
    """One `pytest --nbval-lax` subprocess: its exit code, output and per-cell results in order."""

    returncode: int
    output: str
    cells: list[tuple[str, str, str]]  # (notebook file, cell name, outcome) in execution order

    def outcomes(self, notebook: str) -> list[str]:
        """Return the outcomes of one notebook's cells."""
        return [outcome for name, _, outcome in self.cells if name == notebook]


def _junit_cells(report: Path) -> list[tuple[str, str, str]]:
    cells = []
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        cells.append((case.get("classname", ""), case.get("name", ""), failed[0] if failed else "passed"))
    return cells


def run_nbval(notebooks: list[Path], workdir: Path, backend: EmbeddedBackend, report_name: str) -> NbvalRun:
    """Run `pytest --nbval-lax` on the notebooks, in the given order, in a subprocess."""
    report = workdir / report_name
    # The kernels reach only the backend (no AWS_* of the caller), and no pytest setting of this run
    # leaks into the inner one.
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "PYTEST_"))}
    env.update(backend.environ())
    env.pop(HEADLESS_ENV, None)
    command = [
        # -x: a later phase run after a failed one only adds noise (and 08 would clean up after it).
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
        "-x", "-v", f"--junitxml={report}", *[str(path) for path in notebooks],
    ]
    answer = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False,
                            timeout=NBVAL_TIMEOUT_SECONDS)
    cells = _junit_cells(report) if report.exists() else []
    return NbvalRun(answer.returncode, answer.stdout + answer.stderr, cells)


@dataclass(frozen=True)
class Workspace:
    """The parameterized copies, the run folder they share, the backend they reach, and what it was seeded with."""

    folder: Path
    run_dir: Path
    backend: EmbeddedBackend
    truths: list[GroundTruth]

    def copy_of(self, phase: str) -> Path:
        """Return the path of a phase's parameterized copy."""
        return self.folder / f"{phase}.ipynb"


BUCKETS = 3
VERSIONS_PER_BUCKET = 20  # the fewest a seeded bucket holds: kernels, not versions, set the time


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """Start a backend, seed three vault buckets, and write every phase's copy, naming all three, next to a pytest.ini.

    Three buckets rather than one: the phases run every step once per bucket pair, and the one-bucket
    form is one such pair (the drills and the browser test run that form through the same notebooks).
    """
    root = tmp_path_factory.mktemp("nbval")
    folder, run_dir = root / "notebooks", root / "run"
    folder.mkdir()
    # An ini file of its own makes the copies' folder the inner pytest's rootdir, whatever lies above it.
    (folder / "pytest.ini").write_text("[pytest]\n")
    params_file = _drill_parameters(DRILL_PARAMS, None, 1, root, BUCKETS)
    for phase in PHASES:
        nbformat.write(parameterized_copy(phase, run_dir, params_file), folder / f"{phase}.ipynb")
    backend = start_backend(config_file=root / "aws-config")
    try:
        _reset_moto(backend.endpoint)
        truths = seed_vaults(backend.endpoint, BUCKETS, VERSIONS_PER_BUCKET, random_seed=2)
        yield Workspace(folder, run_dir, backend, truths)
    finally:
        try:
            _reset_moto(backend.endpoint)
        finally:
            backend.stop()


@pytest.fixture(scope="module")
def full_run(workspace: Workspace) -> NbvalRun:
    """Run every phase's copy, in phase order, in one nbval invocation."""
    copies = sorted(workspace.copy_of(phase) for phase in PHASES)
    return run_nbval(copies, workspace.folder, workspace.backend, "full-run.xml")


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Return a notebook's code cells."""
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def code_cell_count(path: Path) -> int:
    """Return how many code cells, hence nbval items, a notebook file has."""
    return len(code_cells(nbformat.read(path, as_version=4)))


@pytest.mark.parametrize("phase", PHASES)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell_first(phase: str) -> None:
    notebook = nbformat.read(NOTEBOOKS_DIR / f"{phase}.ipynb", as_version=4)
    cells = code_cells(notebook)
    assert [c.execution_count for c in cells] == [None] * len(cells)
    assert [c.outputs for c in cells] == [[]] * len(cells)
    assert "parameters" in cells[0].metadata.get("tags", [])
    names = {line.split("=")[0].strip() for line in cells[0].source.splitlines() if "=" in line}
    assert {"params_file", "run_dir"} <= names


@pytest.mark.parametrize("phase", PHASES)
def test_parameterized_copy_keeps_every_cell_and_adds_one_after_parameters(phase: str, tmp_path: Path) -> None:
    original = nbformat.read(NOTEBOOKS_DIR / f"{phase}.ipynb", as_version=4)
    copy = parameterized_copy(phase, tmp_path / "run")
    nbformat.validate(copy)
    injected = [i for i, cell in enumerate(copy.cells) if "injected-parameters" in cell.metadata.get("tags", [])]
    parameters_at = next(i for i, cell in enumerate(original.cells) if "parameters" in cell.metadata.get("tags", []))
    assert injected == [parameters_at + 1]
    kept = copy.cells[: injected[0]] + copy.cells[injected[0] + 1 :]
    assert [(c.id, c.cell_type, c.metadata.get("tags", []), c.source) for c in kept] == [
        (c.id, c.cell_type, c.metadata.get("tags", []), c.source) for c in original.cells
    ]
    assert copy.cells[injected[0]].id not in {c.id for c in original.cells}
    source = copy.cells[injected[0]].source
    assert f'run_dir = "{(tmp_path / "run").resolve()}"' in source
    assert f'params_file = "{DRILL_PARAMS.resolve()}"' in source
    assert ("confirm_job = True" in source) is phase.startswith(CONFIRMING_PHASES)


def test_every_notebook_passes_nbval_in_phase_order(full_run: NbvalRun, workspace: Workspace) -> None:
    assert full_run.returncode == 0, full_run.output[-6000:]
    ran_in_order = list(dict.fromkeys(name for name, _, _ in full_run.cells))
    assert ran_in_order == [f"{phase}.ipynb" for phase in PHASES]
    counts = {phase: code_cell_count(workspace.copy_of(phase)) for phase in PHASES}
    for phase, count in counts.items():
        assert full_run.outcomes(f"{phase}.ipynb") == ["passed"] * count, phase
    assert f"{sum(counts.values())} passed" in full_run.output


def test_full_run_verified_the_recovery_and_each_bucket_equals_its_ground_truth(
    full_run: NbvalRun, workspace: Workspace,
) -> None:
    assert full_run.returncode == 0, full_run.output[-6000:]
    summary = json.loads((workspace.run_dir / "summary.json").read_text())
    assert summary["verdict"] == "PASS"
    assert summary["counts"]["missing"] == 0
    assert summary["counts"]["recovered"] == summary["counts"]["expected"] > 0
    truths = workspace.truths
    buckets = [(row["vault_bucket"], row["verdict"], row["expected"], row["recovered"]) for row in summary["buckets"]]
    expected = [truth.counts()["expected"] for truth in truths]
    assert buckets == [(t.vault_bucket, "PASS", count, count) for t, count in zip(truths, expected, strict=True)]
    assert summary["counts"]["recovered"] == summary["counts"]["expected"] == sum(expected)
    assert len(summary["job_attempts"]) == BUCKETS
    versions = pd.read_csv(workspace.run_dir / "details" / "all_versions.csv", dtype=str, keep_default_na=False)
    recovered = versions[versions["category"] == "recovered_identical"]
    for truth in truths:
        mine = recovered[recovered["vault_bucket"] == truth.vault_bucket]
        assert set(zip(mine["key"], mine["version_id"], strict=True)) == {
            (v.key, v.version_id) for v in truth.expected_versions()}


def test_verification_passes_again_after_the_full_run(full_run: NbvalRun, workspace: Workspace) -> None:
    assert full_run.returncode == 0, full_run.output[-6000:]
    (workspace.run_dir / "summary.json").unlink(missing_ok=True)
    again = run_nbval([workspace.copy_of("07_verify")], workspace.folder, workspace.backend, "reverify.xml")
    assert again.returncode == 0, again.output[-6000:]
    assert again.outcomes("07_verify.ipynb") == ["passed"] * code_cell_count(workspace.copy_of("07_verify"))
    assert json.loads((workspace.run_dir / "summary.json").read_text())["verdict"] == "PASS"
