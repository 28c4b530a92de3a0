"""Compare what the vault held with what the recovery bucket got, one object version at a time.

Every (key, version id) seen in the vault snapshot, the recovery snapshot or the manifest gets one
row in `Comparison.details`, with a boolean column per check and one primary `category`. When a
version has several problems, the category is the first that applies in this order (most urgent
and most explanatory first):

    task_failed               the report lists a failed task and the version is not identical
    missing_in_recovery       expected, but absent from the recovery bucket
    extra_in_recovery         in the recovery bucket but not expected (or not in the vault at all)
    content_differs           size, ETag or delete-marker flag differ
    lock_mode_differs         Object Lock mode differs
    retain_until_differs      retain-until date differs (compared to the second)
    legal_hold_differs        legal hold differs (no hold and OFF count as the same)
    unknown_unreadable        a field that decides the outcome could not be read, so nothing was concluded
    eligible_not_in_manifest  expected, yet no manifest of the run's jobs lists it
    in_manifest_not_eligible  a manifest lists it, yet it is not expected
    not_in_report             a manifest lists it and it is expected, yet no completion report has its task
    recovered_identical       expected and identical in the recovery bucket
    not_sampled               a sample drill: in scope but not drawn, and (correctly) absent from the recovery bucket
    after_as_of               created at or after the point in time to recover, and (correctly) absent from the
                              recovery bucket
    archived_not_recovered    archived (GLACIER, DEEP_ARCHIVE) and otherwise in scope, but the run did not restore
                              archived versions (restore.archived false), so it was not recovered: reported, never
                              counted as recovered, never a failure by itself
    not_expected              outside the job's scope and (correctly) absent from the recovery bucket

Which versions are expected comes from the vault's own state and the job's scope (`scope.JobScope`:
replication statuses, creation window, key constraints; never delete markers or archived versions).
One exception: a failed task turns a replica's status from REPLICA into FAILED, so a FAILED version
stays expected when the scope asks for REPLICA and a completion report of this run lists its task.
A FAILED version without such a task, when the scope asks for REPLICA but not FAILED, cannot be
placed (a replica whose earlier try failed, or not a replica at all): it is unknown, never silently
not expected. The manifest and the report are cross-checked against that expectation, never used
to widen it: every disagreement has a category of its own and fails the verdict, so an edited
manifest or report cannot excuse a version, and a version the operator left out can never pass as
recovered. Job-level disagreements (counters, pinned checksums) come in as `findings`.
Versions are matched on (key, version id): replicas keep the source's version id. Storage class
and encryption are not compared: the replication rule changes both.

Content is size and ETag. An object uploaded in parts has the ETag `<md5 of the parts' md5s>-<parts>`,
which a replica copies from its source, so it is compared as it is: a different byte in any part,
or another split into parts, gives another ETag (that replicas keep their source's parts is not
stated by AWS; a replica that did not would fail, never pass unseen). Where both sides show an
additional checksum of the same algorithm (snapshot columns `checksum_algorithm`, `checksum`, when
present), it is compared too, and a different value is a content difference; a checksum on one
side only, or unreadable, is counted as not compared and decides nothing (the ETag still does).
`Comparison.content_checks` counts each, and `describe_content_checks` says it in words for the
evidence.

A sample drill passes `sample`, the versions the run drew: then only the drawn versions inside
the scope are expected. A version in scope that was not drawn is `not_sampled`: never expected,
never counted as recovered, never a failure by itself; the same version found in the recovery
bucket is extra, and fails the verdict. A drawn version's replication status must be readable;
one that was not drawn is not asked.

Counts (`Comparison.counts`, keys as COUNT_KEYS) come from the checks, not from the categories, so a
version with two problems counts in both: `recovered` is expected and identical, `failed_tasks` is
failed in the report and not identical now, `retention_mismatches` is mode or date. The verdict is
PASS only when something was expected, every expected version is recovered identically, nothing
is extra or unknown, manifest and report agree with the expectation, and there is no finding. The
`vault_*` / `recovery_*` values in `details` are the compared, normalised ones (upper case,
retain-until to the second, no hold shown as OFF); `scope` says why a vault version is outside the
scope ("" inside). With a report, `task_status` and `http_status` are shown for every version it
names, `error_code` and `result_message` for failed tasks; report rows without a version id match
no version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from runbook_lib import aws_facts, columnar
from runbook_lib.errors import InvalidArguments, ParameterProblem, ReportError
from runbook_lib.scope import AFTER_AS_OF as AFTER_AS_OF_REASON
from runbook_lib.scope import ARCHIVED, IN_SCOPE, STATUS_UNREADABLE, JobScope

if TYPE_CHECKING:
    from runbook_lib.current_view import CurrentView

__all__ = [
    "AFTER_AS_OF",
    "ARCHIVED_NOT_RECOVERED",
    "CATEGORIES",
    "CONTENT_CHECKS",
    "CONTENT_DIFFERS",
    "COUNT_KEYS",
    "ELIGIBLE_NOT_IN_MANIFEST",
    "EXTRA_IN_RECOVERY",
    "IN_MANIFEST_NOT_ELIGIBLE",
    "LEGAL_HOLD_DIFFERS",
    "LOCK_MODE_DIFFERS",
    "MISSING_IN_RECOVERY",
    "NOT_EXPECTED",
    "NOT_IN_REPORT",
    "NOT_PROBLEMS",
    "NOT_SAMPLED",
    "RECOVERED_IDENTICAL",
    "REPLICATION_STATUS_FILTERS",
    "RETAIN_UNTIL_DIFFERS",
    "SNAPSHOT_COLUMNS",
    "TASK_FAILED",
    "UNKNOWN_UNREADABLE",
    "Comparison",
    "compare",
    "describe_content_checks",
    "retry_candidates",
    "verdict_of",
]

TASK_FAILED = "task_failed"
MISSING_IN_RECOVERY = "missing_in_recovery"
EXTRA_IN_RECOVERY = "extra_in_recovery"
CONTENT_DIFFERS = "content_differs"
LOCK_MODE_DIFFERS = "lock_mode_differs"
RETAIN_UNTIL_DIFFERS = "retain_until_differs"
LEGAL_HOLD_DIFFERS = "legal_hold_differs"
UNKNOWN_UNREADABLE = "unknown_unreadable"
ELIGIBLE_NOT_IN_MANIFEST = "eligible_not_in_manifest"
IN_MANIFEST_NOT_ELIGIBLE = "in_manifest_not_eligible"
NOT_IN_REPORT = "not_in_report"
RECOVERED_IDENTICAL = "recovered_identical"
NOT_SAMPLED = "not_sampled"
AFTER_AS_OF = "after_as_of"
ARCHIVED_NOT_RECOVERED = "archived_not_recovered"
NOT_EXPECTED = "not_expected"

# Precedence order: a row's category is the first of these whose check holds.
CATEGORIES: tuple[str, ...] = (
    TASK_FAILED,
    MISSING_IN_RECOVERY,
    EXTRA_IN_RECOVERY,
    CONTENT_DIFFERS,
    LOCK_MODE_DIFFERS,
    RETAIN_UNTIL_DIFFERS,
    LEGAL_HOLD_DIFFERS,
    UNKNOWN_UNREADABLE,
    ELIGIBLE_NOT_IN_MANIFEST,
    IN_MANIFEST_NOT_ELIGIBLE,
    NOT_IN_REPORT,
    RECOVERED_IDENTICAL,
    NOT_SAMPLED,
    AFTER_AS_OF,
    ARCHIVED_NOT_RECOVERED,
    NOT_EXPECTED,
)
# The categories that are not a problem: nothing about them needs a look.
NOT_PROBLEMS: tuple[str, ...] = (RECOVERED_IDENTICAL, NOT_SAMPLED, AFTER_AS_OF, ARCHIVED_NOT_RECOVERED, NOT_EXPECTED)

COUNT_KEYS: tuple[str, ...] = (
    "source_versions",
    "expected",
    "recovered",
    "missing",
    "extra",
    "content_mismatches",
    "retention_mismatches",
    "legal_hold_mismatches",
    "failed_tasks",
    "unknown",
    "not_in_manifest",
    "manifest_not_eligible",
    "not_in_report",
    "findings",
    "not_sampled",
    "after_as_of",
    "archived_not_recovered",
)

SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "key",
    "version_id",
    "is_delete_marker",
    "last_modified",
    "size",
    "etag",
    "storage_class",
    "replication_status",
    "object_lock_mode",
    "object_lock_retain_until_date",
    "object_lock_legal_hold_status",
)

REPLICATION_STATUS_FILTERS = frozenset(aws_facts.REPLICATION_STATUS_FILTERS)
_UNKNOWN = "UNKNOWN"
_KEYS = ["key", "version_id"]
_OUTCOMES = ("task_status", "http_status", "error_code", "result_message")
# Values shown next to each other in `details`, per side.
_SHOWN = (
    "is_delete_marker",
    "size",
    "etag",
    "storage_class",
    "replication_status",
    "object_lock_mode",
    "object_lock_retain_until_date",
    "object_lock_legal_hold_status",
    "checksum_algorithm",
    "checksum",
)


@dataclass(frozen=True)
class Comparison:
    """The outcome of `compare`: verdict, counts, and one detail row per object version."""

    verdict: str
    counts: dict[str, int]
    details: pd.DataFrame = field(repr=False)
    findings: tuple[str, ...] = ()
    # How content was compared: versions in both buckets, multipart ETags, checksums (not) compared.
    content_checks: dict[str, int] = field(default_factory=dict)
    # What applications will read, key by key (runbook_lib.current_view), once the caller has compared it.
    current_view: CurrentView | None = field(default=None, repr=False)
    # How the buckets were read, for the evidence: method, engine, reports, HEAD re-check ({} for HEAD).
    evidence: dict[str, Any] = field(default_factory=dict, repr=False)

    def category(self, name: str) -> pd.DataFrame:
        """Return the detail rows whose primary category is `name` (one of CATEGORIES)."""
        if name not in CATEGORIES:
            raise InvalidArguments(
                [ParameterProblem("name", name, "one of " + ", ".join(CATEGORIES))], "Comparison.category"
            )
        return self.details[self.details["category"] == name].reset_index(drop=True)

    def counts_by_category(self) -> dict[str, int]:
        """Return how many versions fall in each primary category, in precedence order."""
        counted = self.details["category"].value_counts()
        return {name: int(counted.get(name, 0)) for name in CATEGORIES}

    def to_summary(self) -> dict[str, Any]:
        """Return the verdict, the counts and the per-category counts as plain JSON-ready values."""
        return {"verdict": self.verdict, "counts": dict(self.counts), "categories": self.counts_by_category(),
                "findings": list(self.findings), "content_checks": dict(self.content_checks)}


def compare(
    vault: pd.DataFrame,
    recovery: pd.DataFrame,
    *,
    scope: JobScope | None = None,
    manifest: pd.DataFrame | None = None,
    report: pd.DataFrame | None = None,
    expected_statuses: Iterable[str] | None = None,
    findings: Iterable[str] = (),
    sample: pd.DataFrame | None = None,
) -> Comparison:
    """Return the per-version comparison of the vault and recovery snapshots, and its verdict.

    `scope` is the job's scope; `expected_statuses` alone stands for a scope of replication
    statuses only. `findings` are job-level disagreements found elsewhere (each fails the verdict).
    `sample` (key, version_id) is a sample drill's draw: only those versions are expected.
    """
    scope = _scope(scope, expected_statuses)
    columnar.release_arrow_memory()
    for side, snapshot in (("vault", vault), ("recovery", recovery)):
        _check_columns(snapshot, side)
    reasons, reason_names = _scope_reasons(scope, vault)
    # Align first: hashing the keys is the memory-hungriest step, so it runs before anything else is held.
    rows = _align(vault, recovery, manifest, report, sample)
    columnar.release_arrow_memory()
    sides = {"vault": _prepare(vault), "recovery": _prepare(recovery)}
    values = {side: columnar.take(frame, rows[f"{side}_row"].to_numpy()) for side, frame in sides.items()}
    del sides  # the aligned copies replace them; keep the peak low
    vault_rows = rows["vault_row"].to_numpy()
    aligned_reasons = np.where(vault_rows >= 0, reasons[np.maximum(vault_rows, 0)], -1)
    checks = _checks(rows, values, scope, aligned_reasons, reason_names, manifest is not None, report is not None,
                     sample is not None)
    details = _details(rows, values, checks, report is not None, aligned_reasons, reason_names)
    listed = tuple(findings)
    counts = _counts(len(vault), checks, len(listed))
    content_checks = {name: int(checks[name].sum()) for name in CONTENT_CHECKS}
    return Comparison(verdict_of(counts), counts, details, listed, content_checks)


def verdict_of(counts: dict[str, int]) -> str:
    """Return PASS or FAIL for comparison counts (COUNT_KEYS): the one verdict rule of every method."""
    passed = (
        counts["expected"] > 0
        and counts["recovered"] == counts["expected"]
        and all(counts[name] == 0 for name in _MUST_BE_ZERO)
    )
    return "PASS" if passed else "FAIL"


# What `content_checks` counts, over the versions both buckets hold.
CONTENT_CHECKS = ("content_compared", "multipart_etag", "checksum_compared", "checksum_not_compared")


def describe_content_checks(content_checks: dict[str, int]) -> str:
    """Return, in words for the evidence, how the content of the versions both buckets hold was compared."""
    compared = content_checks.get("content_compared", 0)
    multipart = content_checks.get("multipart_etag", 0)
    checksums = content_checks.get("checksum_compared", 0)
    skipped = content_checks.get("checksum_not_compared", 0)
    text = (f"Content of the {compared:,} versions found in both buckets was compared by size and ETag. "
            f"{multipart:,} of them were uploaded in parts: their ETag (the MD5 of the parts' MD5s, '-', the "
            "number of parts) was compared as it is, as replication copies it from the source, so a change in "
            "any part, or another split into parts, shows as a different ETag. (AWS does not state that a "
            "replica keeps its source's parts; one that did not would fail here, never pass unseen.)")
    if checksums:
        text += f" {checksums:,} also had an additional checksum of the same algorithm on both sides, compared too."
    if skipped:
        text += (f" {skipped:,} had an additional checksum on one side only or one that could not be read; "
                 "it was not compared, and the ETag decided.")
    return text


# Counts that must all be zero for a PASS: each is a version (or a job fact) that contradicts the proof.
_MUST_BE_ZERO = ("extra", "unknown", "not_in_manifest", "manifest_not_eligible", "not_in_report", "findings")


def retry_candidates(comparison: Comparison) -> pd.DataFrame:
    """Return key and version id of eligible versions whose task failed or that are missing, to retry."""
    details = comparison.details
    wanted = details["expected"] & (details[TASK_FAILED] | details[MISSING_IN_RECOVERY])
    return details.loc[wanted, _KEYS].reset_index(drop=True)


# --------------------------------------------------------------------------- inputs


def _scope(scope: JobScope | None, expected_statuses: Iterable[str] | None) -> JobScope:
    """Return the scope to compare against: the one given, or one of replication statuses only."""
    if (scope is None) == (expected_statuses is None):
        raise TypeError("compare needs exactly one of scope= and expected_statuses=")
    if scope is not None:
        return scope
    assert expected_statuses is not None
    return JobScope(replication_statuses=tuple(sorted(_check_statuses(expected_statuses))))


def _scope_reasons(scope: JobScope, vault: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Return per vault row a code of why it is outside the scope, and the reason per code (0 is inside)."""
    codes, names = pd.factorize(scope.reasons(vault), sort=False)
    reason_names = [IN_SCOPE, *[str(name) for name in names if name != IN_SCOPE]]
    lookup = np.array([reason_names.index(str(name)) for name in names], dtype=np.int16)
    return (lookup[codes] if len(codes) else np.zeros(0, dtype=np.int16)), reason_names


