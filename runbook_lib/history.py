"""The drill and recovery history: one record per verdict, appended to a file the user keeps.

**Format: JSON Lines** (one JSON object per line, UTF-8). Chosen because:

- an analyst opens it without a converter: `pandas.read_json(path, lines=True)` (nested fields
  flattened with `pandas.json_normalize`) and DuckDB's `read_json_auto(path)` read it as it is;
- a record is appended with one `O_APPEND` write of one whole line (under an advisory lock, so the
  check for a line cut short and the write are one step), so two runs finishing at the same moment
  never interleave, and nothing already written is ever rewritten (a columnar file such as
  Parquet would have to be rewritten to grow, which a crash could leave half-done);
- each line stands alone: a damaged line costs that record only, and the reader names it;
- records hold nested values (counts by category, buckets, library versions) that CSV cannot.

Every record carries `schema` (`SCHEMA`); a reader refuses a schema it does not know, naming the
line, rather than guess what its fields mean.

**Where:** the parameter `history.file`; a relative path is taken from the parameter file's folder
(so a run, a lab session and `runbook history` given the same parameter file agree, wherever they
are started). Without it, `history.jsonl` in the folder that holds the run folder: `runbook drill`
writes `runs/drill-<time>/`, `runbook run --out runs/recovery-1` writes `runs/recovery-1/`, and
both append to `runs/history.jsonl`.

**When:** every verification that reaches PASS or FAIL appends one record (`record_verdict`), and
so does a verification that stopped on an error, which ends FAIL. Re-running phase 07 in the same
run folder is a second verification, so it appends a second record with the same run identity
(`run_folder`, `run_started`); the trend marks it as a re-verification of the earlier line. A
verification waiting for a confirmation (INCOMPLETE) has reached no verdict and appends nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook_lib import __version__, reconciliation
from runbook_lib.errors import HistoryError
from runbook_lib.ledger import LEDGER_FILE, open_ledger

if TYPE_CHECKING:
    from runbook_lib.params import RunbookParams

__all__ = [
    "DEFAULT_NAME",
    "SCHEMA",
    "History",
    "append_record",
    "build_record",
    "command_history_file",
    "history_file",
    "library_versions",
    "parameters_digest",
    "plot_trend",
    "read_history",
    "record_verdict",
    "run_identity",
    "show_history",
    "trend_lines",
]

SCHEMA = 1
DEFAULT_NAME = "history.jsonl"
# The libraries whose versions can change what a run does or how it verifies; moto only on the embedded backend.
_LIBRARIES = ("boto3", "botocore", "pandas", "pyarrow", "numpy", "pydantic", "papermill", "nbconvert", "matplotlib")
_EMBEDDED_LIBRARIES = ("moto",)
# The verdicts a record may carry: a history holds concluded verifications only.
_RECORDED_VERDICTS = ("PASS", "FAIL")
# Fields every record of schema 1 has, with the JSON types they must have (None: null allowed).
_REQUIRED: dict[str, tuple[type | None, ...]] = {
    "recorded": (str,),
    "verdict": (str,),
    "run_id": (str,),
    "run_folder": (str,),
    "run_started": (str, None),
    "purpose": (str, None),
    "recovery_seconds": (int, float, None),
    "counts": (dict,),
    "libraries": (dict,),
    "tool_version": (str,),
}


def history_file(params: RunbookParams, params_file: str | Path, run_dir: str | Path) -> Path:
    """Return the history file a run appends to: `history.file` (from the parameters' folder), else by the run."""
    configured = params.history.file
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else (Path(params_file).resolve().parent / path)
    return Path(run_dir).resolve().parent / DEFAULT_NAME


def command_history_file(params: RunbookParams | None, params_file: str | Path | None) -> Path:
    """Return the history `runbook history` reads: `history.file` of the parameters, else runs/history.jsonl here.

    Without a run folder to stand next to, the default is where `runbook drill` and the README's
    `runbook run --out runs/...` put their run folders.
    """
    if params is not None and params_file is not None and params.history.file:
        return history_file(params, params_file, Path.cwd())
    return (Path("runs") / DEFAULT_NAME).resolve()


def library_versions(embedded: bool) -> dict[str, str | None]:
    """Return the installed version of Python and of each library that shapes a run (None when not installed)."""
    names = _LIBRARIES + (_EMBEDDED_LIBRARIES if embedded else ())
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def parameters_digest(params: RunbookParams) -> str:
    """Return the SHA-256 of the parameters as loaded (comments and layout aside; a secret token only masked)."""
    text = json.dumps(params.redacted(), sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _bucket_pairs(params: RunbookParams) -> list[dict[str, Any]]:
    """Return the run's vault and recovery buckets, one entry per pair (one pair in the one-bucket form)."""
    return [{"vault_bucket": p.vault_bucket, "recovery_bucket": p.recovery_bucket, "key_prefix": p.key_prefix}
            for p in params.bucket_pairs]


def run_identity(params: RunbookParams, params_file: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """Return what identifies a run for an auditor: run, accounts, buckets, tool and libraries, parameters digest."""
    folder = Path(run_dir).resolve()
    started = open_ledger(folder).state.started if (folder / LEDGER_FILE).exists() else None
    embedded = params.run.backend == "embedded"
    return {
        "run_id": params.run_id,
        "run_started": started,
        "run_folder": str(folder),
        "parameters_file": str(Path(params_file).resolve()),
        "parameters_digest": parameters_digest(params),
        "accounts": {"vault": params.vault.account_id, "recovery": params.recovery.account_id},
        "region": params.region,
        "buckets": _bucket_pairs(params),
        "report_bucket": params.report_bucket,
        "tool": "s3-vault-recovery-runbook",
        "tool_version": __version__,
        "libraries": library_versions(embedded),
        "history_file": str(history_file(params, params_file, folder)),
    }


def _finished_phase_seconds(phases: list[dict[str, Any]]) -> dict[str, float]:
    """Return the seconds of each phase that had finished when the verdict was written (07 itself is still running)."""
    return {str(p["phase"]): float(p.get("seconds") or 0.0) for p in phases if p.get("status") == "ok"}


def _verification_method(summary: dict[str, Any]) -> str:
    """Return how the recovery was verified, in a few words: every version in scope, or a sample of it."""
    run = summary.get("run") or {}
    if run.get("scale") == "sample" or summary.get("sample"):
        return "sample: every drawn version compared with the vault"
    return "full: every version in scope compared with the vault"


def _buckets(summary: dict[str, Any], identity: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the per-bucket results the summary has (many buckets), else the identity's bucket pairs."""
    buckets = summary.get("buckets")
    if isinstance(buckets, list) and buckets:
        return buckets
    if isinstance(buckets, dict) and buckets:
        return [{"vault_bucket": name, **value} if isinstance(value, dict) else {"vault_bucket": name}
                for name, value in buckets.items()]
    return list(identity.get("buckets") or [])


def build_record(summary: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """Return the history record of one verdict, from the run's summary.json and its identity."""
    counts = summary.get("counts") or {}
    run = summary.get("run") or {}
    categories = summary.get("categories") or {}
    return {
        "schema": SCHEMA,
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "verdict": summary.get("verdict"),
        "verdict_written": summary.get("written"),
        "reason": summary.get("reason"),
        "run_id": identity.get("run_id"),
        "run_started": identity.get("run_started"),
        "run_folder": identity.get("run_folder"),
        "purpose": run.get("purpose"),
        "backend": run.get("backend"),
        "scale": run.get("scale"),
        "verification_method": _verification_method(summary),
        "versions": {"source": counts.get("source_versions"), "expected": counts.get("expected"),
                     "recovered": counts.get("recovered")},
        "bytes": summary.get("bytes"),
        "counts": counts,
        "categories": categories,
        "findings": len(summary.get("findings") or []),
        "phase_seconds": _finished_phase_seconds(summary.get("phases") or []),
        "recovery_seconds": summary.get("recovery_seconds"),
        "retry_rounds": len(summary.get("retry_rounds") or []),
        "as_of": summary.get("as_of"),
        "buckets": _buckets(summary, identity),
        "current_view": summary.get("current_view"),
        "archived": summary.get("archived"),
        "accounts": identity.get("accounts"),
        "region": identity.get("region"),
        "tool_version": identity.get("tool_version"),
        "libraries": identity.get("libraries") or {},
        "parameters_digest": identity.get("parameters_digest"),
    }


def append_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Append one record to the history as one line, in one O_APPEND write, and return the file's path.

    The file and its folder are created when missing. A file whose last line was cut short (a full
    disk, a copy interrupted) gets a line break first, so the new record stays a line of its own.
    """
    target = Path(path)
    line = json.dumps(record, sort_keys=False, default=str, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise HistoryError(f"cannot append to the history {target}: {error.strerror or error}; "
                           "set history.file to a file you may write", str(target)) from error
    try:
        # The lock makes the look at the last byte and the write one step for every runbook appending
        # here; the single O_APPEND write keeps each line whole even for a writer that takes no lock.
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if os.fstat(descriptor).st_size and not _ends_with_newline(target):
            line = "\n" + line
        os.write(descriptor, line.encode("utf-8"))
    except OSError as error:
        raise HistoryError(f"cannot append to the history {target}: {error.strerror or error}", str(target)) from error
    finally:
        os.close(descriptor)  # closing releases the lock
    return target


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def record_verdict(summary_path: str | Path, identity: dict[str, Any]) -> Path | None:
    """Append the record of the verdict summary.json holds now to the identity's history file; None when no verdict.

    A summary that is INCOMPLETE (running, waiting for a confirmation) has reached no verdict and is not recorded.
    """
    summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
    if summary.get("verdict") not in _RECORDED_VERDICTS:
        return None
    return append_record(identity["history_file"], build_record(summary, identity))


@dataclass
class History:
    """The records of a history file that could be read, and one problem per line that could not."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _record_problem(value: Any) -> str | None:
    """Return what is wrong with one parsed line, or None when it is a record this release can read."""
    if not isinstance(value, dict):
        return f"expected a JSON object (a record), found {type(value).__name__}"
    schema = value.get("schema")
    if schema != SCHEMA or isinstance(schema, bool):
        return (f"unknown schema {schema!r} (this release reads schema {SCHEMA}); "
                "a newer release of the runbook wrote it, or the line is not a history record")
    for name, types in _REQUIRED.items():
        if name not in value:
            return f"field {name!r} is missing"
        item = value[name]
        allowed = tuple(t for t in types if t is not None)
        if item is None and None in types:
            continue
        if isinstance(item, bool) or not isinstance(item, allowed):
            names = " or ".join(t.__name__ for t in allowed) + (" or null" if None in types else "")
            return f"field {name!r} should be {names}, found {json.dumps(item, default=str)[:60]}"
    if value["verdict"] not in _RECORDED_VERDICTS:
        return f"field 'verdict' should be PASS or FAIL, found {value['verdict']!r}"
    seconds = value["recovery_seconds"]
    if isinstance(seconds, float) and not math.isfinite(seconds):
        return "field 'recovery_seconds' should be a finite number"
    return None


def read_history(path: str | Path) -> History:
    """Read every line of a history file: the good records, and for each bad line a problem naming the file and line."""
    source = Path(path)
    history = History(source)
    if not source.exists():
        return history
    with source.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problem: str | None = "not UTF-8 text"
            except json.JSONDecodeError as error:
                cut = "" if raw.endswith(b"\n") else " (the line is cut short: the file ends inside it)"
                problem = f"not valid JSON: {error.msg} at character {error.pos + 1}{cut}"
            else:
                problem = _record_problem(value)
            if problem is None:
                history.records.append(value)
                history.lines.append(number)
            else:
                history.problems.append(f"{source}, line {number}: {problem}")
    return history


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _differing(record: dict[str, Any]) -> int:
    """Return the versions in a category of difference; without categories, expected minus recovered."""
    categories = record.get("categories")
    if isinstance(categories, dict) and categories:
        return reconciliation.differing_versions(categories)
    versions = record.get("versions") or {}
    expected, recovered = versions.get("expected"), versions.get("recovered")
    if isinstance(expected, int) and isinstance(recovered, int):
        return max(expected - recovered, 0)
    return 0


def _changes(record: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    """Return what differs from the previous record: tool, libraries, buckets, parameters, versions in scope."""
    if previous is None:
        return []
    changes = []
    if record.get("tool_version") != previous.get("tool_version"):
        changes.append(f"tool {previous.get('tool_version')} -> {record.get('tool_version')}")
    before, after = previous.get("libraries") or {}, record.get("libraries") or {}
    changes += [f"{name} {before.get(name)} -> {after.get(name)}" for name in sorted(set(before) | set(after))
                if before.get(name) != after.get(name) and before.get(name) and after.get(name)]
    names = [[b.get("vault_bucket") for b in r.get("buckets") or [] if isinstance(b, dict)]
             for r in (previous, record)]
    if names[0] != names[1]:
        changes.append(f"buckets {len(names[0])} -> {len(names[1])}" if len(names[0]) != len(names[1])
                       else "other buckets")
    if record.get("as_of") != previous.get("as_of"):
        changes.append(f"point in time {previous.get('as_of') or 'none'} -> {record.get('as_of') or 'none'}")
    expected = [(r.get("versions") or {}).get("expected") for r in (previous, record)]
    if expected[0] != expected[1]:
        changes.append(f"expected {expected[0]} -> {expected[1]}")
    if record.get("parameters_digest") != previous.get("parameters_digest"):
        changes.append("parameters changed")
    return changes


def trend_lines(history: History) -> list[str]:
    """Return the trend, one line per record in file order, under a header.

    Each line: when the verdict was written, run id, purpose and backend, verdict, versions recovered
    of expected, versions in a category of difference (extras included), recovery time, and what
    changed since the previous record; a record of a run folder already recorded is marked as its
    re-verification.
    """
    rows = [("time (UTC)", "run", "purpose", "verdict", "recovered/expected", "differing", "recovery",
             "differences")]
    first_line: dict[tuple[Any, Any], int] = {}
    previous: dict[str, Any] | None = None
    for record, line in zip(history.records, history.lines, strict=True):
        notes = []
        identity = (record.get("run_folder"), record.get("run_started"))
        if identity in first_line:
            notes.append(f"re-verification of the run of line {first_line[identity]}")
        else:
            first_line[identity] = line
        notes += _changes(record, previous)
        versions = record.get("versions") or {}
        when = str(record.get("verdict_written") or record.get("recorded") or "")[:19].replace("T", " ")
        purpose = "/".join(str(part) for part in (record.get("purpose"), record.get("backend")) if part)
        rows.append((when, str(record.get("run_id")), purpose or "-", str(record.get("verdict")),
                     f"{versions.get('recovered', '-')}/{versions.get('expected', '-')}", str(_differing(record)),
                     _seconds(record.get("recovery_seconds")), "; ".join(notes) or "-"))
        previous = record
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
            for row in rows]


def show_history(params_file: str | Path | None, file: str | Path | None = None) -> int:
    """`runbook history`: print the trend of the history and return the exit code (0; 2 when a record is bad).

    The good records are printed even when some lines are bad: each line stands alone, so a bad one
    hides nothing about the others. The bad lines are then listed on stderr, each with the file and
    line, and the exit code is 2 (bad input), as for any file the command cannot read as it should.
    """
    from runbook_lib.params import load_params

    params = load_params(params_file) if params_file is not None else None
    path = Path(file).resolve() if file is not None else command_history_file(params, params_file)
    history = read_history(path)
    if not history.records and not history.problems:
        print(f"no history yet: {path} does not exist or is empty. Each run appends one record there "
              "when its verification reaches a verdict (runbook drill, or phase 07 of runbook run).")
        return 0
    print(f"history: {path} ({len(history.records)} record(s))")
    if history.records:
        print("\n".join(trend_lines(history)))
    if history.problems:
        print(f"error: {len(history.problems)} line(s) of {path} cannot be read; they are left out above. "
              "Remove or repair them (each line is one record; the file is plain text):", file=sys.stderr)
        for problem in history.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    return 0


def plot_trend(records: list[dict[str, Any]], title: str = "Recovery time and verdict, run by run") -> Any:
    """Return a plot of each record's recovery time, coloured by its verdict, in the order the runs were recorded."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5))
    if records:
        positions = list(range(1, len(records) + 1))
        seconds = [float(r["recovery_seconds"]) if isinstance(r.get("recovery_seconds"), (int, float)) else 0.0
                   for r in records]
        colours = ["#2e7d32" if r.get("verdict") == "PASS" else "#c62828" for r in records]
        axes.plot(positions, seconds, color="#9e9e9e", linewidth=1, zorder=1)
        axes.scatter(positions, seconds, c=colours, s=40, zorder=2)
        for position, record, value in zip(positions, records, seconds, strict=True):
            axes.annotate(str(record.get("verdict")), (position, value), textcoords="offset points",
                          xytext=(0, 6), ha="center", fontsize=7)
        labels = [str(r.get("verdict_written") or r.get("recorded") or "")[:16].replace("T", " ") for r in records]
        axes.set_xticks(positions, labels, rotation=30, ha="right", fontsize=7)
        axes.set_ylim(0, max(max(seconds) * 1.25, 1.0))
        axes.set_xlim(0.5, len(records) + 0.5)
    else:
        axes.text(0.5, 0.5, "no record in the history yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_title(title)
    axes.set_xlabel("run (when the verdict was written, UTC); green PASS, red FAIL")
    axes.set_ylabel("recovery time (s)")
    figure.tight_layout()
    plt.close(figure)
    return figure
