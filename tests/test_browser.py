"""The analyst's JupyterLab in a real browser: `runbook lab`, every phase run from the Run menu, the
Confirm button, the progress bar, the verdict, and the evidence the session leaves in its run folder.

Headless Chromium and its chromedriver come from the distribution's packages (`.ci/run` installs
them when they are missing); selenium drives them and is never asked to download a browser or a
driver. Only where they are not installed is the module skipped, and it says why.

A screenshot is taken after every step. When a step fails, they are written with the failing
page's screenshot and HTML and the lab's log to test-artifacts/browser-<time>/ (or the folder
RUNBOOK_BROWSER_ARTIFACTS names), and the failure message gives the path.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from runbook_lib.drill import DRILL_PARAMS, phase_names

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="headless Chromium and its chromedriver are not installed "
               "(Debian: apt-get install chromium chromium-driver; .ci/run installs them)",
    ),
]

PHASES = phase_names()
# A small vault keeps the whole recovery in the browser to about a minute and a half.
LAB_VERSIONS = 24
# Flags that let headless Chromium run as root in a container with no network beyond this machine.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
)
# Every cell of the active notebook: prompts and outputs are read from the notebook on screen only.
ACTIVE = ".jp-NotebookPanel:not(.lm-mod-hidden)"
PHASE_SECONDS = 120
CONFIRM_LABEL = "Confirm and run the job"
ARTIFACTS_ENV = "RUNBOOK_BROWSER_ARTIFACTS"


def artifacts_folder() -> Path:
    """Return a new folder for the artifacts of a failed browser session."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    base = Path(os.environ[ARTIFACTS_ENV]) if os.environ.get(ARTIFACTS_ENV) else ROOT / "test-artifacts"
    folder = base / f"browser-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Return check()'s first true value, or fail naming what did not happen in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def _child_environment(workdir: Path) -> dict[str, str]:
    """Return the environment of the lab: nothing of this test run's AWS, pytest or runbook settings, Jupyter's own
    folders in the work folder (no user configuration, no runtime files of other servers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTEST_", "RUNBOOK_", "JUPYTER"))}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        folder = workdir / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[name] = str(folder)
    # Cells off screen stay in the page, so the test reads every output without scrolling.
    settings = workdir / "lab-user-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(workdir / "lab-user-settings")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


@dataclass
class Lab:
    """A running `runbook lab`: where it listens, its token, its run folder and its output so far."""

    process: subprocess.Popen[str]
    port: int
    token: str
    run_dir: Path
    log: Path

    @property
    def url(self) -> str:
        """Return the address of the first notebook, as `runbook lab` prints it."""
        found = re.search(r"JupyterLab: (\S+)", self.output())
        assert found, f"runbook lab printed no address:\n{self.output()[-3000:]}"
        return found.group(1)

    def output(self) -> str:
        """Return what the lab printed so far (its own lines, then Jupyter's)."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def api(self, path: str) -> Any:
        """Return the answer of the lab's REST API at `path`."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def ready(self) -> bool:
        """Return whether the lab's server answers (fail at once when the lab has stopped)."""
        if self.process.poll() is not None:
            raise AssertionError(f"runbook lab stopped with {self.process.returncode}:\n{self.output()[-4000:]}")
        try:
            self.api("/api/status")
        except OSError:
            return False
        return True

    def stop(self) -> int:
        """Stop the lab as a terminal would (SIGTERM) and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return int(self.process.returncode)


@contextmanager
def running_lab(workdir: Path, run_dir: Path, arguments: list[str], env: dict[str, str] | None = None) -> Iterator[Lab]:
    """Start `runbook lab --no-browser` on a free port with the given arguments, and stop it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    environment = {**_child_environment(workdir), **(env or {}), "JUPYTER_TOKEN": token}
    log = workdir / "lab.log"
    command = [sys.executable, "-m", "runbook_lib.cli", "lab", "--lab-port", str(port), "--no-browser",
               "--out", str(run_dir), *arguments]
    with open(log, "w", encoding="utf-8") as stream:
        process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=stream, stderr=subprocess.STDOUT,
                                   text=True)
    lab = Lab(process, port, token, run_dir, log)
    try:
        _wait_for("the lab's server answers", lab.ready, timeout=120, every=0.2)
        yield lab
    finally:
        lab.stop()