def _check_statuses(expected_statuses: Iterable[str]) -> frozenset[str]:
    """Return the status filter as a set, or raise InvalidArguments naming the allowed values."""
    statuses = frozenset(str(s) for s in expected_statuses)
    if not statuses or not statuses <= REPLICATION_STATUS_FILTERS:
        raise InvalidArguments(
            [
                ParameterProblem(
                    "expected_statuses",
                    sorted(statuses),
                    "a non-empty subset of " + ", ".join(sorted(REPLICATION_STATUS_FILTERS)),
                )
            ],
            "compare",
        )
    return statuses


def _check_columns(snapshot: pd.DataFrame, side: str) -> None:
    """Raise ReportError when a snapshot lacks a column the comparison needs."""
    missing = [name for name in SNAPSHOT_COLUMNS if name not in snapshot.columns]
    if missing:
        raise ReportError(
            f"the {side} snapshot lacks the columns {', '.join(missing)}; take it with runbook_lib.snapshot"
        )


def _prepare(snapshot: pd.DataFrame) -> pd.DataFrame:
    """Return the columns a comparison needs, in compact dtypes and normalised for comparing."""
    mode = _category(snapshot["object_lock_mode"])
    # A version that never had a hold reads as absent; OFF says the same thing.
    hold = _category(snapshot["object_lock_legal_hold_status"], fill="OFF")
    retain, retain_unknown = _retain_until(snapshot["object_lock_retain_until_date"])
    return pd.DataFrame(
        {
            "is_delete_marker": snapshot["is_delete_marker"].fillna(False).to_numpy(dtype=bool),
            "size": pd.array(snapshot["size"], dtype="Int64"),
            "etag": columnar.text(snapshot["etag"]).array,
            "storage_class": _category(snapshot["storage_class"], fill="STANDARD"),
            "replication_status": _category(snapshot["replication_status"], fill="NONE"),
            "object_lock_mode": mode,
            "object_lock_retain_until_date": retain,
            "retention_unknown": retain_unknown | np.asarray(mode == _UNKNOWN),
            "object_lock_legal_hold_status": hold,
            "hold_unknown": np.asarray(hold == _UNKNOWN),
            "checksum_algorithm": _optional_text(snapshot, "checksum_algorithm"),
            "checksum": _optional_text(snapshot, "checksum"),
        },
        copy=False,
    )


