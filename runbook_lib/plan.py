"""A plan before the changes: what each phase would create, change, leave or remove, and nothing done.

The plan is computed by the phases' own code: the `ensure_*` steps of phases 01-05, the recovery
job's creation (06) and cleanup's record (08) run on a planning copy of the run context
(`RunContext.planning_copy`, `runbook_lib.planning`). They read and compare as in a run, and
record each write they would make, with the document it would write and the one it would
replace, instead of making it. Phase 00 changes nothing in any account; its entry says what it
does. Phase 07 changes nothing when it verifies by HEAD; by inventory, its set-up (the inventory
configurations, the report bucket's delivery statement, and on Athena the database and tables the
comparison makes) is planned as the other phases' steps are.

A plan of a fresh world lists the creations of every phase, later phases planned on what earlier
ones would create (values AWS assigns at creation read `known-after-phase-NN`). After a run it
lists nothing to change; after an administrator's change it lists exactly what the run would put
back, with the difference. A step that would stop its phase (drift, or an error) ends the plan:
later phases are marked as not planned.

`runbook plan` writes `plan.json` and `plan.txt` into the run folder, with IAM Access Analyzer's
results on every policy the plan would write (`runbook_lib.analyzer`). Its digest covers what the
run would do (phases, steps, writes and their documents), not when it was made nor the analyzer's
wording: `runbook run --plan FILE` makes the plan again and refuses to start when the digests
differ (`check_plan`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from runbook_lib import analyzer, batch_job, cleanup, inventory_proof, notifications, provision, restore_job
from runbook_lib import commitment as commitment_module
from runbook_lib.accounts import error_code, open_sessions
from runbook_lib.call_log import CallLog
from runbook_lib.context import RunContext
from runbook_lib.errors import PlanError, RunbookError, RunStateError
from runbook_lib.ledger import LEDGER_FILE, Ledger, open_ledger
from runbook_lib.params import load_params
from runbook_lib.planning import Plan, PlannedWrite, known_after
from runbook_lib.provision import Outcome
from runbook_lib.run_state import RunState
from runbook_lib.scope import scope_from_params

__all__ = [
    "PHASE_STEPS",
    "PHASE_SUMMARIES",
    "PLAN_FILE",
    "PLAN_TEXT",
    "PhasePlan",
    "PlannedStep",
    "RunPlan",
    "check_plan",
    "describe",
    "make_plan",
    "open_plan",
    "plan_phases",
    "read_plan",
    "reviewed_plan",
    "write_plan",
]

PLAN_FILE = "plan.json"
PLAN_TEXT = "plan.txt"
_VERSION = 1

Step = Callable[[RunContext], "Outcome | list[Outcome]"]


def _recovery_job(ctx: RunContext) -> list[Outcome]:
    """Return the outcomes of phase 06: the recovery job, and its confirmation."""
    job_id, created = batch_job.create_replication_job(ctx)
    outcomes = [Outcome("Batch Replication job", job_id, "created" if created else "unchanged",
                        note="manifest generated from the job's scope" if created else "the run's job, found")]
    if created:
        waits = bool(ctx.params.job.confirmation_required)
    else:
        waits = batch_job.describe_job(ctx, job_id)["Status"] == "Suspended"
    if waits:
        # The confirmation is a write too, made only when the operator confirms.
        assert ctx.plan is not None
        ctx.plan.intend("vault", "s3control", "UpdateJobStatus", job_id, {"RequestedJobStatus": "Ready"})
        outcomes.append(Outcome("Batch Replication job confirmation", job_id, "updated",
                                note="only when the operator confirms (the button, or --confirm-job)"))
    return outcomes


def _restore_job(ctx: RunContext) -> list[Outcome]:
    """Return the outcomes of phase 06's restore step: the restore job of archived versions, and its confirmation."""
    params = ctx.params
    if not params.restore.archived:
        return []  # no restore step: archived versions stay archived, and verification reports them
    bucket = params.pair.vault_bucket
    before = restore_job.current_restore_job_id(ctx, bucket)
    record = restore_job.create_restore_job(ctx, bucket, scope_from_params(params))
    job_id = restore_job.current_restore_job_id(ctx, bucket)
    if record is None or job_id is None:
        return [Outcome("restore of archived versions", bucket, "unchanged",
                        note="no archived version in scope waits for a restore")]
    created = job_id != before
    outcomes = [Outcome("restore job of archived versions", job_id, "created" if created else "unchanged",
                        note=(f"{record.requested} archived versions, {params.restore.tier} tier, "
                              f"{params.restore.expiration_days} days") if created else "the run's restore job, found")]
    waits = bool(params.job.confirmation_required) if created else (
        batch_job.describe_job(ctx, job_id)["Status"] == "Suspended")
    if waits:
        assert ctx.plan is not None
        ctx.plan.intend("vault", "s3control", "UpdateJobStatus", job_id, {"RequestedJobStatus": "Ready"})
        outcomes.append(Outcome("restore job confirmation", job_id, "updated",
                                note="only when the operator confirms (the button, or --confirm-job)"))
    return outcomes


