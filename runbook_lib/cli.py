"""The `runbook` command: drills, headless runs, the embedded backend, and JupyterLab."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from runbook_lib.errors import RunbookError, UsageError

__all__ = ["build_parser", "drill_as_of", "main", "sample_size"]

log = logging.getLogger("runbook")


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores its value where the new one would, and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str, **kwargs: object) -> None:
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)  # type: ignore[arg-type]

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"runbook: {option_string} is deprecated; use {self.replacement} instead", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_objects_option(parser: argparse.ArgumentParser, default: int | None, help_text: str) -> None:
    """Add --objects N, and --seed N as its deprecated spelling (scripts written before the rename)."""
    parser.add_argument("--objects", type=int, default=default, metavar="N", help=help_text)
    # SUPPRESS as default: the alias must not overwrite --objects' default with its own.
    parser.add_argument("--seed", dest="objects", type=int, default=argparse.SUPPRESS, metavar="N",
                        action=_DeprecatedAlias, replacement="--objects", help="deprecated spelling of --objects")


def _bucket_count(text: str) -> int:
    """Return `--buckets`'s value: a whole number of vault buckets from 1 to 20."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of vault buckets from 1 to 20, got {text!r}") from None
    if not 1 <= count <= 20:
        raise argparse.ArgumentTypeError(f"expected a whole number of vault buckets from 1 to 20, got {count}")
    return count


def drill_as_of(text: str) -> datetime:
    """Return `--as-of`'s value: an ISO 8601 time with a timezone inside the seeded vault's history."""
    from runbook_lib.embedded.seed_history import AS_OF_EARLIEST, AS_OF_LATEST

    window = f"{AS_OF_EARLIEST:%Y-%m-%dT%H:%M:%SZ} to {AS_OF_LATEST:%Y-%m-%dT%H:%M:%SZ}"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time with a timezone, such as 2025-01-01T00:00:00Z, not {text!r}")
    moment = moment.astimezone(timezone.utc)
    if not AS_OF_EARLIEST <= moment <= AS_OF_LATEST:
        raise argparse.ArgumentTypeError(
            f"expected a time inside the drill vault's seeded history, from {window} (UTC), not {text!r}")
    return moment
