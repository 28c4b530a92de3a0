"""JupyterLab on a run folder (`runbook lab`): the analyst's notebooks, their defaults, and what the lab keeps.

A lab session has one parameter file and one run folder. `runbook lab` names both to every kernel
through two environment variables, which each notebook's parameters cell reads as its default
(papermill's parameters still override them). Without `--params` the lab is a drill: it starts the
embedded backend with a seeded vault; with it, the lab reaches the accounts the file names.

The analyst works on copies of the phase notebooks in the run folder's `lab/`. Each phase's kernel
writes its executed notebook to the run folder's `notebooks/` after every cell (`kernel_record`),
where headless runs keep theirs, so `evidence.html` is built from one layout whichever way the
phases ran (`runbook evidence RUN_DIR`, and the lab when it stops). A phase notebook's kernel
shuts down when the phase finishes, unless the lab keeps kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runbook_lib.drill import DRILL_PARAMS, NOTEBOOKS_DIR
from runbook_lib.errors import UsageError
from runbook_lib.ledger import LEDGER_FILE

__all__ = [
    "KEEP_KERNELS_ENV",
    "LAB_FOLDER",
    "LAB_TOKEN_ENV",
    "LAB_URL_ENV",
    "PARAMS_ENV",
    "RUN_DIR_ENV",
    "has_display",
    "lab_settings",
    "prepare_lab_folder",
    "run_lab",
    "shut_down_own_kernel",
]

# Read by every phase notebook's parameters cell as the default of `params_file` and `run_dir`.
PARAMS_ENV = "RUNBOOK_PARAMS"
RUN_DIR_ENV = "RUNBOOK_RUN_DIR"
# Where a kernel reaches the lab's server to shut itself down when its phase is finished.
LAB_URL_ENV = "RUNBOOK_LAB_URL"
LAB_TOKEN_ENV = "RUNBOOK_LAB_TOKEN"
# "1": kernels stay up after their phase finishes (runbook lab --keep-kernels).
KEEP_KERNELS_ENV = "RUNBOOK_KEEP_KERNELS"
# The run folder's subfolder holding the notebooks the analyst works on.
LAB_FOLDER = "lab"


def has_display() -> bool:
    """Return whether a browser can be opened here: always on macOS and Windows, with X or Wayland on Linux."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def prepare_lab_folder(run_dir: Path) -> Path:
    """Return the run folder's `lab/`, holding a copy of every phase notebook (copies already there are kept)."""
    folder = run_dir / LAB_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        target = folder / source.name
        if not target.exists():  # the analyst's outputs of an earlier session stay
            shutil.copyfile(source, target)
    return folder