class LabPage:
    """The JupyterLab page as an analyst uses it: the file browser, the Run menu, buttons and outputs."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        self.screenshots: dict[str, bytes] = {}  # by step, in order; written out only when a step fails

    def script(self, code: str, *arguments: Any) -> Any:
        """Return the value of JavaScript run in the page."""
        return self.driver.execute_script(code, *arguments)

    def kernel_status(self) -> str | None:
        """Return the active notebook's kernel status as its toolbar shows it (idle, busy, ...)."""
        return self.script(f"const e = document.querySelector('{ACTIVE} .jp-Notebook-ExecutionIndicator');"
                           "return e ? e.dataset.status : null;")

    def kernel_ready(self) -> bool:
        """Return whether the notebook in front has its kernel connected and idle, as toolbar and status bar show."""
        status_bar = self.script("return [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                                 ".map(e => e.textContent).join(' ');") or ""
        return self.kernel_status() == "idle" and "| Idle" in status_bar

    def active_tab(self) -> str:
        """Return the name of the document in front."""
        return self.script("const e = document.querySelector('.lm-DockPanel-tabBar .lm-mod-current "
                           ".lm-TabBar-tabLabel'); return e ? e.textContent : '';")

    def open_notebook(self, name: str) -> None:
        """Open a notebook from the file browser (double click), and wait until its kernel is idle."""
        if self.active_tab() != name:
            item = _wait_for(f"{name} in the file browser", lambda: self._listed(name), timeout=30)
            ActionChains(self.driver).double_click(item).perform()
            _wait_for(f"{name} in front", lambda: self.active_tab() == name, timeout=30)
        _wait_for(f"the kernel of {name} idle", self.kernel_ready, timeout=90)

    def _listed(self, name: str) -> Any:
        for item in self.driver.find_elements(By.CSS_SELECTOR, ".jp-DirListing-item"):
            if item.find_element(By.CSS_SELECTOR, ".jp-DirListing-itemText").text == name:
                return item
        return None

    def menu(self, top: str, item: str) -> None:
        """Choose an item of the main menu, as a mouse would, once the item is enabled for the notebook in front."""
        def enabled_item() -> Any:
            labels = self.driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel")
            next(label for label in labels if label.text == top).click()
            entries = [e for e in self.driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-item")
                       if e.find_element(By.CSS_SELECTOR, ".lm-Menu-itemLabel").text == item]
            if entries and "lm-mod-disabled" not in (entries[0].get_attribute("class") or ""):
                return entries[0]
            ActionChains(self.driver).send_keys(Keys.ESCAPE).perform()  # close it, and look again
            return None

        _wait_for(f"menu {top} ▸ {item} enabled", enabled_item, timeout=30, every=0.25).click()

    def focus_notebook(self) -> None:
        """Click the notebook's first cell, as an analyst does before using the Run menu."""
        self.driver.find_element(By.CSS_SELECTOR, f"{ACTIVE} .jp-Cell .jp-InputPrompt").click()

    def prompts(self) -> list[str]:
        """Return the input prompts of the active notebook's code cells ([ ]:, [*]:, [3]:)."""
        return self.script(f"return [...document.querySelectorAll('{ACTIVE} .jp-InputPrompt')]"
                           ".map(e => e.textContent.trim());")

    def wait_until_settled(self, timeout: float = PHASE_SECONDS) -> None:
        """Wait until no cell is queued or running and the kernel has gone idle (or, its phase finished, away)."""
        def settled() -> bool:
            prompts = self.prompts()
            return (not any("*" in p for p in prompts) and any(re.search(r"\d", p) for p in prompts)
                    and self.kernel_status() not in ("busy", "starting", "restarting"))

        stable = 0

        def stays_settled() -> bool:
            nonlocal stable
            stable = stable + 1 if settled() else 0
            return stable >= 3

        _wait_for("the notebook's cells to finish", stays_settled, timeout=timeout, every=0.2)

    def run_all(self) -> None:
        """Run ▸ Run All Cells, and wait until the notebook has settled.

        A Run All chosen in the instant the kernel connects can be dropped by JupyterLab without a
        word (no cell is even queued); the analyst would choose it again, and so does this, once.
        """
        for attempt in range(2):
            self.focus_notebook()
            self.menu("Run", "Run All Cells")
            try:
                _wait_for("Run All to start", lambda: any(re.search(r"[*\d]", p) for p in self.prompts()),
                          timeout=15)
                break
            except AssertionError:
                if attempt:
                    raise
        self.wait_until_settled()

    def outputs(self) -> list[str]:
        """Return the text of every output of the active notebook, in order."""
        return self.script(f"return [...document.querySelectorAll('{ACTIVE} .jp-OutputArea-output')]"
                           ".map(e => e.innerText);")

    def last_cell_output(self) -> str:
        """Return the text of the last code cell's outputs."""
        return self.script(f"const cells = document.querySelectorAll('{ACTIVE} .jp-CodeCell .jp-OutputArea');"
                           "return cells.length ? cells[cells.length - 1].innerText : '';")

    def error_outputs(self) -> list[str]:
        """Return the text of the error and stderr outputs of the active notebook."""
        return self.script(f"return [...document.querySelectorAll('{ACTIVE} .jp-OutputArea-output"
                           "[data-mime-type=\"application/vnd.jupyter.stderr\"]')].map(e => e.innerText);")

    def button(self, label: str) -> Any:
        """Return the button with this label in the active notebook."""
        return _wait_for(f"button {label!r}", lambda: [b for b in self.driver.find_elements(
            By.CSS_SELECTOR, f"{ACTIVE} button") if label in b.text], timeout=30)[0]

    def progress_bars(self) -> list[dict[str, Any]]:
        """Return each ipywidgets progress bar of the active notebook: its filled width in percent and its style."""
        return self.script(f"""return [...document.querySelectorAll('{ACTIVE} .widget-hprogress')].map(e => {{
            const bar = e.querySelector('.progress-bar');
            return {{width: parseFloat(bar.style.width), classes: bar.className}}; }});""")

    def screenshot(self, name: str) -> None:
        """Take a screenshot of the page, kept in memory under the step's name."""
        self.screenshots[f"{len(self.screenshots):02d}-{name}"] = self.driver.get_screenshot_as_png()

    def keep_artifacts(self, lab: Lab, failed: str) -> Path:
        """Write every screenshot so far, the failing page's HTML and the lab's log into a new folder; return it."""
        folder = artifacts_folder()
        try:
            self.screenshot(f"failed-{failed}")
            (folder / f"failed-{failed}.html").write_text(self.driver.page_source, encoding="utf-8")
        except WebDriverException:
            pass  # the browser itself went away: what was taken before still tells the story
        for name, png in self.screenshots.items():
            (folder / f"{name}.png").write_bytes(png)
        (folder / "lab.log").write_text(lab.output(), encoding="utf-8")
        return folder


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPage]:
    """Start headless Chromium through the distribution's chromedriver, with an empty profile."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # selenium-manager must never fetch a browser or a driver
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield LabPage(driver)
    finally:
        driver.quit()


@contextmanager
def step(page: LabPage, lab: Lab, name: str) -> Iterator[None]:
    """Run one step of the analyst's session and take a screenshot; on failure keep the artifacts, and say where."""
    try:
        yield
    except (AssertionError, WebDriverException, StopIteration, IndexError) as failure:
        folder = page.keep_artifacts(lab, name)
        message = f"step {name} failed: {failure}\nscreenshots of every step, the page and the lab's log: {folder}"
        print(message)
        raise AssertionError(message) from failure
    page.screenshot(name)