def _seconds(text: str) -> float:
    """Return a number of seconds of at least 0, or refuse the argument naming what is expected."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds of 0 or more, got {text!r}")
    return value


def sample_size(text: str) -> dict[str, int | float]:
    """Return `--sample`'s value as job.sample's size: a whole number is a count, a decimal up to 1 a fraction."""
    try:
        count = int(text)
    except ValueError:
        count = None
    if count is not None:
        if count < 1:
            raise argparse.ArgumentTypeError(f"expected a number of versions of 1 or more, or a fraction, not {text}")
        return {"count": count}
    try:
        fraction = float(text)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction <= 1:
        raise argparse.ArgumentTypeError(
            f"expected a number of versions (such as 50) or a fraction of the scope (such as 0.1), not {text!r}")
    return {"fraction": fraction}


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("faults injected by the embedded backend")
    group.add_argument("--fail-tasks", type=float, default=0.0, metavar="FRACTION",
                       help="fraction of replication tasks that fail transiently (0..1)")
    group.add_argument("--throttle", type=float, default=0.0, metavar="FRACTION",
                       help="fraction of S3 requests answered 503 SlowDown (0..1)")
    group.add_argument("--latency-ms", type=float, default=0.0, metavar="MS",
                       help="latency added to every request, to model AWS round trips")
    group.add_argument("--fault-seed", type=int, default=0, metavar="N",
                       help="seed that makes the injected faults repeatable")
    group.add_argument("--fail-bucket", action="append", default=[], metavar="BUCKET",
                       help="a vault bucket every replication task of which fails, retries too (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `runbook` command."""
    parser = argparse.ArgumentParser(
        prog="runbook",
        description="Recover S3 Object Lock golden copies with S3 Batch Replication, and prove it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    drill = commands.add_parser("drill", help="run a full recovery drill on the embedded backend")
    drill.add_argument("--objects", type=int, default=300, metavar="N",
                       help="object versions to seed in the drill's vault (default 300)")
    drill.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="run folder for executed notebooks and evidence (default runs/drill-<time>)")
    drill.add_argument("--params", type=Path, default=None, metavar="FILE",
                       help="parameter set (default parameters/drill.yaml)")
    drill.add_argument("--random-seed", type=int, default=1, metavar="N",
                       help="seed that makes the drill's vault repeatable (default 1)")
    drill.add_argument("--buckets", type=_bucket_count, default=1, metavar="N",
                       help="vault buckets to seed, each with --objects versions, and recover together (default 1)")
    drill.add_argument("--verify", choices=("head", "inventory", "auto"), default=None,
                       help="how phase 07 reads the buckets (default: the parameters' verification.method)")
    drill.add_argument("--engine", choices=("duckdb", "athena"), default=None,
                       help="where inventory verification's SQL runs (default: verification.engine)")
    drill.add_argument("--sample", type=sample_size, default=None, metavar="N",
                       help="a sample drill: recover N versions drawn from the scope (or a fraction such as 0.1)")
    drill.add_argument("--as-of", type=drill_as_of, default=None, metavar="TIME",
                       help="recover the vault as of TIME (ISO 8601 UTC, inside the seeded history: "
                            "2024-01-02T00:00:00Z to 2025-12-30T00:00:00Z)")
    drill.add_argument("--sample-seed", type=int, default=1, metavar="N",
                       help="seed that makes the sample's random draw repeatable (default 1)")
    drill.add_argument("--restore-archived", action="store_true",
                       help="restore the vault's archived versions in scope before replicating them "
                            "(restore.archived: true)")
    _add_fault_options(drill)

    run = commands.add_parser("run", help="run phases against what the parameters name (AWS or embedded)")
    run.add_argument("--params", type=Path, required=True, metavar="FILE", help="parameter set (YAML)")
    run.add_argument("--out", type=Path, required=True, metavar="DIR", help="run folder (resumes from its ledger)")
    run.add_argument("--from", dest="from_phase", default=None, metavar="PHASE",
                     help="first phase to run, by number or name (e.g. 03 or 03_grants)")
    run.add_argument("--to", dest="to_phase", default=None, metavar="PHASE", help="last phase to run")
    run.add_argument("--confirm-job", action="store_true",
                     help="confirm the Batch Replication job when it awaits confirmation")
    run.add_argument("--plan", type=Path, default=None, metavar="FILE",
                     help="a plan made by runbook plan: refuse to start unless the run would do exactly that")

    plan = commands.add_parser("plan", help="every change each phase would make, changing nothing")
    plan.add_argument("--params", type=Path, required=True, metavar="FILE", help="parameter set (YAML)")
    plan.add_argument("--out", type=Path, required=True, metavar="DIR",
                      help="run folder: plan.json and plan.txt go there (its run state is read, never changed)")
    plan.add_argument("--from", dest="from_phase", default=None, metavar="PHASE", help="first phase to plan")
    plan.add_argument("--to", dest="to_phase", default=None, metavar="PHASE", help="last phase to plan")

    backend = commands.add_parser("backend", help="serve the embedded AWS in the foreground")
    backend.add_argument("--port", type=int, default=5055, metavar="P", help="port on 127.0.0.1 (0 picks a free one)")
    _add_objects_option(backend, None, "seed a realistic vault of N object versions (default: no vault)")
    backend.add_argument("--random-seed", type=int, default=1, metavar="N", help="seed of the vault's randomness")
    backend.add_argument("--buckets", type=_bucket_count, default=1, metavar="N",
                         help="with --objects: vault buckets to seed, each with its own key (default 1)")
    backend.add_argument("--config-file", type=Path, default=None, metavar="PATH",
                         help="where to write the AWS config file (default: a temporary folder)")
    backend.add_argument("--restore-seconds", type=_seconds, default=1.0, metavar="S",
                         help="how long restoring an archived version takes in the backend (default 1)")
    backend.add_argument("--truth-file", type=Path, default=None, metavar="PATH",
                         help="where to write the seeded vault's ground truth (JSON)")
    backend.add_argument("--inventory-every", type=float, default=None, metavar="SECONDS",
                         help="deliver every S3 Inventory report again this often (default: once per "
                              "configuration, when it is put or changed)")
    backend.add_argument("--vault-inventory", action="store_true",
                         help="give the seeded vault its owners' daily S3 Inventory, first report delivered "
                              "(phase 00 reads its figures there when verification is by inventory)")
    _add_fault_options(backend)

    lab = commands.add_parser(
        "lab", help="JupyterLab on the notebooks: the embedded drill world, or the accounts of --params",
        description="JupyterLab on a run folder. Without --params: the embedded backend with a seeded vault "
                    "(a drill). With --params: the accounts the file names; no embedded backend is started.")
    lab.add_argument("--params", type=Path, default=None, metavar="FILE",
                     help="parameter set naming the accounts to work on (default: a drill on the embedded backend)")
    lab.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="run folder (default: a new runs/lab-<time> for each session)")
    lab.add_argument("--port", type=int, default=5055, metavar="P",
                     help="embedded backend port on 127.0.0.1, without --params (0 picks a free one)")
    _add_objects_option(lab, 300, "object versions to seed in the embedded vault, without --params (default 300)")
    lab.add_argument("--lab-port", type=int, default=8888, metavar="P", help="JupyterLab port (0 picks a free one)")
    lab.add_argument("--no-browser", action="store_true",
                     help="do not open a browser (the default where there is no display)")
    lab.add_argument("--keep-kernels", action="store_true",
                     help="keep each notebook's kernel running after its phase finishes")

    evidence = commands.add_parser("evidence", help="build evidence.html from a run folder, headless or lab")
    evidence.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder")

    history = commands.add_parser(
        "history", help="the trend of every recorded drill and recovery verdict",
        description="One line per recorded verdict: time, run, purpose, verdict, versions, recovery time and "
                    "what changed. Reads history.file of --params, else runs/history.jsonl in this folder.")
    history.add_argument("--params", type=Path, default=None, metavar="FILE",
                         help="parameter set whose history.file to read (relative to that file's folder)")
    history.add_argument("--file", type=Path, default=None, metavar="PATH",
                         help="read this history file instead (a run without history.file appends next to "
                              "its run folder)")
    return parser


