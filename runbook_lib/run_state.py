"""The run state's schema: everything a run records between phases, as typed data.

One `RunState` per run folder, written to `ledger.json` by `runbook_lib.ledger`. Phases run in
separate kernels, so this is the only channel between them, and the only record of what the run
created in two AWS accounts. Every field has one owner that writes it:

    revision                       ledger.save: how many times the state was written
    run_id, started, params_file   ledger.bind (phase 00 starts the run; later phases must match)
    created, removed               provision / cleanup: resources the run created, and removed
    originals                      provision: configurations as found before the first change
    resources                      provision / notifications: ARNs and URLs later phases need
    outcomes                       guide.show_outcomes: what each ensure step did, per phase
    phases                         guide.start_phase / finish_phase, drill.run_phases: one timing
                                   record per phase, from which summary.json and the evidence derive
    estimate                       preflight: what the recovery will move
    commitment                     commitment: the locked copies the run commits the recovery account to
    kind                           commitment: drill or recovery, embedded or real account, sample or full
    sample                         sampling: a sample drill's draw, its manifest and where it was uploaded
    jobs                           batch_job / pins: every Batch Operations job by purpose
                                   ("recovery-1", "recovery-2" after a failed attempt, "retry-1", ...)
    retry_rounds                   proof: each follow-up job over versions not recovered
    job_events                     notifications: job status events the audit queue received
    cleanup                        cleanup: what phase 08 did
    verdict                        proof: PASS, FAIL or INCOMPLETE, with when and why

Run folders written before this schema existed (no `schema_version`) load through
`migrate_unversioned`, which maps every key they could hold and refuses anything else. Version 2
had no commitment, kind or sample: it loads as version 3 without them (`migrate_v2`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runbook_lib.aws_facts import TERMINAL_JOB_STATUSES
from runbook_lib.errors import RunStateError

__all__ = [
    "SCHEMA_VERSION",
    "CapturedOriginal",
    "JobRecord",
    "PhaseRecord",
    "PhaseStatus",
    "ProgressPoint",
    "RetryRoundRecord",
    "RunKindRecord",
    "RunResources",
    "RunState",
    "SampleRecord",
    "Verdict",
    "VerdictRecord",
    "load_state",
    "migrate_unversioned",
    "migrate_v2",
    "recovery_purpose",
    "retry_purpose",
]

SCHEMA_VERSION = 3
PhaseStatus = Literal["running", "ok", "failed"]
Verdict = Literal["PASS", "FAIL", "INCOMPLETE"]


class _Record(BaseModel):
    """Common settings: unknown fields are errors, so a damaged or foreign file never loads silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CapturedOriginal(_Record):
    """A configuration as the run found it before its first change (None: it did not exist)."""

    value: Any
    captured: str


class PhaseRecord(_Record):
    """How one phase ran: the one timing record of the run."""

    status: PhaseStatus
    started: str | None = None
    ended: str | None = None
    seconds: float | None = None
    error: str | None = None


class RunResources(_Record):
    """Identifiers of resources that later phases look up."""

    recovery_key_arn: str | None = None
    topic_arn: str | None = None
    event_rule_arn: str | None = None
    audit_queue_url: str | None = None


class ProgressPoint(_Record):
    """One observation of a job: when, its status and its task counters."""

    at: str
    status: str
    total: int
    succeeded: int
    failed: int
    active_seconds: int


class JobRecord(_Record):
    """One Batch Operations job of the run: why it exists, how to find it again, and what it did."""

    purpose: str
    job_id: str
    token: str | None = None
    attempt: int | None = None
    created: str | None = None
    confirmed: str | None = None
    ended: str | None = None
    progress: list[ProgressPoint] = Field(default_factory=list)
    final: dict[str, Any] | None = None
    pin: dict[str, Any] | None = None


class RetryRoundRecord(_Record):
    """One follow-up job over versions that were not recovered."""

    round: int
    versions: int
    job_id: str
    status: str
    succeeded: int = 0
    failed: int = 0
    seconds: float = 0.0
    manifest_key: str = ""
    failures_before: dict[str, int] = Field(default_factory=dict)
    why: dict[str, int] = Field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the round's job has ended (Complete, Failed or Cancelled)."""
        return self.status in TERMINAL_JOB_STATUSES


