"""Running phase notebooks headlessly with papermill: `runbook run` and `runbook drill`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runbook_lib.errors import PhaseError, UsageError
from runbook_lib.ledger import LEDGER_FILE, now, open_ledger, require_ledger
from runbook_lib.phase_kernels import KernelsAhead
from runbook_lib.run_lock import hold_run_lock
from runbook_lib.run_state import VerdictRecord

__all__ = [
    "NOTEBOOKS_DIR",
    "PhaseResult",
    "phase_names",
    "run_drill",
    "run_phases",
    "run_phases_command",
    "select_phases",
    "write_ground_truth",
]

log = logging.getLogger("runbook")

PROJECT_DIR = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
DRILL_PARAMS = PROJECT_DIR / "parameters" / "drill.yaml"
EXECUTED_DIR = "notebooks"


def phase_names(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[str]:
    """Return the phase notebooks' names in running order (00_preflight, 01_..., ...)."""
    return sorted(p.stem for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def _match(phase: str, names: list[str], option: str) -> int:
    for index, name in enumerate(names):
        if phase in (name, name[:2]) or name.startswith(phase):
            return index
    raise UsageError(f"{option} {phase!r} is not a phase; expected one of: {', '.join(names)} (or their numbers)")


def select_phases(from_phase: str | None, to_phase: str | None, names: list[str] | None = None) -> list[str]:
    """Return the phases between --from and --to, inclusive, by number or name."""
    names = names if names is not None else phase_names()
    start = _match(from_phase, names, "--from") if from_phase else 0
    end = _match(to_phase, names, "--to") if to_phase else len(names) - 1
    if start > end:
        raise UsageError(f"--from {from_phase} comes after --to {to_phase}")
    return names[start : end + 1]


@dataclass(frozen=True)
class PhaseResult:
    """How one phase notebook ran headlessly."""

    phase: str
    status: str
    seconds: float
    notebook: str
    error: str = ""


def _phase_error(phase: str, error: Exception, notebook: Path) -> PhaseError:
    """Return the PhaseError for a failed phase, keeping papermill's fields on the failing cell."""
    # papermill's PapermillExecutionError carries ename, evalue, cell_index and exec_count; a kernel
    # that died or never started raises something else, which has none of them.
    return PhaseError(
        phase,
        str(getattr(error, "ename", type(error).__name__)),
        str(getattr(error, "evalue", error)),
        notebook_path=str(notebook),
        cell_index=getattr(error, "cell_index", None),
        exec_count=getattr(error, "exec_count", None),
    )


# Exit codes of `runbook run` and `runbook drill`, as the command-line contract defines them.
EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2
EXIT_WAITING = 3


def _exit_code_for(error: PhaseError) -> int:
    """Return 3 when the phase stopped only to wait for a confirmation, 2 when it stopped on the parameters, else 1.

    A phase stops on the parameters before it changes anything: phase 00 on a real account whose
    parameters leave run.purpose open, or a job.sample too small to cover the vault's strata.
    """
    if error.awaits_confirmation:
        return EXIT_WAITING
    return EXIT_BAD_INPUT if error.is_bad_input else EXIT_FAIL


def _settle_verification(run_dir: Path, error: PhaseError, params_file: Path) -> None:
    """After a failed phase, make sure no INCOMPLETE verdict hides a verification that stopped on an error.

    A verdict that becomes FAIL here is a verdict like any other: it is reconciled and appended to
    the history (a FAIL that phase 07 reached itself was recorded when it was written).
    """
    from runbook_lib import evidence

    if error.phase.startswith("07") and not error.awaits_confirmation:
        before = _summary_verdict(run_dir)
        verdict = evidence.settle_unfinished_verification(run_dir, str(error))
        if verdict == "FAIL" and (run_dir / LEDGER_FILE).exists():
            # The run state says what the summary says: a verification that stopped proved nothing.
            ledger = open_ledger(run_dir)
            ledger.state.verdict = VerdictRecord(verdict="FAIL", at=now(), reason=f"verification stopped: {error}")
            ledger.save()
            if before != "FAIL":
                _keep_settled_verdict(run_dir, params_file)


def _summary_verdict(run_dir: Path) -> str | None:
    """Return the verdict summary.json gives now (None when there is none)."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    verdict = json.loads(path.read_text(encoding="utf-8")).get("verdict")
    return str(verdict) if verdict else None


def _keep_settled_verdict(run_dir: Path, params_file: Path) -> None:
    """Reconcile a verdict settled to FAIL and append it to the history."""
    from runbook_lib import history, proof
    from runbook_lib.errors import RunbookError
    from runbook_lib.params import load_params

    try:
        identity = history.run_identity(load_params(params_file), params_file, run_dir)
    except RunbookError as problem:
        print(f"warning: the FAIL verdict was not added to the history: {problem}", file=sys.stderr)
        return
    proof.keep_verdict_record(run_dir, run_dir / "summary.json", identity)


def run_phases(
    params_file: Path, run_dir: Path, phases: list[str], confirm_job: bool = False,
    extra_env: dict[str, str] | None = None,
) -> list[PhaseResult]:
    """Run the phases in order with papermill, keeping each executed notebook; stop at the first failure.

    Holds the run folder's lock for all of them (RunLockedError when another process runs phases
    there), and refuses a first phase after 00 in a folder without a ledger (RunStateError).
    """
    if phases:
        require_ledger(run_dir, phases[0])
    with hold_run_lock(run_dir):
        return _run_phases_holding_lock(params_file, run_dir, phases, confirm_job, extra_env)


def _run_phases_holding_lock(
    params_file: Path, run_dir: Path, phases: list[str], confirm_job: bool = False,
    extra_env: dict[str, str] | None = None,
) -> list[PhaseResult]:
    import papermill

    logging.getLogger("papermill").setLevel(logging.WARNING)
    run_dir = run_dir.resolve()
    executed = run_dir / EXECUTED_DIR
    executed.mkdir(parents=True, exist_ok=True)
    os.environ.update(extra_env or {})
    os.environ["RUNBOOK_HEADLESS"] = "1"
    results: list[PhaseResult] = []
    with KernelsAhead(_kernel_arguments(), NOTEBOOKS_DIR) as kernels:
        for number, phase in enumerate(phases):
            source = NOTEBOOKS_DIR / f"{phase}.ipynb"
            target = executed / f"{phase}.ipynb"
            parameters: dict[str, Any] = {"params_file": str(params_file.resolve()), "run_dir": str(run_dir)}
            if phase.startswith("06") or phase.startswith("07"):
                parameters["confirm_job"] = confirm_job
            log.info("phase %s: running", phase)
            started = time.monotonic()
            kernel = kernels.take(another_follows=number + 1 < len(phases))
            try:
                papermill.execute_notebook(
                    str(source), str(target), parameters=parameters, cwd=str(NOTEBOOKS_DIR),
                    kernel_name="python3", progress_bar=False, log_output=False, report_mode=False, km=kernel,
                )
            except Exception as error:  # papermill raises its own execution error or kernel errors
                seconds = round(time.monotonic() - started, 2)
                failure = _phase_error(phase, error, target)
                results.append(PhaseResult(phase, "failed", seconds, str(target), str(failure)))
                _record_failed_phase(run_dir, phase, failure)
                raise failure from None
            finally:
                kernels.release(kernel)
            seconds = round(time.monotonic() - started, 2)
            results.append(PhaseResult(phase, "ok", seconds, str(target)))
            log.info("phase %s: ok in %.1f s", phase, seconds)
    return results


def _kernel_arguments() -> list[str]:
    """Return the kernel's command-line additions: its own log quiet unless `runbook -v` asked for detail.

    ipykernel warns on every start that a local kernel talks over TCP; a drill's terminal should show
    the phases, not that. Errors of the notebook's cells reach papermill through the kernel's
    messages, not its log, so nothing that matters is hidden.
    """
    return [] if log.isEnabledFor(logging.DEBUG) else ["--IPKernelApp.log_level=ERROR"]


def _record_failed_phase(run_dir: Path, phase: str, failure: PhaseError) -> None:
    """Record in the run state that a phase stopped: its kernel never reached finish_phase to say so."""
    if not (run_dir / LEDGER_FILE).exists():
        return  # phase 00 failed before it started the run: there is no run to record it in
    # Always: a phase that failed before its kernel recorded its start still shows an earlier "ok".
    ledger = open_ledger(run_dir)
    ledger.end_phase(phase, "failed", str(failure).splitlines()[0])


def plan_command(args: argparse.Namespace) -> int:
    """`runbook plan`: write what each phase would do into the run folder; 1 when the run would stop, else 0."""
    from runbook_lib import plan
    from runbook_lib.params import load_params

    load_params(args.params)  # every parameter problem before any AWS call
    phases = select_phases(args.from_phase, args.to_phase)
    with hold_run_lock(args.out):  # no plan of a world a running phase is changing
        run_plan = plan.make_plan(plan.open_plan(args.params, args.out), phases, with_commitment=True)
        document, text = plan.write_plan(args.out, run_plan)
    print(run_plan.render(), end="")
    print(f"plan: {document} (readable: {text}); digest {run_plan.digest}")
    if run_plan.blocking():
        print("the run would stop: see the drift, errors or Access Analyzer results above", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_PASS


def run_phases_command(args: argparse.Namespace) -> int:
    """`runbook run`: the selected phases against whatever the parameters name (with --plan, only as reviewed)."""
    from runbook_lib.params import load_params

    load_params(args.params)  # every parameter problem before any kernel starts
    phases = select_phases(args.from_phase, args.to_phase)
    if getattr(args, "plan", None) is not None:
        from runbook_lib import plan

        with hold_run_lock(args.out):
            checked = plan.check_plan(args.params, args.out, phases, args.plan)
        print(f"plan {args.plan} matches what the run would do now ({checked.digest})")
    try:
        results = run_phases(args.params, args.out, phases, confirm_job=args.confirm_job)
    except PhaseError as error:
        _settle_verification(Path(args.out), error, Path(args.params))
        _keep_evidence(Path(args.out))
        if error.awaits_confirmation:
            print(f"waiting for confirmation: {error}", file=sys.stderr)
        else:
            print(f"error: {error}", file=sys.stderr)
        return _exit_code_for(error)
    _keep_evidence(Path(args.out))
    for result in results:
        print(f"{result.phase}: {result.status} in {result.seconds:.1f} s")
    return EXIT_PASS


def _default_out() -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"drill-{stamp}"


def run_drill(args: argparse.Namespace) -> int:
    """`runbook drill`: embedded backend, seeded vault, every phase headlessly, summary; 0 only when verified."""
    from runbook_lib.embedded.faults import Faults
    from runbook_lib.embedded.seed import seed_owner_inventories, seed_vaults
    from runbook_lib.embedded.server import start_backend
    from runbook_lib.params import load_params

    params_file = Path(args.params) if args.params else DRILL_PARAMS
    load_params(params_file)
    buckets = int(getattr(args, "buckets", 1) or 1)
    if buckets > 1 and getattr(args, "sample", None) is not None:
        raise UsageError("--sample draws from one vault bucket; a drill with --buckets N > 1 recovers every bucket "
                         "in full (drop --sample, or --buckets)")
    out = (Path(args.out) if args.out else _default_out()).resolve()
    if out.exists() and any(out.iterdir()):
        raise UsageError(
            f"run folder {out} is not empty; a drill starts from a fresh backend, so give it a new folder")
    out.mkdir(parents=True, exist_ok=True)
    as_of = getattr(args, "as_of", None)
    params_file = _drill_parameters(params_file, getattr(args, "sample", None), getattr(args, "sample_seed", 1), out,
                                    buckets, as_of, restore_archived=bool(getattr(args, "restore_archived", False)),
                                    method=getattr(args, "verify", None), engine=getattr(args, "engine", None))
    faults = Faults(task_failure_rate=args.fail_tasks, throttle_rate=args.throttle,
                    latency_ms=args.latency_ms, seed=args.fault_seed,
                    fail_buckets=tuple(getattr(args, "fail_bucket", None) or ()))
    started = time.monotonic()
    # S3 delivers inventories daily; a drill verified by inventory gets them every few minutes, so
    # a retry round finds a report newer than its job (once per configuration otherwise).
    every = max(60.0, args.objects / 1000) if getattr(args, "verify", None) in ("inventory", "auto") else None
    with start_backend(faults=faults, config_file=out / "aws-config", inventory_every=every) as backend:
        backend.reset()  # a drill owns its world: nothing left from an earlier drill in this process
        truths = seed_vaults(backend.endpoint, buckets, args.objects, args.random_seed)
        if every is not None:
            # A vault verified by inventory has its owners' daily inventory: phase 00 reads its figures there.
            seed_owner_inventories(backend.endpoint, truths)
        write_ground_truth(out / GROUND_TRUTH, truths)
        counted = [truth.counts(restore_archived=bool(getattr(args, "restore_archived", False)))
                   for truth in truths]
        where = "vault" if buckets == 1 else f"{buckets} vault buckets"
        print(f"embedded AWS at {backend.endpoint}; {where} seeded with "
              f"{sum(c['source_versions'] for c in counted)} versions "
              f"({sum(c['expected'] for c in counted)} expected to recover)", flush=True)
        _report_seeded_history(truths, as_of)
        phases = phase_names()
        missing = [p for p in ("07_verify",) if p not in phases]
        try:
            results = run_phases(params_file, out, phases, confirm_job=True, extra_env=backend.environ())
        except PhaseError as error:
            print(f"drill failed: {error}", file=sys.stderr)
            _settle_verification(out, error, params_file)
            _keep_evidence(out)
            return _exit_code_for(error)
    seconds = time.monotonic() - started
    return _report_drill(out, results, seconds, missing)


DRILL_PARAMS_COPY = "parameters.yaml"


GROUND_TRUTH = "ground_truth.json"


def write_ground_truth(path: Path, truths: list[Any]) -> Path:
    """Write what the seeder put in the vault to `path`: one bucket's ground truth, or `{"buckets": [...]}` for many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(truths) == 1:
        return Path(truths[0].write(path))
    # Each bucket's document as GroundTruth writes it, one version per line.
    with path.open("w", encoding="utf-8") as out:
        out.write('{"buckets": [\n')
        for index, truth in enumerate(truths):
            out.write(",\n" if index else "")
            truth.write_json(out)
        out.write("\n]}\n")
    return path


