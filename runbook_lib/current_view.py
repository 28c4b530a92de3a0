"""What applications will read: per key, the version a GET without a version id returns in each bucket.

Verification proves versions; an application reads keys. For every key of one vault bucket and
its recovery bucket, this compares the version a plain GET returns from the recovery bucket with
the one the vault returned: the vault's current version, or with a point in time the vault's
newest entry created before it (what a GET returned then). A delete marker reads as "no object"
(404), as does a key with no version.

Every difference gets one reason:

    delete_marker_not_replicated  the vault reads a delete marker; Batch Replication does not copy
                                  markers, so the recovery serves an older version (data deleted
                                  in the vault is live again)
    archived                      the vault's version is archived (GLACIER, DEEP_ARCHIVE), outside the
                                  scope without a restore, so the recovery serves an older version
    outside_scope                 the vault's version is outside the job's scope for another reason
                                  (its replication status, the key constraints, the creation window)
    not_sampled                   a sample drill did not draw the vault's version
    ordering                      the vault's version is in the recovery bucket, yet a GET there
                                  returns an older one: the recovery orders the key's versions otherwise
    missing                       the vault's version was expected and is not in the recovery bucket
    extra                         the recovery serves a version the vault did not serve at the time,
                                  newer than it or of a key the vault did not hold then

The first four follow from the scope and from what Batch Replication documents it copies; they are
explained. `ordering`, `missing` and `extra` are not. `verification.current_view` decides what a
difference does to the verdict: `report` shows them all and fails nothing; `fail_unexplained` (the
default) fails on an unexplained one; `fail_any` fails on any difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from runbook_lib.scope import IN_SCOPE, JobScope

__all__ = [
    "ARCHIVED",
    "DELETE_MARKER_NOT_REPLICATED",
    "EXPLAINED",
    "EXTRA",
    "MISSING",
    "NOT_SAMPLED",
    "ORDERING",
    "OUTSIDE_SCOPE",
    "REASONS",
    "SETTINGS",
    "UNEXPLAINED",
    "CurrentView",
    "compare_current",
    "describe",
]

DELETE_MARKER_NOT_REPLICATED = "delete_marker_not_replicated"
ARCHIVED = "archived"
OUTSIDE_SCOPE = "outside_scope"
NOT_SAMPLED = "not_sampled"
ORDERING = "ordering"
MISSING = "missing"
EXTRA = "extra"
EXPLAINED: tuple[str, ...] = (DELETE_MARKER_NOT_REPLICATED, ARCHIVED, OUTSIDE_SCOPE, NOT_SAMPLED)
UNEXPLAINED: tuple[str, ...] = (ORDERING, MISSING, EXTRA)
REASONS: tuple[str, ...] = EXPLAINED + UNEXPLAINED
SETTINGS: tuple[str, ...] = ("report", "fail_unexplained", "fail_any")

# What a GET without a version id reads.
OBJECT = "object"
DELETE_MARKER = "delete marker (404)"
NO_VERSION = "no version (404)"

_COLUMNS = ["key", "version_id", "is_delete_marker", "last_modified", "storage_class", "replication_status"]


@dataclass(frozen=True)
class CurrentView:
    """Per key, what a GET reads in the vault (at the point in time) and in the recovery bucket, and why they differ."""

    setting: str
    as_of: datetime | None
    rows: pd.DataFrame = field(repr=False)

    def differences(self) -> pd.DataFrame:
        """Return the keys an application would read differently, with their reason."""
        return self.rows[~self.rows["same"]].reset_index(drop=True)

    def counts_by_reason(self) -> dict[str, int]:
        """Return how many keys differ for each reason (every reason listed, zeros included)."""
        counted = self.rows.loc[~self.rows["same"], "reason"].value_counts()
        return {reason: int(counted.get(reason, 0)) for reason in REASONS}

    def unexplained(self) -> int:
        """Return how many keys differ without a documented reason."""
        return int(self.rows.loc[~self.rows["same"], "reason"].isin(UNEXPLAINED).sum())

    def fails(self) -> bool:
        """Return whether the differences fail the verdict under the setting."""
        if self.setting == "fail_any":
            return bool((~self.rows["same"]).any())
        if self.setting == "fail_unexplained":
            return self.unexplained() > 0
        return False

    def finding(self) -> str | None:
        """Return the finding that fails the verdict, in words (None when the setting lets it pass)."""
        if not self.fails():
            return None
        counts = {reason: count for reason, count in self.counts_by_reason().items() if count}
        which = "differ" if self.setting == "fail_any" else "differ without a documented reason"
        listed = ", ".join(f"{reason} {count}" for reason, count in counts.items())
        return (f"current view: {len(self.differences()) if self.setting == 'fail_any' else self.unexplained()} "
                f"key(s) an application would read differently from the vault {which} ({listed}); "
                f"verification.current_view is {self.setting}; details/current_view.csv lists them")

    def as_record(self) -> dict[str, Any]:
        """Return the counts by reason and the setting, JSON-ready, for summary.json."""
        return {
            "setting": self.setting,
            "as_of": _iso(self.as_of),
            "keys": len(self.rows),
            "same": int(self.rows["same"].sum()),
            "differing": int((~self.rows["same"]).sum()),
            "by_reason": self.counts_by_reason(),
            "unexplained": self.unexplained(),
            "fails_verdict": self.fails(),
        }

    def reason_table(self) -> pd.DataFrame:
        """Return the counts by reason as a table, with whether each reason is explained."""
        return pd.DataFrame([{"reason": reason, "keys": count, "explained": reason in EXPLAINED}
                             for reason, count in self.counts_by_reason().items()])


def compare_current(
    vault: pd.DataFrame, recovery: pd.DataFrame, scope: JobScope, expected: pd.DataFrame, *,
    setting: str = "fail_unexplained", sampled: bool = False,
) -> CurrentView:
    """Return, for every key of one vault/recovery bucket pair, what a GET reads on each side and why they differ.

    `vault` and `recovery` are snapshots (runbook_lib.snapshot); `scope` is the job's scope, its
    `as_of` the point in time; `expected` holds the key and version id of every version
    verification expects in the recovery bucket; `sampled` says a sample drill drew them.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, not {setting!r}")
    vault_side = _vault_reads(vault, scope.as_of)
    recovery_side = _recovery_reads(recovery)
    # Every key the vault holds, those it did not hold yet at the point in time included (they read 404).
    every_key = pd.DataFrame({"key": pd.unique(vault["key"].astype(str))})
    rows = every_key.merge(vault_side, on="key", how="left").merge(recovery_side, on="key", how="outer")
    rows = rows.sort_values("key", kind="stable")
    rows = rows.reset_index(drop=True)
    rows["_in_recovery"] = _holds(rows, recovery)
    rows["_expected"] = _holds(rows, expected)
    rows["same"] = _same(rows)
    rows["reason"] = _reasons(rows, scope, sampled)
    return CurrentView(setting, scope.as_of, rows[[
        "key", "same", "reason", "vault_reads", "vault_version_id", "vault_last_modified",
        "recovery_reads", "recovery_version_id", "recovery_last_modified",
    ]])


