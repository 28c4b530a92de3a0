"""`runbook lab` and `runbook evidence` without a browser: one parameter file and run folder per session,
read by every notebook; a new run folder per drill session; kernels that end with their phase; and
evidence.html built from a run folder at any time."""

from __future__ import annotations

import fcntl
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from runbook_lib import cli, evidence, lab
from runbook_lib.drill import DRILL_PARAMS, NOTEBOOKS_DIR, phase_names
from runbook_lib.errors import RunStateError, UsageError
from runbook_lib.ledger import open_ledger
from runbook_lib.run_lock import LOCK_FILE

PHASES = phase_names()


def _parameters(notebook: nbformat.NotebookNode) -> dict[str, Any]:
    """Return params_file and run_dir as a kernel has them after the parameters (and papermill's injected) cell."""
    tags = [cell.metadata.get("tags", []) for cell in notebook.cells]
    last = "injected-parameters" if any("injected-parameters" in t for t in tags) else "parameters"
    namespace: dict[str, Any] = {}
    for cell, cell_tags in zip(notebook.cells, tags, strict=True):
        if cell.cell_type == "code":
            exec(cell.source, namespace)
        if last in cell_tags:
            break
    return {name: namespace[name] for name in ("params_file", "run_dir")}


@pytest.mark.parametrize("phase", PHASES)
def test_every_notebook_works_on_the_lab_session_s_parameter_file_and_run_folder(
    phase: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    committed = nbformat.read(NOTEBOOKS_DIR / f"{phase}.ipynb", as_version=4)
    assert _parameters(committed) == {"params_file": "../parameters/drill.yaml", "run_dir": "../runs/interactive"}

    monkeypatch.setenv(lab.PARAMS_ENV, "/srv/recovery/my-recovery.yaml")
    monkeypatch.setenv(lab.RUN_DIR_ENV, "/srv/recovery/runs/recovery-1")
    assert _parameters(committed) == {"params_file": "/srv/recovery/my-recovery.yaml",
                                      "run_dir": "/srv/recovery/runs/recovery-1"}

    injected = parameterize_notebook(load_notebook_node(str(NOTEBOOKS_DIR / f"{phase}.ipynb")),
                                     {"params_file": str(DRILL_PARAMS), "run_dir": str(tmp_path)})
    assert _parameters(injected) == {"params_file": str(DRILL_PARAMS), "run_dir": str(tmp_path)}


def test_a_drill_lab_gets_a_new_run_folder_and_refuses_one_of_an_earlier_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert lab._run_folder(None, embedded=True).parent == tmp_path / "runs"
    assert lab._run_folder(None, embedded=True).name.startswith("lab-")
    old_run = tmp_path / "runs" / "lab-earlier"
    open_ledger(old_run, create=True)

    with pytest.raises(UsageError, match="earlier embedded backend"):
        lab._run_folder(old_run, embedded=True)
    assert lab._run_folder(old_run, embedded=False) == old_run  # real accounts: the run resumes


def test_runbook_lab_with_bad_parameters_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_id: drill\nregion: mars-1\n")

    code = cli.main(["lab", "--params", str(bad), "--out", str(tmp_path / "run"), "--no-browser"])

    assert code == 2
    assert "region" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_busy_lab_port_is_refused_before_anything_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UsageError, match="--lab-port"):
            lab._lab_port(busy.getsockname()[1])
    assert lab._lab_port(0) > 0


@pytest.mark.parametrize(("platform", "environment", "expected"), [
    ("linux", {}, False), ("linux", {"DISPLAY": ":0"}, True), ("linux", {"WAYLAND_DISPLAY": "wayland-0"}, True),
    ("darwin", {}, True),
])
def test_a_browser_is_opened_only_where_there_is_a_display(
    monkeypatch: pytest.MonkeyPatch, platform: str, environment: dict[str, str], expected: bool,
) -> None:
    monkeypatch.setattr(lab.sys, "platform", platform)
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert lab.has_display() is expected


def test_the_jupyter_command_serves_the_lab_folder_without_a_browser_when_asked(tmp_path: Path) -> None:
    command = lab._jupyter_command(tmp_path / "lab", 18888, "secret", tmp_path / "settings", open_browser=False)

    assert command[1] == "lab" and "--no-browser" in command
    assert f"--ServerApp.root_dir={tmp_path / 'lab'}" in command
    assert "--ServerApp.port_retries=0" in command  # the port the kernels are told is the one it listens on
    assert "--IdentityProvider.token=secret" in command
    assert "--no-browser" not in lab._jupyter_command(tmp_path, 1, "t", tmp_path, open_browser=True)


def test_lab_settings_shut_a_kernel_with_its_notebook_and_keep_the_installation_s_own(tmp_path: Path) -> None:
    folder = lab.lab_settings(tmp_path / "settings")

    overrides = json.loads((folder / "overrides.json").read_text())
    assert overrides["@jupyterlab/notebook-extension:tracker"]["kernelShutdown"] is True
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"