def _optional_text(snapshot: pd.DataFrame, name: str) -> Any:
    """Return a text column the snapshot may lack (snapshots of other origins): all missing when absent."""
    if name not in snapshot.columns:
        return pd.array([pd.NA] * len(snapshot), dtype="string")
    return columnar.text(snapshot[name]).array


def _category(column: pd.Series, fill: str | None = None) -> pd.Categorical:
    """Return a low-cardinality text column as an upper-case categorical, missing values as `fill`."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = columnar.text(column).astype("category")
    # Work on the few categories, not the million values: S3 Inventory writes "Governance"/"On",
    # the API "GOVERNANCE"/"ON".
    inverse, upper = pd.factorize(pd.Index(column.cat.categories.astype(str)).str.upper())
    # Missing values have code -1, which picks the -1 appended at the end.
    codes = np.append(inverse, -1)[column.cat.codes.to_numpy()]
    categories = list(upper)
    if fill is not None:
        if fill not in categories:
            categories.append(fill)
        codes = np.where(codes >= 0, codes, categories.index(fill))
    return pd.Categorical.from_codes(codes, categories=categories)


def _retain_until(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Return retain-until dates truncated to the second (UTC), and where they read "unknown"."""
    # AWS returns this date with or without milliseconds, so only whole seconds are compared.
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(column.dtype):
        dates = pd.to_datetime(column, utc=True)
        unknown = np.zeros(len(column), dtype=bool)
    else:
        text = columnar.text(column)
        unknown = (text.str.upper() == _UNKNOWN).fillna(False).to_numpy(bool)
        try:
            dates = pd.to_datetime(text.mask(unknown), utc=True, format="ISO8601")
        except (TypeError, ValueError) as exc:
            raise ReportError(
                f"object_lock_retain_until_date holds a value that is neither a date nor 'unknown' ({exc})"
            ) from exc
    seconds = dates.dt.floor("s").astype("datetime64[s, UTC]")
    return seconds.reset_index(drop=True), unknown