class VerdictRecord(_Record):
    """The run's verdict, when it was reached, and why when it is not PASS."""

    verdict: Verdict
    at: str
    reason: str | None = None


class RunKindRecord(_Record):
    """What the run is: its purpose, backend and scale, as phase 00 settled them (see `run_kind`)."""

    purpose: Literal["drill", "recovery"] | None
    backend: Literal["aws", "embedded"]
    account: Literal["real", "embedded"]
    scale: Literal["full", "sample"]
    description: str
    settled: str | None = None


class SampleRecord(_Record):
    """A sample drill's draw: its size and seed, strata and coverage, and its manifest (see `sampling`)."""

    seed: int
    count: int | None = None
    fraction: float | None = None
    population: int
    drawn: int
    minimum: int
    strata: list[dict[str, Any]] = Field(default_factory=list)
    coverage: list[dict[str, Any]] = Field(default_factory=list)
    manifest_file: str
    versions_file: str
    manifest_sha256: str
    manifest_md5: str
    drawn_at: str
    uploaded: dict[str, str] | None = None


class RunState(_Record):
    """Everything one run records; see the module docstring for who writes what."""

    schema_version: Literal[3] = 3
    # Counts the writes: a writer whose copy is older than the file's was overtaken (see ledger.save).
    revision: int = 0
    run_id: str | None = None
    started: str | None = None
    params_file: str | None = None
    created: list[dict[str, Any]] = Field(default_factory=list)
    removed: list[dict[str, Any]] = Field(default_factory=list)
    originals: dict[str, CapturedOriginal] = Field(default_factory=dict)
    resources: RunResources = Field(default_factory=RunResources)
    outcomes: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    phases: dict[str, PhaseRecord] = Field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    commitment: dict[str, Any] | None = None
    kind: RunKindRecord | None = None
    sample: SampleRecord | None = None
    jobs: dict[str, JobRecord] = Field(default_factory=dict)
    retry_rounds: list[RetryRoundRecord] = Field(default_factory=list)
    job_events: list[dict[str, Any]] = Field(default_factory=list)
    cleanup: list[dict[str, Any]] = Field(default_factory=list)
    verdict: VerdictRecord | None = None

    def recovery_jobs(self) -> list[JobRecord]:
        """Return the recovery job of every attempt, oldest first."""
        found = [job for job in self.jobs.values() if job.purpose.startswith("recovery-")]
        return sorted(found, key=lambda job: job.attempt or 0)

    def current_recovery_job(self) -> JobRecord | None:
        """Return the latest attempt's recovery job, or None before phase 06 created one."""
        attempts = self.recovery_jobs()
        return attempts[-1] if attempts else None

    def job(self, job_id: str) -> JobRecord | None:
        """Return the record of a job by its id."""
        return next((job for job in self.jobs.values() if job.job_id == job_id), None)


def recovery_purpose(attempt: int) -> str:
    """Return the key under which an attempt's recovery job is recorded."""
    return f"recovery-{attempt}"


def retry_purpose(round_number: int) -> str:
    """Return the key under which a retry round's job is recorded."""
    return f"retry-{round_number}"


def load_state(data: object, source: str) -> RunState:
    """Return the run state in `data` (read from `source`), migrating an unversioned one; RunStateError if unknown."""
    if not isinstance(data, dict):
        raise RunStateError(f"{source} holds a JSON {type(data).__name__}, not an object; restore it or use a new "
                            "run folder", source)
    version = data.get("schema_version")
    if version is None:
        data = migrate_unversioned(data, source)
    elif version == 2:
        data = migrate_v2(data)
    elif version != SCHEMA_VERSION:
        raise RunStateError(
            f"{source} has run-state schema version {version!r}; this runbook reads version {SCHEMA_VERSION} "
            "(and migrates version 2 and folders written before versions existed). Use the runbook release that "
            "wrote it.",
            source)
    try:
        return RunState.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
        raise RunStateError(f"{source} does not have the run state's shape ({problems}); restore it or use a new "
                            "run folder", source) from error


