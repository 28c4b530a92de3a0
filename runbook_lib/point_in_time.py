"""What a point in time selects in one vault bucket: the figures phase 00 shows before anything is created.

`recover_as_of` is the job's `CreatedBefore` (see `scope`): a version created at or after it is
never copied, and a key whose latest version is later comes back as the version it had then (or
not at all, when the key did not exist yet, or was deleted then). These figures come from the
bucket's listing alone (key, version id, size, creation time, storage class), so they need no
HEAD; the replication status, which only a HEAD tells, narrows the estimate phase 00 shows next.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from runbook_lib.scope import JobScope

__all__ = ["AsOfSelection", "list_versions", "select_as_of"]


@dataclass(frozen=True)
class AsOfSelection:
    """Counts and bytes on each side of the point in time in one vault bucket."""

    as_of: str
    versions_before: int
    bytes_before: int
    versions_left_out: int
    bytes_left_out: int
    delete_markers_before: int
    delete_markers_after: int
    keys_with_later_latest: int
    keys_not_yet_created: int

    def rows(self) -> list[dict[str, Any]]:
        """Return the figures as rows of a table for the notebook."""
        return [
            {"quantity": "point in time (the job's CreatedBefore)", "value": self.as_of},
            {"quantity": "object versions created before it (key constraints and archive applied)",
             "value": f"{self.versions_before:,}"},
            {"quantity": "their bytes", "value": f"{self.bytes_before:,}"},
            {"quantity": "object versions left out: created at or after it", "value": f"{self.versions_left_out:,}"},
            {"quantity": "their bytes", "value": f"{self.bytes_left_out:,}"},
            {"quantity": "delete markers before it / at or after it (never replicated)",
             "value": f"{self.delete_markers_before:,} / {self.delete_markers_after:,}"},
            {"quantity": "keys whose latest version is later (they come back as they were then)",
             "value": f"{self.keys_with_later_latest:,}"},
            {"quantity": "keys created after it (not recovered)", "value": f"{self.keys_not_yet_created:,}"},
        ]

    def as_record(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return asdict(self)


def list_versions(s3: Any, bucket: str) -> pd.DataFrame:
    """Return every version and delete marker of a bucket from its listing (no HEAD)."""
    rows: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for listed in page.get("Versions", []):
            rows.append({"key": listed["Key"], "version_id": listed["VersionId"], "is_delete_marker": False,
                         "size": int(listed.get("Size", 0)), "last_modified": listed["LastModified"],
                         "storage_class": listed.get("StorageClass")})
        for marker in page.get("DeleteMarkers", []):
            rows.append({"key": marker["Key"], "version_id": marker["VersionId"], "is_delete_marker": True,
                         "size": 0, "last_modified": marker["LastModified"], "storage_class": None})
    return pd.DataFrame(rows, columns=["key", "version_id", "is_delete_marker", "size", "last_modified",
                                       "storage_class"])


def select_as_of(versions: pd.DataFrame, scope: JobScope) -> AsOfSelection | None:
    """Return what the scope's point in time selects among a bucket's listed versions (None without one)."""
    if scope.as_of is None:
        return None
    created = pd.to_datetime(versions["last_modified"], utc=True)
    after = (created >= pd.Timestamp(scope.as_of)).to_numpy(bool)
    markers = versions["is_delete_marker"].astype(bool).to_numpy()
    # Every part of the scope a listing can tell: creation window, key constraints, archived storage.
    storage = [None if pd.isna(value) else str(value) for value in versions["storage_class"]]
    listed = [scope.listed_in_scope(str(key), moment.to_pydatetime(), storage_class)
              for key, moment, storage_class in zip(versions["key"], created, storage, strict=True)]
    candidate = pd.Series(listed, dtype=bool).to_numpy() & ~markers
    sizes = pd.to_numeric(versions["size"]).fillna(0).astype("int64").to_numpy()
    keys = versions["key"].astype(str)
    keys_before = set(keys[~after])
    keys_after = set(keys[after])
    return AsOfSelection(
        as_of=scope.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
        versions_before=int(candidate.sum()),
        bytes_before=int(sizes[candidate].sum()),
        versions_left_out=int((~markers & after).sum()),
        bytes_left_out=int(sizes[~markers & after].sum()),
        delete_markers_before=int((markers & ~after).sum()),
        delete_markers_after=int((markers & after).sum()),
        keys_with_later_latest=len(keys_before & keys_after),
        keys_not_yet_created=len(keys_after - keys_before),
    )
