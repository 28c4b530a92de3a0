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

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from runbook_lib import columnar
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
    "combine_views",
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
_READS = (OBJECT, DELETE_MARKER, NO_VERSION)



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


def _pick(values: np.ndarray, rows: np.ndarray, has: np.ndarray, fill: object) -> np.ndarray:
    """Return values[rows] where `has`, else `fill` (an empty bucket has no row to look up)."""
    out = np.full(len(rows), fill, dtype=values.dtype)
    out[has] = values[rows[has]]
    return out


def combine_views(views: Sequence[tuple[str, CurrentView]]) -> CurrentView | None:
    """Return one view of many bucket pairs: every pair's keys, each row naming its vault bucket."""
    if not views:
        return None
    first = views[0][1]
    rows = pd.concat([view.rows.assign(vault_bucket=bucket) for bucket, view in views], ignore_index=True)
    rows = rows[["vault_bucket", *[c for c in rows.columns if c != "vault_bucket"]]]
    return CurrentView(first.setting, first.as_of, rows)


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
    # Keys and version ids as integer codes shared by the three inputs: every step below is numeric.
    key_text, key_first, (vault_key, recovery_key, expected_key) = _codes(
        vault["key"], recovery["key"], expected["key"])
    version_text, version_first, (vault_version, recovery_version, expected_version) = _codes(
        vault["version_id"], recovery["version_id"], expected["version_id"])
    width = max(len(version_first), 1)
    vault_time, vault_known = _nanos(vault["last_modified"])
    recovery_time, _ = _nanos(recovery["last_modified"])
    vault_marker, recovery_marker = _flag(vault["is_delete_marker"]), _flag(recovery["is_delete_marker"])

    # The vault's answer per key: its newest entry created before the point in time, or its current one.
    candidates = np.arange(len(vault))
    if scope.as_of is not None:
        candidates = candidates[vault_known & (vault_time < pd.Timestamp(scope.as_of).value)]
        vault_rank = np.zeros(len(vault), dtype=bool)
    else:
        vault_rank = _latest(vault)
    vault_row = _newest_per_key(candidates, vault_key, vault_rank, vault_time, len(key_first))
    recovery_row = _newest_per_key(np.arange(len(recovery)), recovery_key, _latest(recovery), recovery_time,
                                   len(key_first))
    # Every key the vault or the recovery bucket holds; a key the vault did not hold yet reads 404.
    present = np.zeros(len(key_first), dtype=bool)
    present[vault_key] = True
    present[recovery_key] = True
    keys = np.flatnonzero(present)
    v_row, r_row = vault_row[keys], recovery_row[keys]
    v_has, r_has = v_row >= 0, r_row >= 0
    v_object = v_has & ~_pick(vault_marker, v_row, v_has, True)
    r_object = r_has & ~_pick(recovery_marker, r_row, r_has, True)
    v_version = _pick(vault_version, v_row, v_has, -1)
    r_version = _pick(recovery_version, r_row, r_has, -1)
    v_time = _pick(vault_time, v_row, v_has, 0)
    r_time = _pick(recovery_time, r_row, r_has, 0)
    served = keys.astype(np.int64) * width + v_version
    in_recovery = v_has & _among(served, recovery_key.astype(np.int64) * width + recovery_version)
    wanted = v_has & _among(served, expected_key.astype(np.int64) * width + expected_version)
    same = (v_object & r_object & (v_version == r_version)) | (~v_object & ~r_object)

    # Why the vault's version is outside the scope, asked only of the keys whose GETs differ.
    outside = np.full(len(keys), IN_SCOPE, dtype=object)
    ask = v_has & ~same
    if ask.any():
        outside[ask] = scope.reasons(vault.iloc[v_row[ask]].reset_index(drop=True)).to_numpy()
    archived = np.zeros(len(keys), dtype=bool)
    archived[ask] = [str(why).startswith("archived") for why in outside[ask]]
    choices = ("", EXTRA, DELETE_MARKER_NOT_REPLICATED, ORDERING, MISSING, ARCHIVED, OUTSIDE_SCOPE,
               NOT_SAMPLED if sampled else MISSING)
    reason = np.select(
        [same, ~v_has | (r_object & (r_time > v_time)), ~v_object, wanted & in_recovery, wanted, archived,
         outside != IN_SCOPE],
        list(range(7)),
        # In scope, yet not expected: only a sample drill leaves such a version out.
        default=7,
    )
    # Keys in order of first appearance: the vault's listing order, then keys only the recovery holds.
    rows = pd.DataFrame({
        "key": _names(key_text, key_first, keys),
        "same": same,
        "reason": _labels(reason, choices),
        "vault_reads": _labels(np.where(v_object, 0, np.where(v_has, 1, 2)), _READS),
        "vault_version_id": _names(version_text, version_first, v_version),
        "vault_last_modified": _times(v_time, v_has),
        "recovery_reads": _labels(np.where(r_object, 0, np.where(r_has, 1, 2)), _READS),
        "recovery_version_id": _names(version_text, version_first, r_version),
        "recovery_last_modified": _times(r_time, r_has),
    })
    return CurrentView(setting, scope.as_of, rows)


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


