"""The run folder's state on disk: `ledger.json`, holding one typed `RunState`.

Phases run in separate kernels (or separate papermill runs) and share state only through the
ledger, so any phase can be re-run on its own. The schema lives in `runbook_lib.run_state`; this
module reads it (migrating a folder written before the schema had versions), writes it atomically
after every change, and offers the few operations phases need.

The ledger is the only record of what a run created, so losing it must stop the run, not start a
new one: only phase 00 starts a run (`open_ledger(..., create=True)`), every later phase needs the
ledger, and a folder whose executed notebooks show that later phases once ran is never given a
fresh, empty ledger. One process at a time writes it (`runbook_lib.run_lock`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runbook_lib.errors import RunStateError
from runbook_lib.run_state import CapturedOriginal, JobRecord, PhaseRecord, PhaseStatus, RunState, load_state

__all__ = ["FIRST_PHASE", "LEDGER_FILE", "Ledger", "now", "open_ledger", "require_ledger", "starts_run"]

LEDGER_FILE = "ledger.json"
# The phase that starts a run; every later phase resumes one.
FIRST_PHASE = "00"
# Where headless runs keep their executed notebooks: evidence that phases ran in the folder.
EXECUTED_NOTEBOOKS = "notebooks"


def now() -> str:
    """Return the current UTC time as ISO 8601 to the millisecond, as every record of the run writes it."""
    # Milliseconds, so that a phase of a fraction of a second still has a duration.
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Ledger:
    """The run state of one run folder; every change is written to disk at once."""

    run_dir: Path
    state: RunState = field(default_factory=RunState)
    # A planning copy: changes stay in memory and are never written (see `planning_copy`).
    in_memory: bool = False

    @property
    def path(self) -> Path:
        """Return the ledger file's path."""
        return self.run_dir / LEDGER_FILE

    def save(self) -> None:
        """Write the ledger atomically, so an interrupted write never leaves half a file.

        Refuses (RunStateError) when the file was written by someone else since this copy was read:
        a second kernel or process would otherwise put back an older state, an older verdict included.
        A planning copy keeps its changes in memory and writes nothing.
        """
        if self.in_memory:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_current()
        self.state.revision += 1
        handle, temporary = tempfile.mkstemp(dir=self.run_dir, prefix=".ledger-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(self.state.model_dump_json(indent=2))
            os.replace(temporary, self.path)
        except BaseException:
            # An interrupted write keeps the previous ledger and leaves no half-written file behind.
            Path(temporary).unlink(missing_ok=True)
            self.state.revision -= 1
            raise

    def planning_copy(self) -> Ledger:
        """Return a copy of the run state whose changes stay in memory: what a plan records is never saved."""
        return Ledger(self.run_dir, self.state.model_copy(deep=True), in_memory=True)

    def ensure_current(self) -> None:
        """Raise RunStateError when another process or kernel wrote the run state since this copy was read."""
        on_disk = _revision_on_disk(self.path)
        if on_disk is not None and on_disk != self.state.revision:
            raise RunStateError(
                f"the run state in {self.path} was written by another process or notebook kernel since this one "
                f"read it (revision {on_disk}, this copy {self.state.revision}); nothing was written. Run this "
                "phase again from its first cell (in JupyterLab, restart the kernel first), so that it starts "
                "from the current state.",
                str(self.run_dir),
            )

    # -- identity of the run

    def bind(self, run_id: str, params_file: str) -> None:
        """Tie the folder to one run id, refusing to mix two runs' state in one folder."""
        existing = self.state.run_id
        if existing and existing != run_id:
            raise RunStateError(
                f"run folder {self.run_dir} belongs to run_id {existing!r}, not {run_id!r}; "
                "use a new run folder or the parameters of that run",
                str(self.run_dir),
            )
        if not existing:
            self.state.run_id = run_id
            self.state.started = now()
        self.state.params_file = params_file
        self.save()

    # -- resources created

    def record_created(self, kind: str, identifier: str, **attributes: Any) -> None:
        """Remember a resource this run created (once per kind and identifier)."""
        if any(r["kind"] == kind and r["id"] == identifier for r in self.state.created):
            return
        self.state.created.append({"kind": kind, "id": identifier, "at": now(), **attributes})
        self.save()

    def created(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Return the resources this run created, optionally of one kind, oldest first."""
        return [r for r in self.state.created if kind is None or r["kind"] == kind]

    def was_created(self, kind: str, identifier: str) -> bool:
        """Return whether this run created the resource."""
        return any(r["id"] == identifier for r in self.created(kind))

    def forget_created(self, kind: str, identifier: str) -> None:
        """Drop a resource from the created list once cleanup removed it."""
        self.state.created = [r for r in self.state.created if not (r["kind"] == kind and r["id"] == identifier)]
        self.state.removed.append({"kind": kind, "id": identifier, "at": now()})
        self.save()

    # -- configurations captured before the run changed them

    def capture_original(self, name: str, value: Any) -> bool:
        """Keep a configuration as found before the first change; later captures never overwrite it."""
        if name in self.state.originals:
            return False
        self.state.originals[name] = CapturedOriginal(value=value, captured=now())
        self.save()
        return True

    def has_original(self, name: str) -> bool:
        """Return whether a configuration was captured under `name`."""
        return name in self.state.originals

    def original(self, name: str) -> Any:
        """Return a captured configuration (None when it did not exist before the run)."""
        if name not in self.state.originals:
            raise RunStateError(f"the ledger in {self.run_dir} holds no captured original {name!r}; the phase "
                                "that changes it captures it first: run that phase, or restore the ledger",
                                str(self.run_dir))
        return self.state.originals[name].value

    # -- resources later phases look up

    def set_resource(self, name: str, value: str) -> None:
        """Record the identifier of a resource later phases need (a key ARN, a topic ARN, a queue URL)."""
        setattr(self.state.resources, name, value)
        self.save()

    def resource(self, name: str, phase_hint: str) -> str:
        """Return a recorded identifier, or explain which phase must run first."""
        value: str | None = getattr(self.state.resources, name)
        if value is None:
            raise RunStateError(f"{name} is not in the run folder's ledger yet; run phase {phase_hint} first",
                                str(self.run_dir))
        return value

    # -- outcomes, phases and jobs

    def record_outcomes(self, phase: str, outcomes: list[dict[str, Any]]) -> None:
        """Store what a phase found or did to each resource (replacing that phase's earlier record)."""
        self.state.outcomes[phase] = outcomes
        self.save()

    def start_phase(self, phase: str) -> None:
        """Record that a phase started now."""
        self.state.phases[phase] = PhaseRecord(status="running", started=now())
        self.save()

    def end_phase(self, phase: str, status: PhaseStatus, error: str | None = None) -> PhaseRecord:
        """Record how a phase ended, with its seconds since it started, and return the record."""
        record = self.state.phases.get(phase) or PhaseRecord(status="running")
        ended = now()
        seconds = record.seconds
        if record.started:
            seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(record.started)).total_seconds()
        updated = PhaseRecord(status=status, started=record.started, ended=ended, seconds=seconds, error=error)
        self.state.phases[phase] = updated
        self.save()
        return updated

    def save_job(self, job: JobRecord) -> None:
        """Record (or replace) a job of the run under its purpose."""
        self.state.jobs[job.purpose] = job
        self.save()


def _revision_on_disk(path: Path) -> int | None:
    """Return the revision of the run state in the file, or None when there is no readable file yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    revision = data.get("revision", 0) if isinstance(data, dict) else 0
    return int(revision) if isinstance(revision, int) else 0


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
    """Raise RunStateError when executed notebooks show a run went past phase 00 here but its ledger is gone."""
    executed = folder / EXECUTED_NOTEBOOKS
    later = sorted(path.stem for path in executed.glob("[0-9][0-9]_*.ipynb") if not starts_run(path.stem))
    if later:
        raise RunStateError(
            f"run folder {folder} has no {LEDGER_FILE}, but its executed notebooks show that phases "
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
        return Ledger(folder, load_state(data, str(path)))
    if not create:
        raise RunStateError(
            f"run folder {folder} has no {LEDGER_FILE}: it is not the folder of a started run, or its ledger "
            f"was lost. Restore {LEDGER_FILE}, or start a new run at phase {FIRST_PHASE} in a new run folder.",
            str(folder),
        )
    _refuse_lost_run(folder)
    ledger = Ledger(folder, RunState())
    ledger.save()
    return ledger