def migrate_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Return a version 2 run state as version 3: the same fields; commitment, kind and sample start empty."""
    return {**data, "schema_version": SCHEMA_VERSION}


# Keys of the old `values` dictionary built at run time, and where each now lives.
_JOB_KEYS = re.compile(r"(progress|final|confirmed)_(?P<job>.+)")
_RETRY_JOB = re.compile(r"retry_job_id_(?P<round>\d+)")
_RESOURCE_KEYS = ("recovery_key_arn", "topic_arn", "event_rule_arn", "audit_queue_url")
_TOP_LEVEL_V1 = {"run_id", "started", "params_file", "created", "removed", "originals", "outcomes", "phases",
                 "values"}


def migrate_unversioned(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Return a run state written before schema versions (an untyped `values` dictionary) in the current shape.

    Every key such a run could have written is mapped; anything else is refused, never dropped.
    """
    unknown = sorted(set(data) - _TOP_LEVEL_V1)
    if unknown:
        raise RunStateError(f"{source} holds fields no runbook release wrote ({', '.join(unknown)}); restore it or "
                            "use a new run folder", source)
    values = dict(data.get("values") or {})
    migrated: dict[str, Any] = {key: data[key] for key in _TOP_LEVEL_V1 - {"values"} if key in data}
    migrated["schema_version"] = SCHEMA_VERSION
    migrated["phases"] = {name: _phase_v1(entry) for name, entry in (data.get("phases") or {}).items()}
    migrated["resources"] = {key: values.pop(key) for key in _RESOURCE_KEYS if key in values}
    for key in ("estimate", "job_events", "cleanup"):
        if key in values:
            migrated[key] = values.pop(key)
    verdict = values.pop("verdict", None)
    if verdict:
        migrated["verdict"] = {"verdict": verdict, "at": data.get("started") or "", "reason": None}
    jobs: dict[str, dict[str, Any]] = {}
    current = values.pop("job_id", None)
    attempts = values.pop("recovery_attempts", None) or ([{"attempt": 1, "job_id": current}] if current else [])
    for attempt in attempts:
        jobs[recovery_purpose(int(attempt["attempt"]))] = {
            "purpose": recovery_purpose(int(attempt["attempt"])), "job_id": attempt["job_id"],
            "attempt": int(attempt["attempt"]), "token": attempt.get("token"), "created": attempt.get("created"),
            "ended": attempt.get("ended")}
    for key in [k for k in values if _RETRY_JOB.fullmatch(k)]:
        number = int(_RETRY_JOB.fullmatch(key).group("round"))  # type: ignore[union-attr]
        jobs[retry_purpose(number)] = {"purpose": retry_purpose(number), "job_id": values.pop(key)}
    by_id = {job["job_id"]: job for job in jobs.values()}
    for job_id, pin in (values.pop("job_pins", None) or {}).items():
        _job_for(by_id, jobs, job_id)["pin"] = pin
    for key in [k for k in values if _JOB_KEYS.fullmatch(k)]:
        match = _JOB_KEYS.fullmatch(key)
        assert match is not None
        field = {"progress": "progress", "final": "final", "confirmed": "confirmed"}[match.group(1)]
        _job_for(by_id, jobs, match.group("job"))[field] = values.pop(key)
    migrated["jobs"] = jobs
    migrated["retry_rounds"] = values.pop("retry_rounds", [])
    if values:
        raise RunStateError(f"{source} holds values no runbook release wrote ({', '.join(sorted(values))}); "
                            "restore it or use a new run folder", source)
    return migrated


def _phase_v1(entry: dict[str, Any]) -> dict[str, Any]:
    """Return an old phase record in the current shape; its seconds from its start and end when it kept none."""
    record = {name: entry.get(name) for name in ("status", "started", "ended", "seconds", "error") if name in entry}
    if record.get("seconds") is None and entry.get("started") and entry.get("ended"):
        elapsed = datetime.fromisoformat(entry["ended"]) - datetime.fromisoformat(entry["started"])
        record["seconds"] = elapsed.total_seconds()
    return record


def _job_for(by_id: dict[str, dict[str, Any]], jobs: dict[str, dict[str, Any]], job_id: str) -> dict[str, Any]:
    """Return the migrated record of a job id, adding one (purpose "other-<id>") for a job no key named."""
    if job_id not in by_id:
        record = {"purpose": f"other-{job_id}", "job_id": job_id}
        jobs[record["purpose"]] = record
        by_id[job_id] = record
    return by_id[job_id]
