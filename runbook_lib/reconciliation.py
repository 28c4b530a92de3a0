"""The one-page reconciliation an auditor is handed: what was expected, recovered, differing, and why.

Every figure is taken from the run's summary.json (the verification's counts and categories) and
its identity (accounts, buckets, time, tool version, parameters digest), never recomputed: the page
says what the verification said. It is written into the run folder as `reconciliation.html` (a
page of its own, to hand over alone) and shown in evidence.html as markdown (`markdown`).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RECONCILIATION_FILE",
    "Figures",
    "differing_versions",
    "figures",
    "markdown",
    "remove_reconciliation",
    "write_reconciliation",
]

RECONCILIATION_FILE = "reconciliation.html"

# Why a version is in each category, in the words the page uses; a category this release does not
# know is shown by its name.
_WHY: dict[str, str] = {
    "task_failed": "its replication task failed (AWS's error code is in details/task_failed.csv) and no retry "
                   "round recovered it",
    "missing_in_recovery": "expected, and not in the recovery bucket",
    "extra_in_recovery": "in the recovery bucket although outside the scope: not put there by this recovery",
    "content_differs": "size, ETag or checksum differ from the vault's: not the golden copy's content",
    "lock_mode_differs": "its Object Lock mode differs from the vault's",
    "retain_until_differs": "its retain-until date differs from the vault's",
    "legal_hold_differs": "its legal hold differs from the vault's",
    "unknown_unreadable": "its lock or legal hold could not be read; unknown never passes",
    "eligible_not_in_manifest": "in scope in the vault, but no manifest of the job lists it",
    "in_manifest_not_eligible": "a manifest lists it, but the scope excludes it",
    "not_in_report": "expected, but no completion report has a task for it",
    "not_expected": "outside the scope (a delete marker, archived, or not selected by the filter): not to be recovered",
    "not_sampled": "in scope but not drawn for this sample drill: not expected, not counted as recovered",
    "after_as_of": "created at or after the point in time: out of scope, never recovered",
    "archived_not_recovered": "archived (GLACIER or DEEP_ARCHIVE) and the restore step was off: reported, "
                              "not recovered",
}
# Categories that are left out by design: reported, never a difference.
_OUT_OF_SCOPE = ("not_expected", "not_sampled", "after_as_of", "archived_not_recovered")


@dataclass(frozen=True)
class Figures:
    """The reconciliation's figures, each read from the summary: counts, and rows of (category, versions, why)."""

    verdict: str
    source_versions: int | None
    expected: int | None
    recovered: int | None
    not_recovered: int | None
    bytes_expected: int | None
    bytes_recovered: int | None
    differing: list[tuple[str, int, str]] = field(default_factory=list)
    left_out: list[tuple[str, int, str]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    current_view: list[tuple[str, Any]] = field(default_factory=list)
    archived: list[tuple[str, Any]] = field(default_factory=list)


def _is_difference(category: str) -> bool:
    """Whether a category is a difference: neither recovered nor left out by design."""
    return not category.startswith("recovered") and category not in _OUT_OF_SCOPE


def differing_versions(categories: dict[str, Any]) -> int:
    """Return the versions in a category of difference (missing, failed, extra, differing fields, ...)."""
    return sum(n for name, n in categories.items() if _is_difference(name) and _as_int(n))


def _why(category: str) -> str:
    return _WHY.get(category, category.replace("_", " "))


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _flat(section: Any) -> list[tuple[str, Any]]:
    """Return a summary section (current view, archived) as (name, value) rows; nested parts as compact JSON."""
    if not isinstance(section, dict):
        return []
    counts = section.get("counts")
    source = counts if isinstance(counts, dict) else section
    return [(str(name), value if isinstance(value, (int, float, str)) else json.dumps(value, default=str)[:120])
            for name, value in source.items() if value not in (None, [], {})]


def figures(summary: dict[str, Any]) -> Figures:
    """Return the reconciliation's figures from a summary.json document."""
    counts = summary.get("counts") or {}
    categories = {name: n for name, n in (summary.get("categories") or {}).items() if _as_int(n)}
    expected, recovered = _as_int(counts.get("expected")), _as_int(counts.get("recovered"))
    volume = summary.get("bytes") or {}
    differing = [(name, n, _why(name)) for name, n in categories.items() if _is_difference(name)]
    left_out = [(name, n, _why(name)) for name, n in categories.items() if name in _OUT_OF_SCOPE]
    return Figures(
        verdict=str(summary.get("verdict")),
        source_versions=_as_int(counts.get("source_versions")),
        expected=expected,
        recovered=recovered,
        not_recovered=(expected - recovered) if expected is not None and recovered is not None else None,
        bytes_expected=_as_int(volume.get("expected")),
        bytes_recovered=_as_int(volume.get("recovered")),
        differing=differing,
        left_out=left_out,
        findings=[str(f) for f in summary.get("findings") or []],
        current_view=_flat(summary.get("current_view")),
        archived=_flat(summary.get("archived")),
    )


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _identity_rows(summary: dict[str, Any], identity: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the run's identity as (label, value) rows: who, where, when, with what."""
    run = summary.get("run") or {}
    accounts = identity.get("accounts") or {}
    buckets = "; ".join(f"{b.get('vault_bucket')} -> {b.get('recovery_bucket')}"
                        for b in identity.get("buckets") or [] if isinstance(b, dict))
    libraries = ", ".join(f"{name} {version}" for name, version in (identity.get("libraries") or {}).items()
                          if version)
    scope = (summary.get("scope") or {}).get("description")
    job_ids = ", ".join(str(a.get("job_id")) for a in summary.get("job_attempts") or [] if isinstance(a, dict))
    return [
        ("verdict", f"{summary.get('verdict')} (written {summary.get('written')})"),
        ("run", f"{identity.get('run_id')}, started {identity.get('run_started')}, "
                f"{run.get('description') or run.get('purpose') or '-'}"),
        ("run folder", str(identity.get("run_folder"))),
        ("accounts", f"vault {accounts.get('vault')}, recovery {accounts.get('recovery')} "
                     f"(region {identity.get('region')})"),
        ("buckets (vault -> recovery)", buckets or "-"),
        ("scope", str(scope or "-")),
        ("point in time", str(summary.get("as_of") or "none: the versions as they are")),
        ("jobs", job_ids or "-"),
        ("verification", "every expected version compared with the vault: size, ETag (and checksum where both "
                         "have one), Object Lock mode, retain-until date, legal hold"),
        ("tool", f"{identity.get('tool')} {identity.get('tool_version')}"),
        ("libraries", libraries or "-"),
        ("parameters", f"{identity.get('parameters_file')} ({identity.get('parameters_digest')})"),
    ]


def _balance_rows(numbers: Figures) -> list[tuple[str, str, str]]:
    """Return the balance: vault, expected, recovered, not recovered, with bytes where known."""
    return [
        ("versions in the vault", _number(numbers.source_versions), ""),
        ("expected (in scope)", _number(numbers.expected), _number(numbers.bytes_expected)),
        ("recovered identical", _number(numbers.recovered), _number(numbers.bytes_recovered)),
        ("expected, not recovered identical", _number(numbers.not_recovered), ""),
    ]


def markdown(summary: dict[str, Any], identity: dict[str, Any]) -> str:
    """Return the reconciliation as markdown, for evidence.html."""
    numbers = figures(summary)
    lines = [f"## Reconciliation: {numbers.verdict}", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {_md(value)} |" for label, value in _identity_rows(summary, identity)]
    lines += ["", "| | versions | bytes |", "|---|---:|---:|"]
    lines += [f"| {label} | {count} | {size} |" for label, count, size in _balance_rows(numbers)]
    lines += ["", "**Differing**, and why (a version counts in its first category):", ""]
    lines += _md_table(numbers.differing, "no version differs")
    lines += ["", "**Left out by design** (reported, never recovered, never a difference):", ""]
    lines += _md_table(numbers.left_out, "nothing left out")
    if numbers.current_view:
        lines += ["", "**What applications will read** (current view):", "", "| | |", "|---|---|"]
        lines += [f"| {name} | {_md(str(value))} |" for name, value in numbers.current_view]
    if numbers.archived:
        lines += ["", "**Archived golden copies:**", "", "| | |", "|---|---|"]
        lines += [f"| {name} | {_md(str(value))} |" for name, value in numbers.archived]
    lines += ["", "**Findings on the jobs' manifests, reports and counters:** "
              + ("; ".join(_md(f) for f in numbers.findings) if numbers.findings else "none.")]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[tuple[str, int, str]], empty: str) -> list[str]:
    if not rows:
        return [f"*{empty}.*"]
    return ["| category | versions | why |", "|---|---:|---|"] + [
        f"| `{name}` | {count:,} | {_md(why)} |" for name, count, why in rows]


def _html_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(summary: dict[str, Any], identity: dict[str, Any]) -> str:
    """Return the reconciliation as one self-contained HTML page (no script, no external resource)."""
    numbers = figures(summary)
    colour = {"PASS": "#2e7d32", "FAIL": "#c62828"}.get(numbers.verdict, "#b26a00")
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Reconciliation: {html.escape(numbers.verdict)}</title><style>",
        "body{font-family:sans-serif;font-size:11pt;max-width:60em;margin:1.5em auto}"
        "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #bbb;padding:.2em .5em;"
        "text-align:left;vertical-align:top}h1{font-size:16pt}h2{font-size:12pt;margin-bottom:.2em}"
        "@page{size:A4;margin:1.5cm}</style></head><body>",
        f"<h1>Reconciliation of the recovery: <span style=\"color:{colour}\">"
        f"{html.escape(numbers.verdict)}</span></h1>",
        "<h2>The run</h2>", _html_table(("", ""), _identity_rows(summary, identity)),
        "<h2>Balance</h2>", _html_table(("", "versions", "bytes"), _balance_rows(numbers)),
        "<h2>Differing, and why</h2><p>A version counts in its first category.</p>",
        _html_table(("category", "versions", "why"), numbers.differing) if numbers.differing
        else "<p>No version differs.</p>",
        "<h2>Left out by design</h2><p>Reported, never recovered, never a difference.</p>",
        _html_table(("category", "versions", "why"), numbers.left_out) if numbers.left_out
        else "<p>Nothing left out.</p>",
    ]
    if numbers.current_view:
        parts += ["<h2>What applications will read</h2>", _html_table(("", ""), numbers.current_view)]
    if numbers.archived:
        parts += ["<h2>Archived golden copies</h2>", _html_table(("", ""), numbers.archived)]
    parts += ["<h2>Findings on the jobs' manifests, reports and counters</h2>",
              "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in numbers.findings) + "</ul>"
              if numbers.findings else "<p>None.</p>",
              "<p>Version by version: <code>details/*.csv</code> in the run folder; the whole run: "
              "<code>evidence.html</code>; the trend over runs: <code>runbook history</code>.</p>",
              "</body></html>"]
    return "".join(parts)


def write_reconciliation(run_dir: str | Path, identity: dict[str, Any]) -> Path:
    """Write reconciliation.html from the run folder's summary.json and the run's identity; return its path."""
    folder = Path(run_dir)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    target = folder / RECONCILIATION_FILE
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(_page(summary, identity), encoding="utf-8")
    temporary.replace(target)
    return target


def remove_reconciliation(run_dir: str | Path) -> None:
    """Remove the reconciliation of an earlier verdict, so none outlives the verdict it reconciled."""
    (Path(run_dir) / RECONCILIATION_FILE).unlink(missing_ok=True)