def _saved_outputs(notebook: Path) -> str:
    """Return the text of every output saved in a notebook file ('' while it does not exist)."""
    if not notebook.exists():
        return ""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (ValueError, KeyError):
        return ""  # caught between two writes
    texts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            texts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def _run_phase(page: LabPage, lab: Lab, phase: str) -> None:
    """Open a phase notebook, Run All Cells, and check that the phase finished without a traceback."""
    page.open_notebook(f"{phase}.ipynb")
    page.run_all()
    _check_finished(page, phase)


def _check_finished(page: LabPage, phase: str) -> None:
    last = page.last_cell_output()
    assert f"✔ phase {phase} complete" in last, last
    assert not any("Traceback" in text for text in page.outputs()), page.error_outputs()


def _confirm_and_follow(page: LabPage) -> None:
    """Phase 06: Run All stops at the gate without a traceback; Confirm; then run from the gate to the end."""
    errors = page.error_outputs()
    assert len(errors) == 1, errors  # the gate's note, and nothing else
    assert "confirmation gate" in errors[0] and "Traceback" not in errors[0] and len(errors[0]) < 400, errors[0]
    assert "Run Selected Cell and All Below" in errors[0]
    button = page.button(CONFIRM_LABEL)
    assert button.text == CONFIRM_LABEL  # the whole label, not cut
    assert page.script("return arguments[0].scrollWidth <= arguments[0].clientWidth;", button)
    assert page.prompts()[-1] == "[ ]:", "Run All went past the gate"
    button.click()
    _wait_for("the gate to say the job is confirmed", lambda: any(
        "confirmed" in text for text in page.outputs()), timeout=30)
    page.menu("Run", "Run Selected Cell and All Below")
    page.wait_until_settled()
    bars = page.progress_bars()
    assert bars, "no progress bar"
    assert bars[-1]["width"] == 100 and "progress-bar-success" in bars[-1]["classes"], bars