def _many_buckets(data: dict[str, Any], buckets: int) -> None:
    """Make parameters in the one-bucket form name the drill's `buckets` seeded vault buckets instead.

    The first keeps its recovery bucket; the others are named by recovery.bucket_name_pattern.
    """
    from runbook_lib.embedded.seed import vault_bucket_name, vault_key_arn

    vault, recovery = data.get("vault"), data.get("recovery")
    if not isinstance(vault, dict) or not isinstance(recovery, dict) or "buckets" in vault:
        raise UsageError("--buckets N > 1 needs parameters in the one-bucket form (vault.bucket, recovery.bucket); "
                         "the drill names its seeded buckets itself")
    first_recovery = recovery.pop("bucket", None)
    vault.pop("bucket", None)
    vault.pop("kms_key_arn", None)
    vault["buckets"] = [{"bucket": vault_bucket_name(i), "kms_key_arn": vault_key_arn(i),
                         **({"recovery_bucket": first_recovery} if i == 0 and first_recovery else {})}
                        for i in range(buckets)]
    recovery["bucket_name_pattern"] = "{vault_bucket}-recovered"


def _report_seeded_history(truths: list[Any], as_of: datetime | None) -> None:
    """Print the seeded history's range and, with a point in time, how many versions fall on each side of it."""
    from runbook_lib.embedded.seed_history import HISTORY_END, HISTORY_START

    print(f"seeded history: {HISTORY_START:%Y-%m-%d} to {HISTORY_END:%Y-%m-%d} (UTC)", flush=True)
    if as_of is None:
        return
    created = [datetime.fromisoformat(v.last_modified) for truth in truths for v in truth.versions]
    before = sum(moment < as_of for moment in created)
    print(f"recovering as of {as_of:%Y-%m-%dT%H:%M:%SZ}: {before} versions created before it, "
          f"{len(created) - before} at or after it (never recovered)", flush=True)