def test_the_lab_folder_holds_every_phase_and_keeps_the_analyst_s_work(tmp_path: Path) -> None:
    folder = lab.prepare_lab_folder(tmp_path)
    (folder / "00_preflight.ipynb").write_text("{}")

    lab.prepare_lab_folder(tmp_path)

    assert sorted(p.stem for p in folder.glob("*.ipynb")) == PHASES
    assert (folder / "00_preflight.ipynb").read_text() == "{}"
    assert not (tmp_path / "notebooks").exists()  # no phase ran: nothing that looks like one did


class _LabServer(BaseHTTPRequestHandler):
    """Answers the two calls a kernel makes to end its own session, and remembers them."""

    calls: ClassVar[list[tuple[str, str, str]]] = []

    def _answer(self, body: bytes) -> None:
        self.calls.append((self.command, self.path, self.headers.get("Authorization", "")))
        self.send_response(200 if body else 204)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(json.dumps([{"id": "s-other", "kernel": {"id": "k-other"}},
                                 {"id": "s-mine", "kernel": {"id": "k-mine"}}]).encode())

    def do_DELETE(self) -> None:
        self._answer(b"")

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def lab_server() -> Iterator[str]:
    _LabServer.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LabServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_finished_phase_ends_its_own_kernel_session_and_no_other(
    lab_server: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lab, "_own_kernel_id", lambda: "k-mine")
    monkeypatch.delenv(lab.LAB_URL_ENV, raising=False)
    assert lab.shut_down_own_kernel(delay_seconds=0) is False  # not a lab session: nothing to end

    monkeypatch.setenv(lab.LAB_URL_ENV, lab_server)
    monkeypatch.setenv(lab.LAB_TOKEN_ENV, "secret")
    monkeypatch.setenv(lab.KEEP_KERNELS_ENV, "1")
    assert lab.shut_down_own_kernel(delay_seconds=0) is False
    monkeypatch.delenv(lab.KEEP_KERNELS_ENV)
    assert lab.shut_down_own_kernel(delay_seconds=0) is True

    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join(timeout=10)
    assert _LabServer.calls == [("GET", "/api/sessions", "token secret"),
                                ("DELETE", "/api/sessions/s-mine", "token secret")]


def _run_folder_with_a_phase(folder: Path) -> Path:
    """Return a run folder whose phase 00 ran (ledger, summary, executed notebook with an output)."""
    ledger = open_ledger(folder, create=True)
    ledger.start_phase("00_preflight")
    ledger.end_phase("00_preflight", "ok")
    evidence.write_summary(folder, "INCOMPLETE", {}, reason="verification has not run yet")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("guide.finish_phase(ctx)", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", text="✔ phase 00_preflight complete in 0.4 s\n")])]
    (folder / "notebooks").mkdir()
    nbformat.write(notebook, folder / "notebooks" / "00_preflight.ipynb")
    return folder


def test_runbook_evidence_builds_evidence_html_from_a_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    run = _run_folder_with_a_phase(tmp_path / "run")

    assert cli.main(["evidence", str(run)]) == 0

    html = (run / "evidence.html").read_text(encoding="utf-8")
    assert "Verdict: INCOMPLETE" in html and "phase 00_preflight complete" in html
    assert f"evidence: {run / 'evidence.html'}" in capsys.readouterr().out
    assert cli.main(["evidence", str(tmp_path / "elsewhere")]) == 2


def test_evidence_is_built_while_a_phase_runs_without_touching_its_summary(tmp_path: Path) -> None:
    run = _run_folder_with_a_phase(tmp_path / "run")
    summary_before = (run / "summary.json").read_text()
    open_ledger(run).start_phase("01_recovery_bucket")  # a kernel is in phase 01 and holds the lock
    with open(run / LOCK_FILE, "a+", encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)

        evidence.build_evidence(run)

    assert (run / "summary.json").read_text() == summary_before
    assert "phase 00_preflight complete" in (run / "evidence.html").read_text(encoding="utf-8")


def test_evidence_is_built_again_when_the_verdict_changes_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = _run_folder_with_a_phase(tmp_path / "run")
    evidence.write_summary(run, "PASS", {"expected": 3, "recovered": 3})
    export = evidence.export_html
    exports: list[str] = []

    def export_while_07_withdraws(folder: Path) -> Path:
        path = export(folder)
        exports.append(json.loads((run / "summary.json").read_text())["verdict"])
        if len(exports) == 1:
            evidence.write_summary(run, "INCOMPLETE", {}, reason="verification started")
        return path

    monkeypatch.setattr(evidence, "export_html", export_while_07_withdraws)

    evidence.build_evidence(run)

    assert exports == ["PASS", "INCOMPLETE"]
    assert "Verdict: INCOMPLETE" in (run / "evidence.html").read_text(encoding="utf-8")


def test_build_evidence_names_a_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(RunStateError, match="not the folder of a started run"):
        evidence.build_evidence(tmp_path)