def _faults(args: argparse.Namespace) -> object:
    from runbook_lib.embedded.faults import Faults

    return Faults(task_failure_rate=args.fail_tasks, throttle_rate=args.throttle,
                  latency_ms=args.latency_ms, seed=args.fault_seed, fail_buckets=tuple(args.fail_bucket))


def _serve_backend(args: argparse.Namespace) -> int:
    from runbook_lib.drill import write_ground_truth
    from runbook_lib.embedded.seed import seed_owner_inventories, seed_vaults
    from runbook_lib.embedded.server import (
        RECOVERY_PROFILE,
        VAULT_PROFILE,
        start_backend,
    )

    if args.vault_inventory and not args.objects:
        raise UsageError("--vault-inventory gives a seeded vault its inventory: add --objects N")
    backend = start_backend(port=args.port, config_file=args.config_file, faults=_faults(args),  # type: ignore[arg-type]
                            restore_seconds=args.restore_seconds, inventory_every=args.inventory_every)
    print(f"embedded AWS listening on {backend.endpoint}")
    print(f"AWS config file: {backend.config_file}")
    print(f"  export AWS_CONFIG_FILE={backend.config_file}")
    print(f"  profiles: {VAULT_PROFILE} (vault), {RECOVERY_PROFILE} (recovery)")
    if args.objects:
        try:
            truths = seed_vaults(backend.endpoint, args.buckets, args.objects, args.random_seed)
            if args.vault_inventory:
                for delivery in seed_owner_inventories(backend.endpoint, truths):
                    print(f"vault inventory of {delivery.source_bucket}: "
                          f"s3://{delivery.destination_bucket}/{delivery.manifest_key}")
        except BaseException:
            backend.stop()  # the port must not stay taken by a backend whose vault is half-built
            raise
        for truth in truths:
            counts = truth.counts()
            print(f"seeded vault bucket {truth.vault_bucket}: {counts['source_versions']} versions, "
                  f"{counts['expected']} expected to recover")
        if args.truth_file:
            write_ground_truth(args.truth_file, truths)
            print(f"ground truth: {args.truth_file}")
    print("press Ctrl-C to stop", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    backend.stop()
    return 0


def _build_evidence(run_dir: Path) -> int:
    """`runbook evidence RUN_DIR`: evidence.html from the run folder's executed notebooks, headless or lab."""
    from runbook_lib import evidence

    print(f"evidence: {evidence.build_evidence(run_dir)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the `runbook` command and return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.command == "backend":
            return _serve_backend(args)
        if args.command == "lab":
            from runbook_lib import lab

            return lab.run_lab(args)
        if args.command == "evidence":
            return _build_evidence(args.run_dir)
        if args.command == "history":
            from runbook_lib import history

            return history.show_history(args.params, args.file)
        from runbook_lib import drill as drill_module

        if args.command == "drill":
            return drill_module.run_drill(args)
        if args.command == "run":
            return drill_module.run_phases_command(args)
        if args.command == "plan":
            return drill_module.plan_command(args)
    except RunbookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