def _drill_parameters(
    params_file: Path, sample: dict[str, int | float] | None, seed: int, out: Path, buckets: int = 1,
    as_of: datetime | None = None,
    *, restore_archived: bool = False, method: str | None = None, engine: str | None = None,
) -> Path:
    """Write the parameters the drill runs with into the run folder, check them, and return their path.

    A drill always runs on the embedded backend it starts, so its parameters say so
    (run.backend: embedded, which phase 00 checks against the profiles' endpoints); `--sample`
    sets job.sample, `--as-of` recover_as_of, `--restore-archived` restore.archived, `--verify`
    verification.method and `--engine` verification.engine.
    """
    import yaml

    from runbook_lib.params import load_params

    data = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    changes = ["run.backend: embedded (runbook drill starts the embedded backend)"]
    if isinstance(data, dict):
        run = data.setdefault("run", {})
        if isinstance(run, dict):
            run["backend"] = "embedded"
        past = data.get("history")
        if isinstance(past, dict) and isinstance(past.get("file"), str) and not Path(past["file"]).is_absolute():
            # The copy lives in the run folder; the history stays where the original parameter file names it.
            past["file"] = str((params_file.resolve().parent / past["file"]).resolve())
            changes.append("history.file made absolute, from the folder of the original parameter file")
        if sample is not None:
            job = data.setdefault("job", {})
            if isinstance(job, dict):
                job["sample"] = {**sample, "seed": seed}
                changes.append("job.sample set by runbook drill --sample")
        if buckets > 1:
            _many_buckets(data, buckets)
            changes.append(f"vault.buckets: the {buckets} seeded vault buckets (runbook drill --buckets)")
        if as_of is not None:
            data["recover_as_of"] = as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
            changes.append("recover_as_of set by runbook drill --as-of")
        if restore_archived:
            restore = data.setdefault("restore", {})
            if isinstance(restore, dict):
                restore["archived"] = True
                changes.append("restore.archived: true (runbook drill --restore-archived)")
        verification = data.setdefault("verification", {}) if (method or engine) else None
        if isinstance(verification, dict) and method is not None:
            verification["method"] = method
            # The embedded backend delivers a new configuration's first report at once; wait for it.
            verification.setdefault("inventory_wait_minutes", 30)
            changes.append("verification.method set by runbook drill --verify")
        if isinstance(verification, dict) and engine is not None:
            verification["engine"] = engine
            changes.append("verification.engine set by runbook drill --engine")
    written = out / DRILL_PARAMS_COPY
    header = f"# {params_file.name} as runbook drill ran it: " + "; ".join(changes) + "\n"
    written.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_params(written)
    return written