def _inventory_verification(ctx: RunContext) -> list[Outcome]:
    """Return the outcomes of phase 07's set-up for verification by inventory (nothing when it reads by HEAD)."""
    if inventory_proof.method(ctx) != "inventory":
        return []
    outcomes = inventory_proof.prepare(ctx)
    if str(ctx.params.verification.engine) == "athena":
        outcomes += inventory_proof.plan_athena(ctx)
    return outcomes


# The steps each phase notebook runs, in the notebooks' order (tests keep the two in step).
# A step of one bucket pair runs for every pair of a run over many vault buckets (`provision.each_pair`).
_each_pair = provision.each_pair
PHASE_STEPS: dict[str, tuple[Step, ...]] = {
    "01": (provision.ensure_recovery_key, _each_pair(provision.ensure_recovery_bucket)),
    "02": (provision.ensure_report_bucket, provision.ensure_batch_policy, provision.ensure_batch_role),
    "03": (_each_pair(provision.ensure_vault_key_grants), provision.ensure_recovery_key_grants,
           _each_pair(provision.ensure_recovery_bucket_policy)),
    "04": (_each_pair(provision.ensure_replication_rule), _each_pair(provision.ensure_vault_eventbridge)),
    "05": (provision.ensure_notification_topic, notifications.ensure_audit_queue, provision.ensure_job_status_rule),
    "06": (_each_pair(_restore_job), _each_pair(_recovery_job)),
    "07": (_each_pair(_inventory_verification),),
}

# What each phase does, in words, above its steps.
PHASE_SUMMARIES: dict[str, str] = {
    "00": "reads both accounts and changes nothing; IAM Access Analyzer checks every policy the run would write",
    "01": "recovery account: the recovery KMS key and the recovery bucket",
    "02": "vault account: the report bucket, the Batch Replication role and its policy",
    "03": "both accounts: the role's statements in the vault key, recovery key and recovery bucket policies",
    "04": "vault account: the vault bucket's replication configuration and EventBridge delivery",
    "05": "vault account: the job status topic, its audit queue and the EventBridge rule",
    "06": ("vault account: with restore.archived, the restore job of archived versions in scope (a CSV manifest put "
           "in the report bucket, then CreateJob); the Batch Replication job; neither does anything before it is "
           "confirmed"),
    "07": ("reads both buckets (by HEAD, or from S3 Inventory reports it sets up), the manifest and the reports; "
           "writes the verdict and evidence into the run folder. Versions whose task failed are retried by a "
           "follow-up job (a CSV manifest put in the report bucket, then CreateJob), each behind the same "
           "confirmation"),
    "08": "removes what the run created and no longer needs, restores what it changed, keeps buckets and keys",
}

# Outcome statuses and cleanup actions in the plan's words.
_ACTIONS = {"created": "create", "updated": "change", "unchanged": "leave", "drift": "drift"}
# Actions that change nothing, and actions that stop the phase.
_QUIET = ("leave", "keep")
_STOPPING = ("drift", "stop")