def lab_settings(folder: Path) -> Path:
    """Write JupyterLab's settings overrides for a lab session into `folder` and return it.

    Starts from the installation's own application settings (kept as they are), and adds: closing a
    notebook shuts its kernel down; no offer to fetch news from the internet.
    """
    from jupyterlab.commands import get_app_dir

    installed = Path(get_app_dir()) / "settings"
    if installed.is_dir():
        shutil.copytree(installed, folder, dirs_exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "overrides.json"
    overrides = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    overrides.setdefault("@jupyterlab/notebook-extension:tracker", {}).update({"kernelShutdown": True})
    # No question about fetching news from the internet in the middle of a recovery.
    overrides.setdefault("@jupyterlab/apputils-extension:notification", {}).update({"fetchNews": "false"})
    path.write_text(json.dumps(overrides, indent=2), encoding="utf-8")
    return folder


def _own_kernel_id() -> str | None:
    """Return the id of the Jupyter kernel this code runs in (None outside one)."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).stem  # Jupyter names it kernel-<id>.json
    except Exception:  # not in a kernel started by a Jupyter server
        return None
    return name.removeprefix("kernel-") if name.startswith("kernel-") else None


def _lab_request(method: str, path: str) -> Any:
    """Call the lab's REST API with its token and return the decoded answer (None when empty)."""
    url = os.environ[LAB_URL_ENV].rstrip("/") + path
    request = urllib.request.Request(url, method=method,
                                     headers={"Authorization": f"token {os.environ.get(LAB_TOKEN_ENV, '')}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read()
    return json.loads(body) if body else None


def _end_sessions_of(kernel_id: str) -> None:
    """Ask the lab to end the sessions of a kernel, which shuts the kernel down (the notebook shows No Kernel)."""
    try:
        sessions = _lab_request("GET", "/api/sessions")
    except (OSError, ValueError) as error:
        print(f"this kernel could not reach the lab to shut itself down ({error}); close the notebook to do it",
              file=sys.stderr)
        return
    for session in sessions:
        if session.get("kernel", {}).get("id") == kernel_id:
            with contextlib.suppress(OSError):  # the kernel, and this very request, may end before the answer
                _lab_request("DELETE", f"/api/sessions/{session['id']}")


def shut_down_own_kernel(delay_seconds: float = 1.0) -> bool:
    """Shut this kernel down shortly, once its last cell has answered; return whether it will be.

    Only in a lab session started by `runbook lab` without --keep-kernels: a phase's kernel has
    nothing left to do once the phase finished, and nine idle kernels would otherwise stay up.
    """
    if not os.environ.get(LAB_URL_ENV) or os.environ.get(KEEP_KERNELS_ENV) == "1":
        return False
    kernel_id = _own_kernel_id()
    if kernel_id is None:
        return False
    timer = threading.Timer(delay_seconds, _end_sessions_of, args=(kernel_id,))
    timer.daemon = True
    timer.start()
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _lab_port(requested: int) -> int:
    """Return the port JupyterLab listens on: the one asked for, or a free one for 0."""
    if requested == 0:
        return _free_port()
    if not _port_is_free(requested):
        raise UsageError(f"--lab-port {requested} is in use on 127.0.0.1; choose another (0 picks a free one)")
    return requested


def _run_folder(out: Path | None, embedded: bool) -> Path:
    """Return the lab session's run folder: the one named, or a new runs/lab-<time>."""
    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return (Path("runs") / f"lab-{stamp}").resolve()
    folder = out.resolve()
    if embedded and (folder / LEDGER_FILE).exists():
        raise UsageError(
            f"run folder {folder} holds a run made against an earlier embedded backend; this lab starts a new, "
            "empty one where that run's resources do not exist. Leave out --out for a new run folder, or name "
            "a new one (with --params, a lab resumes a run against the accounts the file names)")
    return folder


# Where the lab opens: the first phase.
_FIRST_NOTEBOOK = "/lab/tree/00_preflight.ipynb"


def _jupyter_command(lab_dir: Path, port: int, token: str, settings: Path, open_browser: bool) -> list[str]:
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter") or "jupyter"
    command = [
        jupyter, "lab", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={lab_dir}", f"--LabApp.default_url={_FIRST_NOTEBOOK}",
        f"--IdentityProvider.token={token}", f"--LabApp.app_settings_dir={settings}",
    ]
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI machines often run as root
    return command


@contextlib.contextmanager
def _drill_world(args: argparse.Namespace, run_dir: Path) -> Iterator[dict[str, str]]:
    """Start the embedded backend with a seeded vault for the session, and yield the environment that reaches it."""
    from runbook_lib.embedded.seed import seed_vault
    from runbook_lib.embedded.server import start_backend

    with start_backend(port=args.port, config_file=run_dir / "aws-config") as backend:
        truth = seed_vault(backend.endpoint, args.objects)
        truth.write(run_dir / "ground_truth.json")
        print(f"embedded AWS at {backend.endpoint}; vault seeded with {truth.counts()['source_versions']} versions")
        yield backend.environ()


def _serve(command: list[str], env: dict[str, str]) -> int:
    """Run JupyterLab until it stops; Ctrl-C or SIGTERM stop it the way Jupyter stops on its own."""
    process = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                process.terminate()  # its kernels are shut down, as they are on Jupyter's own Ctrl-C
    finally:
        signal.signal(signal.SIGTERM, previous)


def _keep_evidence(run_dir: Path) -> None:
    """After the lab stops: evidence.html from the executed notebooks the phases' kernels wrote."""
    from runbook_lib import evidence

    if (run_dir / LEDGER_FILE).exists():
        print(f"evidence: {evidence.build_evidence(run_dir)}")


def run_lab(args: argparse.Namespace) -> int:
    """`runbook lab`: JupyterLab on a run folder, with the embedded drill world or against the accounts of --params."""
    from runbook_lib.params import load_params

    embedded = args.params is None
    params_file = (Path(args.params) if args.params else DRILL_PARAMS).resolve()
    load_params(params_file)  # every parameter problem before anything starts
    run_dir = _run_folder(args.out, embedded)
    port = _lab_port(args.lab_port)
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_urlsafe(24)
    run_dir.mkdir(parents=True, exist_ok=True)
    lab_dir = prepare_lab_folder(run_dir)
    env = dict(os.environ)
    env.update({PARAMS_ENV: str(params_file), RUN_DIR_ENV: str(run_dir),
                LAB_URL_ENV: f"http://127.0.0.1:{port}/", LAB_TOKEN_ENV: token})
    if args.keep_kernels:
        env[KEEP_KERNELS_ENV] = "1"
    open_browser = has_display() and not args.no_browser
    with contextlib.ExitStack() as stack:
        if embedded:
            env.update(stack.enter_context(_drill_world(args, run_dir)))
        settings = lab_settings(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runbook-lab-"))))
        print(f"parameters: {params_file}")
        print(f"run folder: {run_dir} (notebooks in {lab_dir})")
        print(f"JupyterLab: http://127.0.0.1:{port}{_FIRST_NOTEBOOK}?token={token}", flush=True)
        code = _serve(_jupyter_command(lab_dir, port, token, settings, open_browser), env)
    _keep_evidence(run_dir)
    return 0 if code in (0, -signal.SIGTERM) else code