def _keep_evidence(run_dir: Path) -> None:
    """Bring summary.json's phase timings up to date and write evidence.html from the executed notebooks."""
    from runbook_lib import evidence

    evidence.refresh_phases(run_dir)
    evidence.export_html(run_dir)


def _report_drill(out: Path, results: list[PhaseResult], seconds: float, missing: list[str]) -> int:
    summary_path = out / "summary.json"
    _keep_evidence(out)
    for result in results:
        print(f"  {result.phase}: {result.status} in {result.seconds:.1f} s")
    if missing:
        print(f"verification is missing ({', '.join(missing)} not present): the drill cannot prove the recovery")
        return EXIT_FAIL
    if not summary_path.exists():
        print("phase 07 wrote no summary.json: the recovery is not verified", file=sys.stderr)
        return EXIT_FAIL
    summary = json.loads(summary_path.read_text())
    counts = summary.get("counts", {})
    print(f"verdict: {summary.get('verdict')}")
    print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"recovery time (phases 00-06 and retries): {summary.get('recovery_seconds', 0):.1f} s; "
          f"drill total {seconds:.1f} s")
    _report_sample(summary.get("sample"))
    view = summary.get("current_view")
    if view:
        reasons = ", ".join(f"{reason} {count}" for reason, count in view["by_reason"].items() if count)
        print(f"current view: {view['differing']} of {view['keys']} keys read differently from the vault"
              + (f" ({reasons})" if reasons else "") + f"; {view['unexplained']} without a documented reason")
    _report_archived(summary.get("archived"))
    print(f"evidence: {out / 'evidence.html'}")
    _report_history(summary)
    return EXIT_PASS if summary.get("verdict") == "PASS" else EXIT_FAIL