def describe(record: dict[str, Any] | None) -> str:
    """Return the current view of summary.json in words for the evidence ("" when there is none)."""
    if not record:
        return ""
    moment = f"as of {record['as_of']}" if record.get("as_of") else "now"
    text = (f"What applications will read: of {record['keys']:,} keys, a GET without a version id returns the "
            f"version the vault returned {moment} for {record['same']:,}; {record['differing']:,} differ")
    reasons = [f"{reason} {count:,}" for reason, count in record["by_reason"].items() if count]
    text += f" ({', '.join(reasons)})" if reasons else ""
    effect = "these differences fail the verdict." if record["fails_verdict"] else "they do not fail the verdict."
    text += f"; {record['unexplained']:,} without a documented reason. Setting {record['setting']}: {effect}"
    return text


# --------------------------------------------------------------------------- each side's GET


def _vault_reads(vault: pd.DataFrame, as_of: datetime | None) -> pd.DataFrame:
    """Return per key the vault's entry a GET returned: the current one, or the newest created before `as_of`."""
    frame = vault[_COLUMNS].copy()
    frame["position"] = np.arange(len(frame))
    frame["created"] = pd.to_datetime(frame["last_modified"], utc=True)
    if as_of is not None:
        frame = frame[(frame["created"] < pd.Timestamp(as_of)).fillna(False).to_numpy(bool)]
        newest_first = frame.sort_values(["key", "created", "position"], ascending=[True, False, True], kind="stable")
    else:
        frame["latest"] = vault["is_latest"].astype("boolean").fillna(False).to_numpy(bool) if "is_latest" in vault \
            else False
        newest_first = frame.sort_values(["key", "latest", "created", "position"],
                                         ascending=[True, False, False, True], kind="stable")
    chosen = newest_first.drop_duplicates("key", keep="first")
    return pd.DataFrame({
        "key": chosen["key"].astype(str).to_numpy(),
        "vault_version_id": chosen["version_id"].astype(str).to_numpy(),
        "vault_reads": np.where(_flag(chosen["is_delete_marker"]), DELETE_MARKER, OBJECT),
        "vault_last_modified": chosen["created"].to_numpy(),
        "_vault_storage_class": chosen["storage_class"].to_numpy(),
        "_vault_replication_status": chosen["replication_status"].to_numpy(),
    })