# --------------------------------------------------------------------------- numeric helpers


def _codes(*columns: pd.Series) -> tuple[pd.Series, np.ndarray, list[np.ndarray]]:
    """Return text columns concatenated (arrow strings), the first position of each distinct value, and codes."""
    combined = pd.concat([columnar.text(column).reset_index(drop=True) for column in columns], ignore_index=True)
    codes, count = columnar.factorize_text(combined)
    first = np.full(count, len(combined), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(combined), dtype=np.int64))
    ends = np.cumsum([0, *(len(column) for column in columns)])
    return combined, first, [codes[start:end] for start, end in itertools.pairwise(ends)]


def _nanos(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return times as nanoseconds since the epoch (UTC), and where they are known."""
    moments = pd.to_datetime(column, utc=True)
    known = ~moments.isna().to_numpy(bool)
    nanos = moments.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    # An unknown time counts as the oldest (its negation must not wrap around).
    return np.where(known, nanos, np.iinfo(np.int64).min + 1), known


def _latest(snapshot: pd.DataFrame) -> np.ndarray:
    """Return where a snapshot's listing marks the entry as its key's current one (all False without the column)."""
    if "is_latest" not in snapshot.columns:
        return np.zeros(len(snapshot), dtype=bool)
    return _flag(snapshot["is_latest"])


def _newest_per_key(rows: np.ndarray, key: np.ndarray, latest: np.ndarray, moment: np.ndarray, keys: int) -> np.ndarray:
    """Return per key code the row a GET reads among `rows`: latest, else newest, else listed first (-1: none)."""
    chosen = np.full(keys, -1, dtype=np.int64)
    if len(rows) == 0:
        return chosen
    # lexsort sorts by its last key first: key, then latest before not, then newest, then listing order.
    order = rows[np.lexsort((rows, -moment[rows], ~latest[rows], key[rows]))]
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    chosen[key[order][first]] = order[first]
    return chosen


def _among(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Return where each value is in `pool` (a sorted search: no hash table as large as the pool)."""
    ordered = np.sort(pool)
    found = np.searchsorted(ordered, values)
    hit = np.zeros(len(values), dtype=bool)
    inside = found < len(ordered)
    hit[inside] = ordered[found[inside]] == values[inside]
    return hit


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical:
    """Return codes (positions in `names`) as a categorical of their names; repeated names share a category."""
    categories = list(dict.fromkeys(names))
    mapping = np.array([categories.index(name) for name in names])
    return pd.Categorical.from_codes(mapping[codes], categories=categories)


def _names(combined: pd.Series, first: np.ndarray, codes: np.ndarray) -> pd.Series:
    """Return the text of codes (missing where the code is -1), as arrow strings."""
    values = combined.take(first[np.maximum(codes, 0)]).reset_index(drop=True)
    return values.where(pd.Series(codes >= 0), pd.NA)


def _times(nanos: np.ndarray, known: np.ndarray) -> pd.Series:
    """Return nanoseconds since the epoch as UTC times (NaT where unknown)."""
    moments = np.where(known, nanos, np.iinfo(np.int64).min).view("datetime64[ns]")  # the minimum is NaT
    return pd.Series(moments).dt.tz_localize("UTC")


def _flag(column: pd.Series) -> np.ndarray:
    """Return a boolean column as a numpy array, missing values as False."""
    return np.asarray(column.astype("boolean").fillna(False).to_numpy(bool), dtype=bool)


def _iso(moment: datetime | None) -> str | None:
    """Return a UTC moment as ISO 8601 with a Z, to the second (None stays None)."""
    return None if moment is None else pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