def _report_history(summary: dict[str, Any]) -> None:
    """Print where the verdict was recorded and how to see the trend."""
    identity = summary.get("identity") or {}
    if identity.get("history_file"):
        print(f"history: {identity['history_file']} (runbook history --file {identity['history_file']})")
def _report_archived(archived: dict[str, Any] | None) -> None:
    """Print what became of the archived versions in scope: restored and recovered, or left archived."""
    if not archived or not archived.get("in_scope"):
        return
    if archived.get("step"):
        print(f"archived versions in scope: {archived['in_scope']}, restored {archived['restored']}, "
              f"recovered {archived['recovered']}, not recovered {archived['not_recovered']}")
    else:
        print(f"archived versions in scope NOT recovered: {archived['not_recovered']} (restore.archived is false; "
              "runbook drill --restore-archived restores them)")


def _report_sample(sample: dict[str, Any] | None) -> None:
    """Print what a sample drill drew and the job time it extrapolates to the whole scope."""
    if not sample:
        return
    covered = all(row["drawn"] > 0 for row in sample["strata"])
    print(f"sample: {sample['drawn']} of {sample['population']} versions in scope, seed {sample['seed']}, "
          f"{len(sample['strata'])} strata" + (", every one drawn" if covered else ""))
    speed = sample.get("throughput")
    if speed:
        seconds = speed["whole_scope"]["seconds"]
        high = "no bound" if seconds["high"] is None else f"{seconds['high']:.1f} s"
        print(f"job time extrapolated to the whole scope: about {seconds['estimate']} s "
              f"(95 %: {seconds['low']} s to {high}) from {speed['tasks']} tasks")