def _align(
    vault: pd.DataFrame, recovery: pd.DataFrame, manifest: pd.DataFrame | None, report: pd.DataFrame | None,
    sample: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Return one row per (key, version id) with the row number of each input holding it (-1 if none).

    Rows come in order of first appearance: the vault's order, then what only the recovery
    bucket or the manifest holds. Report and sample rows add facts but never rows of their own
    (a drawn version the vault lacks is caught as the manifest's row the scope does not expect).
    """
    inputs = {"vault": vault, "recovery": recovery, "manifest": manifest, "report": report, "sample": sample}
    present = {name: frame for name, frame in inputs.items() if frame is not None}
    try:
        aligned = columnar.align(present, unique=("vault", "recovery"), lookup_only=("report", "sample"))
    except columnar.DuplicateKeyError as error:
        raise ReportError(
            f"the {error.frame} snapshot lists a key and version id twice; take the snapshot again"
        ) from None
    for name in ("manifest", "report", "sample"):
        if f"{name}_row" not in aligned:
            aligned[f"{name}_row"] = -1
    if report is not None:
        _add_outcomes(aligned, report)
    return aligned


def _add_outcomes(aligned: pd.DataFrame, report: pd.DataFrame) -> None:
    """Add each version's task status and HTTP status, and for failed tasks the error code and message."""
    rows = aligned["report_row"].to_numpy()
    for name in ("task_status", "http_status"):
        aligned[f"_{name}"] = columnar.take_values(report[name].array, rows)
    # Success messages say nothing; carrying a million of them would only cost memory.
    failed_rows = np.where((aligned["_task_status"] == "failed").to_numpy(dtype=bool, na_value=False), rows, -1)
    for name in ("error_code", "result_message"):
        aligned[f"_{name}"] = columnar.take_values(columnar.text(report[name]).array, failed_rows)


def _flag(column: pd.Series) -> np.ndarray:
    """Return a boolean column as a numpy array, missing values as False."""
    return np.asarray(column.to_numpy(dtype=bool, na_value=False), dtype=bool)


# --------------------------------------------------------------------------- checks


def _checks(
    rows: pd.DataFrame,
    values: dict[str, pd.DataFrame],
    scope: JobScope,
    reasons: np.ndarray,
    reason_names: list[str],
    has_manifest: bool,
    has_report: bool,
    has_sample: bool = False,
) -> dict[str, np.ndarray]:
    """Return every check as a boolean array aligned with `rows`."""
    vault, recovery = values["vault"], values["recovery"]
    in_vault = rows["vault_row"].to_numpy() >= 0
    in_recovery = rows["recovery_row"].to_numpy() >= 0
    both = in_vault & in_recovery
    none = np.zeros(len(rows), dtype=bool)
    in_sample = rows["sample_row"].to_numpy() >= 0 if has_sample else ~none
    in_manifest = rows["manifest_row"].to_numpy() >= 0 if has_manifest else none
    in_report = rows["report_row"].to_numpy() >= 0 if has_report else none
    in_scope = in_vault & (reasons == 0)
    # Outside the scope for its status alone: the one reason a failed task can explain.
    only_status = in_vault & np.isin(reasons, [i for i, n in enumerate(reason_names) if n.startswith(_BY_STATUS)])
    failed_status = only_status & _isin(vault["replication_status"], ("FAILED",))
    failed_replica_possible = "REPLICA" in scope.replication_statuses and "FAILED" not in scope.replication_statuses
    # A replica whose task failed reads FAILED now; a report of this run listing its task explains it.
    failed_replica = failed_status & failed_replica_possible & in_report
    in_expected_scope = in_scope | failed_replica
    expected = in_expected_scope & in_sample
    # Unknown whether it had to be recovered: its status could not be read, or it reads FAILED and
    # no task of this run explains that. A sample drill asks it only of the versions it drew.
    status_unknown_anywhere = in_vault & (
        (reasons == reason_names.index(STATUS_UNREADABLE) if STATUS_UNREADABLE in reason_names else none)
        | (failed_status & failed_replica_possible & ~in_report)
    )
    status_unknown = status_unknown_anywhere & in_sample
    retention_unknown = both & (_flag(vault["retention_unknown"]) | _flag(recovery["retention_unknown"]))
    hold_unknown = both & (_flag(vault["hold_unknown"]) | _flag(recovery["hold_unknown"]))
    checksum_compared, checksum_not_compared = _checksums_comparable(vault, recovery, both)
    content = both & (
        ~_same(vault["size"], recovery["size"])
        | ~_same_etag(vault["etag"], recovery["etag"])
        | (_flag(vault["is_delete_marker"]) != _flag(recovery["is_delete_marker"]))
        | (checksum_compared & ~_same(vault["checksum"], recovery["checksum"]))
    )
    mode = both & ~retention_unknown & ~_same(vault["object_lock_mode"], recovery["object_lock_mode"])
    retain = both & ~retention_unknown & ~_same(
        vault["object_lock_retain_until_date"], recovery["object_lock_retain_until_date"]
    )
    hold = both & ~hold_unknown & ~_same(
        vault["object_lock_legal_hold_status"], recovery["object_lock_legal_hold_status"]
    )
    unknown = retention_unknown | hold_unknown | status_unknown
    identical = both & ~content & ~mode & ~retain & ~hold & ~unknown
    failed = none
    if has_report:
        failed = in_report & _report_failed(rows)
    return {
        "in_vault": in_vault,
        "in_recovery": in_recovery,
        "in_manifest": in_manifest,
        "in_report": in_report,
        "expected": expected,
        "identical": identical,
        TASK_FAILED: failed & ~identical,
        MISSING_IN_RECOVERY: expected & ~in_recovery,
        EXTRA_IN_RECOVERY: in_recovery & ~expected & ~status_unknown,
        CONTENT_DIFFERS: content,
        LOCK_MODE_DIFFERS: mode,
        RETAIN_UNTIL_DIFFERS: retain,
        LEGAL_HOLD_DIFFERS: hold,
        UNKNOWN_UNREADABLE: unknown,
        ELIGIBLE_NOT_IN_MANIFEST: expected & ~in_manifest if has_manifest else none,
        IN_MANIFEST_NOT_ELIGIBLE: in_manifest & ~expected & ~status_unknown,
        NOT_IN_REPORT: expected & in_manifest & ~in_report if has_report else none,
        RECOVERED_IDENTICAL: expected & identical,
        NOT_SAMPLED: (in_expected_scope | status_unknown_anywhere) & ~in_sample & ~in_recovery,
        AFTER_AS_OF: in_vault & ~expected & ~in_recovery & _after_as_of(reasons, reason_names),
        # Archived and otherwise in scope, left archived because the run has no restore step.
        ARCHIVED_NOT_RECOVERED: in_vault & (reasons == reason_names.index(ARCHIVED) if ARCHIVED in reason_names
                                            else none) & ~in_recovery,
        NOT_EXPECTED: ~expected & ~in_recovery & ~status_unknown,
        "content_compared": both & ~_flag(vault["is_delete_marker"]),
        "multipart_etag": both & _multipart(vault["etag"]),
        "checksum_compared": checksum_compared,
        "checksum_not_compared": checksum_not_compared,
        **({"in_sample": in_sample} if has_sample else {}),
    }


def _multipart(etags: pd.Series) -> np.ndarray:
    """Return where an ETag has the multipart form `<hex>-<parts>` (a single-part ETag never holds a '-')."""
    return np.asarray(etags.str.contains("-", regex=False).fillna(False).to_numpy(bool), dtype=bool)


def _checksums_comparable(
    vault: pd.DataFrame, recovery: pd.DataFrame, both: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return where both sides show a readable checksum of one algorithm, and where one shows but cannot be compared."""
    def readable(side: pd.DataFrame) -> np.ndarray:
        algorithm, value = side["checksum_algorithm"], side["checksum"]
        present = algorithm.notna() & value.notna() & (algorithm.str.upper() != _UNKNOWN)
        return np.asarray(present.fillna(False).to_numpy(bool), dtype=bool)

    def shown(side: pd.DataFrame) -> np.ndarray:
        return np.asarray(side["checksum_algorithm"].notna().to_numpy(bool), dtype=bool)

    compared = both & readable(vault) & readable(recovery) & _same(
        vault["checksum_algorithm"], recovery["checksum_algorithm"])
    not_compared = both & (shown(vault) | shown(recovery)) & ~compared
    return compared, not_compared


def _after_as_of(reasons: np.ndarray, reason_names: list[str]) -> np.ndarray:
    """Return where a vault version is outside the scope because it was created at or after the point in time."""
    codes = [i for i, name in enumerate(reason_names) if name.startswith(AFTER_AS_OF_REASON)]
    return np.asarray(np.isin(reasons, codes), dtype=bool)


# Reasons starting with this put a version outside the scope for its replication status alone.
_BY_STATUS = "replication status not in"


def _report_failed(rows: pd.DataFrame) -> np.ndarray:
    """Return where the aligned report row says the task failed."""
    return np.asarray((rows["_task_status"] == "failed").to_numpy(dtype=bool, na_value=False), dtype=bool)


def _isin(column: pd.Series, wanted: Iterable[str]) -> np.ndarray:
    """Return where a text or category column holds one of `wanted` (never where it is missing)."""
    return np.asarray(column.isin(list(wanted)).fillna(False).to_numpy(bool), dtype=bool)


def _same_etag(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Return where two ETag columns agree, ignoring the quotes S3 puts around them."""
    same = _same(left, right)
    # Only the few rows that differ as written are compared again without quotes.
    differ = np.flatnonzero(~same)
    if differ.size:
        bare_left = left.iloc[differ].str.strip('"').reset_index(drop=True)
        bare_right = right.iloc[differ].str.strip('"').reset_index(drop=True)
        same[differ] = _same(bare_left, bare_right)
    return same


def _same(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Return where two aligned columns agree, counting two missing values as agreeing."""
    if isinstance(left.dtype, pd.CategoricalDtype) and isinstance(right.dtype, pd.CategoricalDtype):
        # Compare category codes over a shared category list; missing is code -1 on both sides.
        shared = left.cat.categories.union(right.cat.categories)
        left_codes = left.cat.set_categories(shared).cat.codes.to_numpy()
        return np.asarray(left_codes == right.cat.set_categories(shared).cat.codes.to_numpy(), dtype=bool)
    left_missing = left.isna().to_numpy()
    right_missing = right.isna().to_numpy()
    equal = (left == right).fillna(False).to_numpy(dtype=bool)
    return np.asarray((left_missing & right_missing) | (~left_missing & ~right_missing & equal), dtype=bool)


# --------------------------------------------------------------------------- outputs


def _details(
    rows: pd.DataFrame, values: dict[str, pd.DataFrame], checks: dict[str, np.ndarray], has_report: bool,
    reasons: np.ndarray, reason_names: list[str],
) -> pd.DataFrame:
    """Return the detail frame: keys, primary category, every check and both sides' values."""
    codes = np.full(len(rows), CATEGORIES.index(NOT_EXPECTED), dtype=np.int8)
    for position in range(len(CATEGORIES) - 1, -1, -1):
        codes[checks[CATEGORIES[position]]] = position
    columns: dict[str, Any] = {
        "key": rows["key"].array,
        "version_id": rows["version_id"].array,
        "category": pd.Categorical.from_codes(codes, categories=list(CATEGORIES)),
        # Why a vault version is outside the job's scope ("" inside; missing when not in the vault).
        "scope": pd.Categorical.from_codes(reasons.astype(np.int16), categories=reason_names),
    }
    columns.update({name: check for name, check in checks.items() if name not in NOT_PROBLEMS})
    for side in ("vault", "recovery"):
        for name in _SHOWN:
            columns[f"{side}_{name}"] = values[side][name].array
    if has_report:
        for name in _OUTCOMES:
            columns[name] = rows[f"_{name}"].array
    return pd.DataFrame(columns, copy=False)


def _counts(source_versions: int, checks: dict[str, np.ndarray], findings: int) -> dict[str, int]:
    """Return the summary counts, keyed exactly as COUNT_KEYS."""

    def total(name: str) -> int:
        return int(checks[name].sum())

    return {
        "source_versions": source_versions,
        "expected": total("expected"),
        "recovered": total(RECOVERED_IDENTICAL),
        "missing": total(MISSING_IN_RECOVERY),
        "extra": total(EXTRA_IN_RECOVERY),
        "content_mismatches": total(CONTENT_DIFFERS),
        "retention_mismatches": int((checks[LOCK_MODE_DIFFERS] | checks[RETAIN_UNTIL_DIFFERS]).sum()),
        "legal_hold_mismatches": total(LEGAL_HOLD_DIFFERS),
        "failed_tasks": total(TASK_FAILED),
        "unknown": total(UNKNOWN_UNREADABLE),
        "not_in_manifest": total(ELIGIBLE_NOT_IN_MANIFEST),
        "manifest_not_eligible": total(IN_MANIFEST_NOT_ELIGIBLE),
        "not_in_report": total(NOT_IN_REPORT),
        "findings": findings,
        "not_sampled": total(NOT_SAMPLED),
        "after_as_of": total(AFTER_AS_OF),
        "archived_not_recovered": total(ARCHIVED_NOT_RECOVERED),
    }
