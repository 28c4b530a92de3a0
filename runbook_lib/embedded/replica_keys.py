"""Build the moto FakeKey of a replica without moto's constructor: a job writes one per task.

moto's `FakeKey.__init__` does per object what a replica does not need: it opens a spooled
temporary file and copies the bytes into it, reads the buffer size from the environment, builds a
fresh private ACL and the restore state machine's bookkeeping. A Batch Replication job writes a
replica for each of up to millions of versions, all under the interpreter lock, so `replica_key`
sets the very attributes the constructor sets, to the values the constructor would give them
(`test_replica_keys` compares the two attribute by attribute), and:

- gives the replica its own in-memory buffer over the source's bytes: `io.BytesIO` shares an
  immutable bytes object until something writes to it, so a replica costs no copy of the data,
  and closing either key (moto disposes of a deleted version) leaves the other readable;
- shares one private ACL object between the replicas written by one `ReplicaFactory` (moto never
  changes an ACL in place: PutObjectAcl gives the key a new one);
- copies the source's metadata as the constructor and `set_metadata` would (the default
  Content-Type, then the source's entries).

moto's constructor is fingerprinted in `REVIEWED_CONSTRUCTOR`: a moto upgrade that changes it fails a
test until this module is checked against the new attributes.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from runbook_lib.embedded import moto_state

__all__ = ["REVIEWED_CONSTRUCTOR", "ReplicaFactory"]

# sha256 of inspect.getsource(moto.s3.models.FakeKey.__init__) as reviewed for this module (moto 5.2.1).
REVIEWED_CONSTRUCTOR = ("moto.s3.models.FakeKey.__init__",
                        "cd9d1347667a9ccf2179874051aebed2261ecb260ca12e048f20b9140a325383")

_RESTORE_MODEL = "s3::keyrestore"
_DEFAULT_CONTENT_TYPE = "binary/octet-stream"


class ReplicaFactory:
    """Builds replicas into one destination bucket; keeps what is the same for all of them."""

    def __init__(self, destination: Any) -> None:
        models = moto_state.moto_module("moto.s3.models")
        self._key_class = models.FakeKey
        self._lowercase_dict = moto_state.moto_module("moto.utilities.utils").LowercaseDict
        self._account_id = destination.account_id
        self._region_name = destination.region_name
        self._bucket_name = destination.name
        self._partition = moto_state.moto_module("moto.utilities.utils").get_partition(destination.region_name)
        self._buffer_size = moto_state.moto_module("moto.settings").get_s3_default_key_buffer_size()
        self._acl = models.get_canned_acl("private")

    def replica_key(
        self, source: Any, *, etag: str, storage: str, encryption: str | None, kms_key_id: str | None,
        bucket_key_enabled: bool | None, lock_mode: str | None, lock_until: str | None,
    ) -> Any:
        """Return a new FakeKey holding the source's bytes, version id, time, checksums and metadata.

        The storage class, encryption and retention are the replica's own (its rule and destination
        decide them); everything else is the source's.
        """
        value = _stored_bytes(source)
        replica = object.__new__(self._key_class)
        replica.__dict__.update({
            # ManagedState.__init__ (the restore status machine), as FakeKey's constructor calls it.
            "_transitions": [(None, "IN_PROGRESS"), ("IN_PROGRESS", "RESTORED")],
            "_status": None,
            "_tick": 0,
            "_time_progressed": datetime.now(),
            "model_name": _RESTORE_MODEL,
            "name": source.name,
            "account_id": self._account_id,
            "region_name": self._region_name,
            "partition": self._partition,
            "last_modified": source.last_modified,
            "acl": self._acl,
            "website_redirect_location": source.website_redirect_location,
            "checksum_algorithm": source.checksum_algorithm,
            "_storage_class": storage or "STANDARD",
            "_metadata": self._metadata_of(source),
            "_expiry": None,
            "_etag": etag,
            "_version_id": source.version_id,
            "_is_versioned": True,
            "multipart": source.multipart,
            "bucket_name": self._bucket_name,
            "_max_buffer_size": self._buffer_size,
            "_value_buffer": io.BytesIO(value),
            "disposed": False,
            "contentsize": len(value),
            "lock": threading.Lock(),
            "encryption": encryption,
            "kms_key_id": kms_key_id,
            "bucket_key_enabled": bucket_key_enabled,
            "lock_mode": lock_mode,
            "lock_legal_status": source.lock_legal_status,
            "lock_until": lock_until,
            "checksum_value": source.checksum_value,
            "checksum_type": source.checksum_type,
            "checksum_parts": source.checksum_parts,
        })
        return replica

    def _metadata_of(self, source: Any) -> Any:
        """Return the replica's metadata: the default Content-Type, then every entry of the source's."""
        stored = source.metadata
        if type(stored) is self._lowercase_dict:
            # Its keys are lowercase already, which is all that `set_metadata` would change.
            copied = object.__new__(self._lowercase_dict)
            copied.store = {"content-type": _DEFAULT_CONTENT_TYPE, **stored.store}
            return copied
        metadata = self._lowercase_dict()
        # A plain dict (moto's replace=True path): apply moto's own rules to a copy of it.
        metadata["Content-Type"] = _DEFAULT_CONTENT_TYPE
        self._key_class.set_metadata(SimpleNamespace(_metadata=metadata), dict(stored))
        return metadata


def _stored_bytes(source: Any) -> bytes:
    """Return the source's bytes, without a copy where moto keeps them in memory.

    moto keeps a key's bytes in a spooled temporary file, in memory below its buffer size; the
    in-memory buffer's `getvalue()` hands out its bytes object itself (trimmed to size), which a
    later write to the source would copy first. Bytes spooled to disk are read as moto reads them.
    """
    buffer = getattr(source._value_buffer, "_file", None)
    if type(buffer) is io.BytesIO:
        with source.lock:
            return buffer.getvalue()
    return bytes(source.value)