def _check_verdict(page: LabPage) -> None:
    """Phase 07: the verdict panel says PASS, in green, with both plots above it."""
    panel = page.driver.find_element(By.CSS_SELECTOR, f"{ACTIVE} .runbook-verdict")
    assert panel.get_attribute("data-verdict") == "PASS" and "PASS" in panel.text, panel.text
    assert "expected" in panel.text and "recovered" in panel.text
    plots = page.driver.find_elements(By.CSS_SELECTOR, f"{ACTIVE} .jp-OutputArea-output img")
    assert len(plots) >= 2, "the category and progress plots"


def _wait_until_kept(lab: Lab, phase: str) -> None:
    """Wait until the run folder's notebooks/ holds the phase's notebook with its last output."""
    kept = lab.run_dir / "notebooks" / f"{phase}.ipynb"
    _wait_for(f"{kept} with the phase's outputs", lambda: f"phase {phase} complete" in _saved_outputs(kept),
              timeout=30)


def test_an_analyst_recovers_the_vault_in_jupyterlab(page: LabPage, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("lab-drill")
    run_dir = workdir / "run"
    with running_lab(workdir, run_dir, ["--port", "0", "--objects", str(LAB_VERSIONS)]) as lab:
        assert "embedded AWS at" in lab.output()
        with step(page, lab, "open"):
            page.driver.get(lab.url)
            page.open_notebook(f"{PHASES[0]}.ipynb")
        for phase in PHASES:
            with step(page, lab, phase):
                page.open_notebook(f"{phase}.ipynb")
                page.run_all()
                if phase.startswith("06"):
                    page.screenshot(f"{phase}-at-the-gate")
                    _confirm_and_follow(page)
                _check_finished(page, phase)
                if phase.startswith("07"):
                    _check_verdict(page)
                _wait_until_kept(lab, phase)
        with step(page, lab, "kernels"):
            # Each phase's kernel shut down when the phase finished: none is left running.
            _wait_for("every kernel shut down", lambda: lab.api("/api/sessions") == [], timeout=30)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["verdict"] == "PASS"
        assert {p["phase"]: p["status"] for p in summary["phases"]} == dict.fromkeys(PHASES, "ok")

        evidence = subprocess.run([sys.executable, "-m", "runbook_lib.cli", "evidence", str(run_dir)],
                                  env=_child_environment(workdir), capture_output=True, text=True, timeout=300)
        assert evidence.returncode == 0, evidence.stderr
        html = (run_dir / "evidence.html").read_text(encoding="utf-8")
        assert "Verdict: PASS" in html
        for phase in PHASES:
            assert f"phase {phase} complete" in html, phase
        assert 'data-verdict="PASS"' in html
        assert lab.stop() == 0
    assert "evidence:" in lab.output()


def test_the_lab_works_on_the_accounts_a_parameter_file_names(
    page: LabPage, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The embedded backend stands in for two real accounts: started on its own, reached through the
    # profiles of its AWS config file, as a real recovery reaches AWS through the analyst's profiles.
    workdir = tmp_path_factory.mktemp("lab-params")
    config = workdir / "aws-config"
    backend = subprocess.Popen(
        [sys.executable, "-m", "runbook_lib.cli", "backend", "--port", "0", "--objects", "20",
         "--config-file", str(config)],
        cwd=workdir, env=_child_environment(workdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert backend.stdout is not None
        lines = iter(backend.stdout.readline, "")
        assert any("press Ctrl-C to stop" in line for line in lines), "the backend did not start"
        run_dir = workdir / "recovery-run"
        env = {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        with running_lab(workdir / "lab", run_dir, ["--params", str(DRILL_PARAMS)], env) as lab:
            assert "embedded AWS" not in lab.output()  # the lab started no backend of its own
            with step(page, lab, "params-00"):
                page.driver.get(lab.url)
                _run_phase(page, lab, PHASES[0])
                text = "\n".join(page.outputs())
                assert "111111111111" in text and "222222222222" in text
                _wait_until_kept(lab, PHASES[0])
        ledger = json.loads((run_dir / "ledger.json").read_text())
        assert ledger["phases"][PHASES[0]]["status"] == "ok"
        assert not (run_dir / "aws-config").exists()
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=30)