def _recovery_reads(recovery: pd.DataFrame) -> pd.DataFrame:
    """Return per key the recovery bucket's current entry (the one its listing marks latest)."""
    frame = recovery[["key", "version_id", "is_delete_marker", "last_modified"]].copy()
    frame["position"] = np.arange(len(frame))
    frame["created"] = pd.to_datetime(frame["last_modified"], utc=True)
    frame["latest"] = recovery["is_latest"].astype("boolean").fillna(False).to_numpy(bool) \
        if "is_latest" in recovery else False
    chosen = frame.sort_values(["key", "latest", "created", "position"], ascending=[True, False, False, True],
                               kind="stable").drop_duplicates("key", keep="first")
    return pd.DataFrame({
        "key": chosen["key"].astype(str).to_numpy(),
        "recovery_version_id": chosen["version_id"].astype(str).to_numpy(),
        "recovery_reads": np.where(_flag(chosen["is_delete_marker"]), DELETE_MARKER, OBJECT),
        "recovery_last_modified": chosen["created"].to_numpy(),
    })


# --------------------------------------------------------------------------- the comparison


def _same(rows: pd.DataFrame) -> np.ndarray:
    """Return where both GETs read the same: the same object version, or a 404 on both sides."""
    rows["vault_reads"] = rows["vault_reads"].fillna(NO_VERSION)
    rows["recovery_reads"] = rows["recovery_reads"].fillna(NO_VERSION)
    vault_object = (rows["vault_reads"] == OBJECT).to_numpy(bool)
    recovery_object = (rows["recovery_reads"] == OBJECT).to_numpy(bool)
    same_version = (rows["vault_version_id"] == rows["recovery_version_id"]).fillna(False).to_numpy(bool)
    return np.asarray((vault_object & recovery_object & same_version) | (~vault_object & ~recovery_object), dtype=bool)


def _holds(rows: pd.DataFrame, versions: pd.DataFrame) -> np.ndarray:
    """Return where the version the vault served for a key is among `versions` (key, version_id)."""
    listed = pd.DataFrame({"key": versions["key"].astype(str).to_numpy(),
                           "vault_version_id": versions["version_id"].astype(str).to_numpy()}).drop_duplicates()
    found = rows[["key", "vault_version_id"]].merge(listed, how="left", on=["key", "vault_version_id"], indicator=True)
    return np.asarray((found["_merge"] == "both").to_numpy(bool), dtype=bool)


def _reasons(rows: pd.DataFrame, scope: JobScope, sampled: bool) -> np.ndarray:
    """Return per key the reason its two GETs differ ("" where they agree); the first that applies is given."""
    outside = _scope_reasons(rows, scope)
    vault_reads, recovery_reads = rows["vault_reads"].to_numpy(), rows["recovery_reads"].to_numpy()
    later = (rows["recovery_last_modified"] > rows["vault_last_modified"]).fillna(False).to_numpy(bool)
    expected, in_recovery = rows["_expected"].to_numpy(bool), rows["_in_recovery"].to_numpy(bool)
    nothing_then = vault_reads == NO_VERSION
    newer_in_recovery = (recovery_reads == OBJECT) & ~nothing_then & later
    archived = np.array([str(reason).startswith("archived") for reason in outside], dtype=bool)
    reason = np.select(
        [rows["same"].to_numpy(bool), nothing_then | newer_in_recovery, vault_reads == DELETE_MARKER,
         expected & in_recovery, expected, archived, outside != IN_SCOPE],
        ["", EXTRA, DELETE_MARKER_NOT_REPLICATED, ORDERING, MISSING, ARCHIVED, OUTSIDE_SCOPE],
        # In scope, yet not expected: only a sample drill leaves such a version out.
        default=NOT_SAMPLED if sampled else MISSING,
    )
    return np.asarray(reason, dtype=object)


def _scope_reasons(rows: pd.DataFrame, scope: JobScope) -> np.ndarray:
    """Return why each key's vault version is outside the scope ("" inside, or where the vault read nothing)."""
    frame = pd.DataFrame({
        "key": rows["key"].astype(str),
        "is_delete_marker": rows["vault_reads"] == DELETE_MARKER,
        "storage_class": rows["_vault_storage_class"],
        "replication_status": rows["_vault_replication_status"],
        "last_modified": rows["vault_last_modified"],
    })
    known = (rows["vault_reads"] != NO_VERSION).to_numpy(bool)
    reasons = np.full(len(rows), IN_SCOPE, dtype=object)
    if known.any():
        reasons[known] = scope.reasons(frame[known].reset_index(drop=True)).to_numpy()
    return reasons


def _flag(column: pd.Series) -> np.ndarray:
    """Return a boolean column as a numpy array, missing values as False."""
    return np.asarray(column.astype("boolean").fillna(False).to_numpy(bool), dtype=bool)


def _iso(moment: datetime | None) -> str | None:
    """Return a UTC moment as ISO 8601 with a Z, to the second (None stays None)."""
    return None if moment is None else pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