@dataclass(frozen=True)
class PlannedStep:
    """What a phase would do to one resource or setting."""

    resource: str
    identifier: str
    action: str  # create | change | leave | drift | remove | restore | keep | stop
    difference: Any = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the step as plain JSON-ready data."""
        return {"resource": self.resource, "identifier": self.identifier, "action": self.action,
                "difference": self.difference, "note": self.note}


@dataclass(frozen=True)
class PhasePlan:
    """One phase's steps and the writes they would make."""

    phase: str
    summary: str
    steps: tuple[PlannedStep, ...] = ()
    writes: tuple[PlannedWrite, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the phase's plan as plain JSON-ready data."""
        return {"phase": self.phase, "summary": self.summary, "steps": [s.as_dict() for s in self.steps],
                "writes": [w.as_dict() for w in self.writes]}


@dataclass
class RunPlan:
    """The plan of a run: every phase's steps and writes, and Access Analyzer's results on its policies."""

    run_id: str
    params_file: str
    phases: list[PhasePlan]
    made: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    checks: list[analyzer.PolicyCheck] = field(default_factory=list)
    # The locked-copy commitment (planned with phase 00): a figure to decide with, not part of the digest.
    commitment: commitment_module.Commitment | None = None

    @property
    def digest(self) -> str:
        """Return the SHA-256 of what the run would do: phases, steps, writes and their documents."""
        # A step's note is wording, not substance: it is left out.
        phases = [{"phase": p.phase,
                   "steps": [{k: v for k, v in s.as_dict().items() if k != "note"} for s in p.steps],
                   "writes": [w.as_dict() for w in p.writes]} for p in self.phases]
        content = {"run_id": self.run_id, "phases": phases}
        text = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def writes(self) -> list[PlannedWrite]:
        """Return every write of every phase, in order."""
        return [write for phase in self.phases for write in phase.writes]

    def changes(self) -> list[tuple[str, PlannedStep]]:
        """Return (phase, step) of every step that would create, change, remove or restore something, or stop."""
        return [(p.phase, s) for p in self.phases for s in p.steps if s.action not in _QUIET]

    def stops(self) -> list[tuple[str, PlannedStep]]:
        """Return (phase, step) of the steps that would stop their phase (drift, or an error)."""
        return [(p.phase, s) for p in self.phases for s in p.steps if s.action in _STOPPING]

    def blocking(self) -> bool:
        """Return whether the run would stop: a step stops its phase, or Access Analyzer stops a policy."""
        return bool(self.stops()) or any(check.blocking for check in self.checks)

    def counts(self) -> dict[str, int]:
        """Return how many steps of each action the plan holds."""
        counts: dict[str, int] = {}
        for phase in self.phases:
            for step in phase.steps:
                counts[step.action] = counts.get(step.action, 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        """Return the plan as plain JSON-ready data, digest included."""
        return {"version": _VERSION, "run_id": self.run_id, "params_file": self.params_file, "made": self.made,
                "digest": self.digest, "counts": self.counts(), "phases": [p.as_dict() for p in self.phases],
                "policy_checks": [c.as_row() for c in self.checks],
                "commitment": self.commitment.as_record() if self.commitment is not None else None}

    def render(self) -> str:
        """Return the plan as text a change board reads: per phase its steps, then each write with its document."""
        return _render(self)


# ------------------------------------------------------------------------------ computing


def _as_steps(outcomes: Outcome | list[Outcome]) -> list[PlannedStep]:
    listed = outcomes if isinstance(outcomes, list) else [outcomes]
    return [PlannedStep(o.resource, o.identifier, _ACTIONS[o.status], o.difference, o.note) for o in listed]


def _stopped(error: Exception) -> PlannedStep:
    """Return the step that says why planning cannot go on in this phase."""
    if isinstance(error, ClientError):
        operation = error.operation_name
        return PlannedStep("phase", operation, "stop", None,
                           f"AWS refused {operation} ({error_code(error)}): {error}")
    return PlannedStep("phase", type(error).__name__, "stop", None, str(error))


def _plan_phase(ctx: RunContext, phase: str) -> list[PlannedStep]:
    number = phase[:2]
    if number == "08":
        return [PlannedStep(p.resource, p.identifier, p.action, None, p.why) for p in cleanup.planned_cleanup(ctx)]
    steps: list[PlannedStep] = []
    for step in PHASE_STEPS.get(number, ()):
        planned = _as_steps(step(ctx))
        steps.extend(planned)
        if any(s.action in _STOPPING for s in planned):
            break  # the phase stops at this step, as its notebook does
    return steps


def _cleanup_writes(ctx: RunContext) -> list[PlannedWrite]:
    return [PlannedWrite(p.side, call.split(".")[0], call.split(".")[1], p.identifier)
            for p in cleanup.planned_cleanup(ctx) for call in p.calls]


def plan_phases(ctx: RunContext, phases: Sequence[str]) -> RunPlan:
    """Return what each phase would do, computed by its own steps on a planning copy of `ctx`; nothing is written."""
    planning = ctx if ctx.plan is not None else ctx.planning_copy()
    assert planning.plan is not None
    planned: list[PhasePlan] = []
    stopped_at: str | None = None
    for phase in phases:
        summary = PHASE_SUMMARIES.get(phase[:2], "")
        if stopped_at is not None:
            planned.append(PhasePlan(phase, f"not planned: phase {stopped_at} stops first"))
            continue
        planning.phase = phase
        before = len(planning.plan.writes)
        try:
            steps = _plan_phase(planning, phase)
        except (RunbookError, ClientError) as error:
            steps = [_stopped(error)]
        writes = planning.plan.writes[before:]
        if phase.startswith("08"):
            writes = _cleanup_writes(planning)
        planned.append(PhasePlan(phase, summary, tuple(steps), tuple(writes)))
        if any(s.action in _STOPPING for s in steps):
            stopped_at = phase[:2]
    return RunPlan(ctx.params.run_id, str(ctx.ledger.state.params_file or ""), planned)


def make_plan(
    ctx: RunContext, phases: Sequence[str], check_policies: bool = True, with_commitment: bool = False,
) -> RunPlan:
    """Return the plan of the phases, with IAM Access Analyzer's results on every policy it would write.

    `with_commitment` adds the locked-copy commitment when phase 00 is planned (`runbook plan`; the
    notebook of phase 00 shows it in a cell of its own, so its plan cell does not read the vault twice).
    """
    run_plan = plan_phases(ctx, phases)
    if check_policies:
        run_plan.checks = analyzer.check_writes(ctx, run_plan.writes())
    if with_commitment and any(phase.startswith("00") for phase in phases):
        run_plan.commitment = commitment_module.planned_commitment(ctx)
    return run_plan


def open_plan(params_file: str | Path, run_dir: str | Path) -> RunContext:
    """Return a planning context for the run folder: checked parameters and accounts, its run state read, never saved.

    A folder without a run state plans a fresh run; one of another run is refused (RunStateError).
    """
    params = load_params(params_file)
    call_log = CallLog.in_run_folder(run_dir, params.run_id, "plan")
    sessions = open_sessions(params, call_log)
    folder = Path(run_dir)
    if (folder / LEDGER_FILE).exists():
        ledger = open_ledger(folder).planning_copy()
        if ledger.state.run_id and ledger.state.run_id != params.run_id:
            raise RunStateError(
                f"run folder {folder} belongs to run_id {ledger.state.run_id!r}, not {params.run_id!r}; plan in a new "
                "run folder or with the parameters of that run", str(folder))
    else:
        ledger = Ledger(folder, RunState(run_id=params.run_id), in_memory=True)
    ledger.state.params_file = str(params_file)
    return RunContext(params=params, ledger=ledger, sessions=sessions, phase="plan", call_log=call_log, plan=Plan())


# ------------------------------------------------------------------------------ files


def write_plan(run_dir: str | Path, run_plan: RunPlan) -> tuple[Path, Path]:
    """Write plan.json and plan.txt into the run folder and return their paths."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    document, text = folder / PLAN_FILE, folder / PLAN_TEXT
    _write_atomically(document, json.dumps(run_plan.as_dict(), indent=2, default=str) + "\n")
    _write_atomically(text, run_plan.render())
    return document, text


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def read_plan(path: str | Path) -> dict[str, Any]:
    """Return a plan file's content, or raise PlanError saying why it cannot be used."""
    file = Path(path)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise PlanError(f"plan file {file} does not exist; make one with runbook plan --params FILE --out DIR"
                        ) from error
    except ValueError as error:
        raise PlanError(f"plan file {file} is not valid JSON ({error}); make it again with runbook plan") from error
    if not isinstance(document, dict) or document.get("version") != _VERSION or "digest" not in document:
        raise PlanError(f"plan file {file} is not a plan written by runbook plan; make it again with runbook plan")
    return document


def _step_lines(document: dict[str, Any]) -> list[str]:
    """Return one line per step and write of a plan document, to tell two plans apart."""
    lines = []
    for phase in document.get("phases", []):
        for step in phase.get("steps", []):
            lines.append(f"{phase['phase']}: {step['action']} {step['resource']} {step['identifier']}"
                         f" {json.dumps(step.get('difference'), sort_keys=True, default=str)}")
        for write in phase.get("writes", []):
            lines.append(f"{phase['phase']}: {write['service']}.{write['operation']} {write['identifier']} "
                         f"{json.dumps(write.get('document'), sort_keys=True, default=str)}")
    return lines


def check_plan(params_file: str | Path, run_dir: str | Path, phases: Sequence[str], plan_file: str | Path) -> RunPlan:
    """Return the plan made now when it matches the reviewed plan file; raise PlanError when it does not.

    The reviewed plan must be of the same run and the same phases, and its digest must be the
    digest of the plan made now: anything that changed since (a resource, a policy, the run state,
    the parameters) shows as a difference and the run does not start. The reviewed plan is kept in
    the run folder as plan.json (with plan.txt) for the evidence.
    """
    reviewed = read_plan(plan_file)
    params = load_params(params_file)
    if reviewed.get("run_id") != params.run_id:
        raise PlanError(f"plan file {plan_file} is the plan of run {reviewed.get('run_id')!r}, not of "
                        f"{params.run_id!r}; make a plan with these parameters")
    planned_phases = [p["phase"] for p in reviewed.get("phases", [])]
    if planned_phases != list(phases):
        raise PlanError(f"plan file {plan_file} covers phases {', '.join(planned_phases) or 'none'}, but this run "
                        f"would run {', '.join(phases)}; make a plan with the same --from and --to")
    current = plan_phases(open_plan(params_file, run_dir), phases)
    if current.digest != reviewed["digest"]:
        now = current.as_dict()
        differences = [line for line in difflib.unified_diff(_step_lines(reviewed), _step_lines(now), lineterm="", n=0)
                       if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        shown = "\n".join(f"  {line}" for line in differences[:20])
        more = f"\n  ... and {len(differences) - 20} more" if len(differences) > 20 else ""
        raise PlanError(
            f"the world changed since the plan in {plan_file} was made ({reviewed.get('made')}): its digest is "
            f"{reviewed['digest']}, the plan made now is {current.digest}. Nothing was changed. Review the "
            f"differences (- reviewed, + now), make a new plan with runbook plan, and run with it:\n{shown}{more}",
            differences)
    target = Path(run_dir) / PLAN_FILE
    if not target.exists() or not target.samefile(plan_file):
        shutil.copyfile(plan_file, target)
        reviewed_text = Path(plan_file).with_name(PLAN_TEXT)
        if reviewed_text.exists():
            shutil.copyfile(reviewed_text, Path(run_dir) / PLAN_TEXT)
        else:
            current.made = str(reviewed.get("made", current.made))
            _write_atomically(Path(run_dir) / PLAN_TEXT, current.render())
    return current


def reviewed_plan(run_dir: str | Path) -> dict[str, Any] | None:
    """Return what summary.json says of the run folder's plan (file, digest, when made, counts), or None."""
    path = Path(run_dir) / PLAN_FILE
    if not path.exists():
        return None
    try:
        document = read_plan(path)
    except PlanError:
        return None
    return {"file": PLAN_FILE, "digest": document["digest"], "made": document.get("made"),
            "counts": document.get("counts", {})}


def describe(run_dir: str | Path) -> str:
    """Return a paragraph for the evidence: which plan was reviewed for this run folder, and what it held."""
    path = Path(run_dir) / PLAN_FILE
    if not path.exists():
        return f"No plan was written into this run folder ({PLAN_FILE}: runbook plan, or runbook run --plan FILE)."
    try:
        document = read_plan(path)
    except PlanError as error:
        return f"The run folder's {PLAN_FILE} cannot be read: {error}"
    counts = _counted(document.get("counts", {}))
    blocking = sum(1 for c in document.get("policy_checks", [])
                   if c.get("severity") in analyzer.BLOCKING and not c.get("kept_as_found"))
    checked = len({c.get("policy") for c in document.get("policy_checks", [])})
    return (f"The plan reviewed for this run is [{PLAN_FILE}]({PLAN_FILE}) (readable: [{PLAN_TEXT}]({PLAN_TEXT})), "
            f"made {document.get('made')}, digest `{document.get('digest')}`: {counts}. "
            f"IAM Access Analyzer checked {checked} policies it would write"
            f"{f'; {blocking} result(s) would stop the run' if blocking else ''}.")


# ------------------------------------------------------------------------------ text


def _json(document: Any) -> list[str]:
    return json.dumps(document, indent=2, sort_keys=True, default=str).splitlines()


def _render_write(write: PlannedWrite) -> list[str]:
    lines = [f"    {write.side} {write.service}.{write.operation} {write.identifier}"]
    if write.document is None:
        return lines
    if write.found is None:
        lines += [f"      {line}" for line in _json(write.document)]
        return lines
    diff = difflib.unified_diff(_json(write.found), _json(write.document), "found now", "would write", lineterm="")
    lines += [f"      {line}" for line in diff]
    return lines


# How each action is counted in words, in this order.
_COUNTED = {"create": "{} to create", "change": "{} to change", "remove": "{} to remove", "restore": "{} to restore",
            "drift": "{} drifted (the phase stops)", "stop": "{} stopping the plan", "leave": "{} left as they are",
            "keep": "{} kept"}


def _counted(counts: dict[str, int]) -> str:
    """Return a plan's counts in words: what it would change first, 'nothing to change' when nothing."""
    changing = [_COUNTED[a].format(counts[a]) for a in _COUNTED if counts.get(a) and a not in _QUIET]
    quiet = [_COUNTED[a].format(counts[a]) for a in _QUIET if counts.get(a)]
    return "; ".join([", ".join(changing) or "nothing to change", *([", ".join(quiet)] if quiet else [])])


def _render(run_plan: RunPlan) -> str:
    lines = [
        f"Plan of run {run_plan.run_id} (parameters {run_plan.params_file}), made {run_plan.made}",
        f"Digest: {run_plan.digest}",
        f"Summary: {_counted(run_plan.counts())}",
        f"Values AWS assigns when it creates a resource read {known_after('NN')} until that phase has run.",
        "",
    ]
    for phase in run_plan.phases:
        lines.append(f"Phase {phase.phase}: {phase.summary}")
        if not phase.steps:
            lines.append("  nothing to change")
        for step in phase.steps:
            note = f"  ({step.note})" if step.note else ""
            lines.append(f"  {step.action:<8} {step.resource}: {step.identifier}{note}")
            written = any(write.identifier == step.identifier for write in phase.writes)
            if step.difference is not None and (step.action == "drift" or not written):
                lines += [f"      {line}" for line in _json(step.difference)]
        if phase.writes:
            lines.append("  calls it would make:")
            for write in phase.writes:
                lines += _render_write(write)
        lines.append("")
    if run_plan.commitment is not None:
        lines.append("What the recovered copies would commit the recovery account to (Object Lock keeps them):")
        lines += [f"  {line}" for line in run_plan.commitment.lines()]
        lines.append("")
    if run_plan.checks:
        lines.append("IAM Access Analyzer on the policies the plan would write:")
        for check in run_plan.checks:
            where = f" at {check.location}" if check.location else ""
            stops = " (stops the run)" if check.blocking else ""
            lines.append(f"  {check.severity:<16} {check.check} {check.policy}: {check.code}{where}: "
                         f"{check.detail}{stops}")
        lines.append("")
    return "\n".join(lines) + "\n"
