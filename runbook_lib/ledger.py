"""The run folder's state: what the run created, what it found before changing it, and how phases went.

Phases run in separate kernels (or separate papermill runs) and share state only through
`ledger.json` in the run folder, so any phase can be re-run on its own.

The ledger is the only record of what a run created, so losing it must stop the run, not start a
new one: only phase 00 starts a run (`open_ledger(..., create=True)`), every later phase needs the
ledger, and a folder whose `phases.json` shows that later phases once ran is never given a fresh,
empty ledger. One process at a time writes it (`runbook_lib.run_lock`); each write is atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runbook_lib.errors import RunbookError, RunStateError

__all__ = ["FIRST_PHASE", "LEDGER_FILE", "Ledger", "open_ledger", "require_ledger", "starts_run"]

LEDGER_FILE = "ledger.json"
# The phase that starts a run; every later phase resumes one.
FIRST_PHASE = "00"
# Written by headless runs next to the ledger: which phases ran, and how they ended.
PHASE_LOG_FILE = "phases.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Ledger:
    """The JSON state of one run folder; every change is written to disk at once."""

    run_dir: Path
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """Return the ledger file's path."""
        return self.run_dir / LEDGER_FILE

    def save(self) -> None:
        """Write the ledger atomically, so an interrupted write never leaves half a file."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.run_dir, prefix=".ledger-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(self.data, stream, indent=2, sort_keys=True, default=str)
            os.replace(temporary, self.path)
        except BaseException:
            # An interrupted write keeps the previous ledger and leaves no half-written file behind.
            Path(temporary).unlink(missing_ok=True)
            raise

    # -- identity of the run

    def bind(self, run_id: str, params_file: str) -> None:
        """Tie the folder to one run id, refusing to mix two runs' state in one folder."""
        existing = self.data.get("run_id")
        if existing and existing != run_id:
            raise RunStateError(
                f"run folder {self.run_dir} belongs to run_id {existing!r}, not {run_id!r}; "
                "use a new run folder or the parameters of that run",
                str(self.run_dir),
            )
        if not existing:
            self.data["run_id"] = run_id
            self.data["started"] = _now()
        self.data["params_file"] = params_file
        self.save()

    # -- resources created

    def record_created(self, kind: str, identifier: str, **attributes: Any) -> None:
        """Remember a resource this run created (once per kind and identifier)."""
        created = self.data.setdefault("created", [])
        if any(r["kind"] == kind and r["id"] == identifier for r in created):
            return
        created.append({"kind": kind, "id": identifier, "at": _now(), **attributes})
        self.save()

    def created(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Return the resources this run created, optionally of one kind, oldest first."""
        created: list[dict[str, Any]] = self.data.get("created", [])
        return [r for r in created if kind is None or r["kind"] == kind]

    def was_created(self, kind: str, identifier: str) -> bool:
        """Return whether this run created the resource."""
        return any(r["id"] == identifier for r in self.created(kind))

    def forget_created(self, kind: str, identifier: str) -> None:
        """Drop a resource from the created list once cleanup removed it."""
        self.data["created"] = [
            r for r in self.created() if not (r["kind"] == kind and r["id"] == identifier)
        ]
        removed = self.data.setdefault("removed", [])
        removed.append({"kind": kind, "id": identifier, "at": _now()})
        self.save()

    # -- configurations captured before the run changed them

    def capture_original(self, name: str, value: Any) -> bool:
        """Keep a configuration as found before the first change; later captures never overwrite it."""
        originals = self.data.setdefault("originals", {})
        if name in originals:
            return False
        originals[name] = {"value": value, "captured": _now()}
        self.save()
        return True

    def has_original(self, name: str) -> bool:
        """Return whether a configuration was captured under `name`."""
        return name in self.data.get("originals", {})

    def original(self, name: str) -> Any:
        """Return a captured configuration (None when it did not exist before the run)."""
        originals = self.data.get("originals", {})
        if name not in originals:
            raise RunbookError(f"the ledger in {self.run_dir} holds no captured original {name!r}")
        return originals[name]["value"]

    # -- outcomes, values and timings

    def record_outcomes(self, phase: str, outcomes: list[dict[str, Any]]) -> None:
        """Store what a phase found or did to each resource (replacing that phase's earlier record)."""
        self.data.setdefault("outcomes", {})[phase] = outcomes
        self.save()

    def set(self, key: str, value: Any) -> None:
        """Store a value other phases need (job id, ARNs)."""
        self.data.setdefault("values", {})[key] = value
        self.save()

    def get(self, key: str, default: Any = None) -> Any:
        """Return a value stored by an earlier phase."""
        return self.data.get("values", {}).get(key, default)

    def require(self, key: str, phase_hint: str) -> Any:
        """Return a stored value, or explain which phase must run first."""
        value = self.get(key)
        if value is None:
            raise RunbookError(f"{key} is not in the run folder's ledger yet; run phase {phase_hint} first")
        return value

    def append(self, key: str, value: Any) -> None:
        """Append a value to a stored list (for rounds of retries)."""
        self.data.setdefault("values", {}).setdefault(key, []).append(value)
        self.save()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Record a phase's start, end, seconds and status around the work it does."""
        phases = self.data.setdefault("phases", {})
        started = time.monotonic()
        phases[name] = {"status": "running", "started": _now()}
        self.save()
        try:
            yield
        except BaseException as error:
            phases[name].update(status="failed", error=str(error).splitlines()[0] if str(error) else repr(error))
            raise
        else:
            phases[name]["status"] = "ok"
        finally:
            phases[name].update(ended=_now(), seconds=round(time.monotonic() - started, 3))
            self.save()


def starts_run(phase: str) -> bool:
    """Return whether `phase` (a name or a number) is the one that may start a new run."""
    return phase.startswith(FIRST_PHASE)


def require_ledger(run_dir: str | Path, phase: str) -> None:
    """Raise RunStateError unless `phase` may run in the folder: 00 may start a run, later phases need its ledger."""
    folder = Path(run_dir)
    if starts_run(phase):
        if not (folder / LEDGER_FILE).exists():
            _refuse_lost_run(folder)
        return
    if not (folder / LEDGER_FILE).exists():
        raise _missing_ledger(folder, phase)


def _missing_ledger(folder: Path, phase: str) -> RunStateError:
    return RunStateError(
        f"run folder {folder} has no {LEDGER_FILE}, so phase {phase} cannot know what this run created "
        f"(its replication rule, key grants and job would be left live and unrecorded). Restore "
        f"{LEDGER_FILE} from a copy of this folder, or start a new run at phase {FIRST_PHASE} "
        "(runbook run --from 00) in a new run folder.",
        str(folder),
    )


def _refuse_lost_run(folder: Path) -> None:
    """Raise RunStateError when the folder's phase log shows a run went past phase 00 but its ledger is gone."""
    log_path = folder / PHASE_LOG_FILE
    try:
        entries = json.loads(log_path.read_text(encoding="utf-8")) if log_path.exists() else []
    except ValueError:
        entries = []
    later = sorted({
        str(entry.get("phase")) for entry in entries if isinstance(entry, dict)
        and entry.get("status") == "ok" and not starts_run(str(entry.get("phase", "")))
    })
    if later:
        raise RunStateError(
            f"run folder {folder} has no {LEDGER_FILE}, but {PHASE_LOG_FILE} shows that phases "
            f"{', '.join(later)} ran in it: the ledger of that run was lost, and a new one would forget "
            f"what it created. Restore {LEDGER_FILE} from a copy of this folder, or start the new run in "
            "a new run folder (and remove the old run's resources by hand).",
            str(folder),
        )


def open_ledger(run_dir: str | Path, *, create: bool = False) -> Ledger:
    """Return the ledger of a run folder; with `create` (phase 00 only), an empty one when the folder has none.

    Without `create`, a missing ledger is a RunStateError: the run's record was lost or the folder
    is not a run folder, and carrying on would forget what the run created.
    """
    folder = Path(run_dir)
    path = folder / LEDGER_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:  # invalid JSON or not UTF-8
            raise RunStateError(
                f"the ledger {path} is not valid JSON ({error}); restore it or use a new run folder",
                str(folder)) from error
        if not isinstance(data, dict):
            raise RunStateError(
                f"the ledger {path} holds a JSON {type(data).__name__}, not an object; "
                "restore it or use a new run folder",
                str(folder),
            )
        return Ledger(folder, data)
    if not create:
        raise RunStateError(
            f"run folder {folder} has no {LEDGER_FILE}: it is not the folder of a started run, or its ledger "
            f"was lost. Restore {LEDGER_FILE}, or start a new run at phase {FIRST_PHASE} in a new run folder.",
            str(folder),
        )
    _refuse_lost_run(folder)
    ledger = Ledger(folder, {})
    ledger.save()
    return ledger
