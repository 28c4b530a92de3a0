"""A replica built without moto's constructor is the key moto's constructor would have built.

The reference is the replica as the job runner used to write it: `FakeKey(...)` with every setting
passed in, then the source's time, checksum algorithm, redirect and metadata set on it. Both are
compared attribute by attribute, as HEAD shows them, and for bytes that stay readable whichever key
is disposed of or overwritten.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from moto.s3.models import FakeKey

from runbook_lib.embedded import patches
from runbook_lib.embedded.replica_keys import REVIEWED_CONSTRUCTOR, ReplicaFactory

ACCOUNT = "222222222222"
REGION = "us-east-1"
DESTINATION = SimpleNamespace(account_id=ACCOUNT, region_name=REGION, name="recovery-replica-keys")
SETTINGS: dict[str, Any] = {
    "storage": "INTELLIGENT_TIERING", "encryption": "aws:kms",
    "kms_key_id": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "bucket_key_enabled": True, "lock_mode": "COMPLIANCE", "lock_until": "2031-03-04T05:06:07Z",
}


def _source(body: bytes, *, replace_metadata: bool = False) -> Any:
    """Return a vault version as moto stores it: locked, on hold, with a checksum, metadata and a redirect."""
    source = FakeKey(
        name="docs/quarterly report.pdf", value=body, account_id="111111111111", region_name=REGION,
        storage="GLACIER_IR", etag=None, is_versioned=True, version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        bucket_name="vault-replica-keys", encryption="aws:kms", kms_key_id="vault-key", bucket_key_enabled=True,
        lock_mode="GOVERNANCE", lock_legal_status="ON", lock_until="2030-01-01T00:00:00Z",
        checksum_value="abc=", checksum_type="FULL_OBJECT", checksum_parts=None,
    )
    source.last_modified = datetime(2024, 5, 6, 7, 8, 9)
    source.checksum_algorithm = "CRC32"
    source.website_redirect_location = "/elsewhere"
    metadata = {"Content-Type": "application/pdf", "x-amz-meta-source-system": "erp",
                "Content-Encoding": "gzip,aws-chunked"}
    source.set_metadata(metadata, replace=replace_metadata)
    return source


def _by_constructor(source: Any) -> Any:
    """Return the replica as moto's constructor builds it (the runner's former way)."""
    replica = FakeKey(
        name=source.name, value=source.value, account_id=ACCOUNT, region_name=REGION,
        storage=SETTINGS["storage"], etag=source.etag.strip('"'), is_versioned=True, version_id=source.version_id,
        bucket_name=DESTINATION.name, encryption=SETTINGS["encryption"], kms_key_id=SETTINGS["kms_key_id"],
        bucket_key_enabled=SETTINGS["bucket_key_enabled"], lock_mode=SETTINGS["lock_mode"],
        lock_legal_status=source.lock_legal_status, lock_until=SETTINGS["lock_until"],
        checksum_value=source.checksum_value, checksum_type=source.checksum_type,
        checksum_parts=source.checksum_parts, multipart=source.multipart,
    )
    replica.last_modified = source.last_modified
    replica.checksum_algorithm = source.checksum_algorithm
    replica.website_redirect_location = source.website_redirect_location
    replica.set_metadata(dict(source.metadata))
    return replica


def _built(source: Any) -> Any:
    return ReplicaFactory(DESTINATION).replica_key(source, etag=source.etag.strip('"'), **SETTINGS)


def test_the_reviewed_constructor_is_the_one_moto_has() -> None:
    dotted, fingerprint = REVIEWED_CONSTRUCTOR
    assert patches.moto_source_fingerprint(dotted) == fingerprint, (
        f"moto changed {dotted}: check runbook_lib/embedded/replica_keys.py sets every attribute it sets, "
        "then record the new fingerprint in REVIEWED_CONSTRUCTOR."
    )


@pytest.mark.parametrize("body", [b"", b"first quarter, final", bytes(range(256)) * 4096],
                         ids=["empty", "small", "1 MiB"])
@pytest.mark.parametrize("replace_metadata", [False, True], ids=["metadata merged", "metadata replaced"])
def test_a_built_replica_has_every_attribute_the_constructor_gives(body: bytes, replace_metadata: bool) -> None:
    source = _source(body, replace_metadata=replace_metadata)

    built, reference = _built(source), _by_constructor(source)

    ours, theirs = vars(built), vars(reference)
    assert ours.keys() == theirs.keys()
    compared_apart = {"_value_buffer", "lock", "_time_progressed", "acl", "_metadata"}
    for name in theirs.keys() - compared_apart:
        assert ours[name] == theirs[name], name
    assert built.value == reference.value == body
    assert type(ours["lock"]) is type(theirs["lock"])
    assert abs(ours["_time_progressed"] - theirs["_time_progressed"]) < timedelta(minutes=1)
    assert built.acl.to_config_dict() == reference.acl.to_config_dict()
    assert type(built.metadata) is type(reference.metadata)
    assert dict(built.metadata) == dict(reference.metadata)
    assert built.response_dict == reference.response_dict
    assert (built.etag, built.size, built.version_id) == (source.etag, len(body), source.version_id)


def test_replica_and_source_bytes_stay_readable_whichever_key_goes_or_changes() -> None:
    body = b"golden copy" * 1000
    source = _source(body)
    first, second = _built(source), _built(source)

    first.dispose()  # moto disposes of a version deleted by id
    assert source.value == body
    assert second.value == body

    source.value = b"overwritten in place"
    assert second.value == body
    source.dispose()
    assert second.value == body


def test_damaging_a_replica_leaves_its_source_and_other_replicas_whole() -> None:
    # Verification tests damage a replica to prove the verdict sees it: the source must keep its bytes.
    body = b"golden copy" * 1000
    source = _source(body)
    damaged, other = _built(source), _built(source)

    damaged.value = b"not the golden copy"  # as moto's setter rewrites a stored version in place
    other._value_buffer.seek(5)
    other._value_buffer.write(b"XX")  # a write into the shared buffer itself

    assert (source.value, damaged.value) == (body, b"not the golden copy")
    assert other.value == body[:5] + b"XX" + body[7:]
    assert _built(source).value == body
