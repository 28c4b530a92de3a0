"""A realistic vault for drills and tests, built deterministically from a number and a random seed.

The world is the one the recovery starts from: a production bucket in account 333333333333 was
replicated into an Object Lock vault bucket in account 111111111111 (so the vault's versions carry
replication status REPLICA), the vault's KMS key encrypts them with a Bucket Key, and the production
account has since been compromised. The vault holds what real vaults hold: several versions per key,
GOVERNANCE and COMPLIANCE retention with varied dates, legal holds with and without retention, delete
markers, zero-byte and multi-megabyte objects, large objects uploaded in parts (from 100 versions on:
one of three parts with an additional SHA-256 checksum, COMPLIANCE retention and a legal hold, one of
two parts with GOVERNANCE retention), awkward key names, a few archived versions, and a few versions
uploaded directly by an operator (not replicas) that a REPLICA filter must leave out.

Objects are written through moto's backend in the server's own process, because the API cannot set
a version id or a replication status, and because it is two orders of magnitude faster. Objects in
parts go through the API (CreateMultipartUpload with the lock headers, UploadPart, Complete), as
they reach a real vault; only their version id, time and replication status are set afterwards. The few API
calls that set up the accounts retry throttled answers (a backend started with `--throttle` answers
SlowDown to a fraction of S3 requests) with a short, bounded backoff, and when throttling outlasts
every attempt the seeder raises a BackendError that says so, not a traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import string
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

from botocore.config import Config
from botocore.exceptions import ClientError

from runbook_lib import aws_facts
from runbook_lib.accounts import error_code, is_throttling, retry_throttled
from runbook_lib.embedded import heap, moto_state, seed_history
from runbook_lib.embedded.moto_state import PARTITION
from runbook_lib.embedded.server import OPERATOR_ACCOUNT, RECOVERY_ACCOUNT, REGION, VAULT_ACCOUNT
from runbook_lib.embedded.utc import as_utc, utc_now
from runbook_lib.errors import BackendError

__all__ = [
    "AWKWARD_KEYS",
    "MULTIPART_OBJECTS",
    "PART_SIZE",
    "PRODUCTION_ACCOUNT",
    "REQUIRED_TRAITS",
    "VAULT_BUCKET",
    "VAULT_KEY_ALIAS",
    "VAULT_KEY_ID",
    "GroundTruth",
    "SeededVersion",
    "content_digest",
    "seed_owner_inventories",
    "seed_vault",
    "seed_vaults",
    "vault_bucket_name",
    "vault_key_arn",
    "vault_key_id",
]

PRODUCTION_ACCOUNT = "333333333333"
VAULT_BUCKET = "vault-golden-copies"
VAULT_KEY_ID = "6f1c0f4e-7d1a-4c55-9b0e-0c5a11d5eed1"
VAULT_KEY_ALIAS = "alias/vault-golden-copies"
VAULT_KEY_ARN = aws_facts.kms_key_arn(REGION, VAULT_ACCOUNT, VAULT_KEY_ID)
PRODUCTION_REPLICATION_ROLE = aws_facts.iam_role_arn(PRODUCTION_ACCOUNT, "prod-to-vault-replication", PARTITION)
OPERATOR_ROLE_NAME = "drill-operator"
DEFAULT_RETENTION_DAYS = 365
# Categories every vault holds whatever the random draws, so a small drill still meets each case.
REQUIRED_TRAITS: tuple[str, ...] = (
    "zero_bytes", "governance", "compliance", "hold_with_retention", "hold_without_retention",
    "not_replica", "archived",
)
MULTI_MEGABYTE_FROM = 100  # versions from which a vault also holds a multi-megabyte object
MULTIPART_FROM = 100  # versions from which a vault also holds objects uploaded in parts
# S3's smallest part (every part but the last), and the vault's objects in parts: parts' sizes,
# additional checksum, retention mode, legal hold. Few and small, so a drill stays fast.
PART_SIZE = 5 * 1024 * 1024
MULTIPART_OBJECTS: dict[str, tuple[tuple[int, ...], str | None, str, str | None]] = {
    "multipart_compliance_hold": ((PART_SIZE, PART_SIZE, 256 * 1024), "SHA256", "COMPLIANCE", "ON"),
    "multipart_governance": ((PART_SIZE, 1024 * 1024), None, "GOVERNANCE", None),
}

# Outcomes a version is expected to have after a recovery with the drill's REPLICA filter.
RECOVER = "recover"
SKIP_NOT_REPLICA = "skip_not_replica"
SKIP_DELETE_MARKER = "skip_delete_marker"
SKIP_ARCHIVED = "skip_archived"

_LONG_KEY = "deep/" + "k" * (1024 - len("deep/") - len(".bin")) + ".bin"
AWKWARD_KEYS: tuple[str, ...] = (
    "reports/quarterly summary 2026.pdf",
    "reports/profit+loss.xlsx",
    "reports/100% done.txt",
    "notes/#1 priority.md",
    "queries/what?.sql",
    "i18n/résumé-é.txt",
    "i18n/日本語/ファイル.txt",
    "i18n/emoji-🚀.json",
    "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/deep.txt",
    "spaces  and\ttabs/odd name .txt",
    "trailing-slash-object/",
    "quote'and\"double.txt",
    "ampersand&equals=.csv",
    _LONG_KEY,
)
assert len(_LONG_KEY.encode()) == 1024


@dataclass(frozen=True)
class SeededVersion:
    """One version in the vault as the seeder wrote it, with its expected recovery outcome."""

    key: str
    version_id: str
    is_delete_marker: bool
    is_latest: bool
    size: int
    etag: str | None
    last_modified: str
    storage_class: str | None
    replication_status: str | None
    encryption: str | None
    object_lock_mode: str | None
    object_lock_retain_until_date: str | None
    object_lock_legal_hold_status: str | None
    expected_outcome: str
    # Objects uploaded in parts: how many, and the additional checksum's algorithm (None otherwise).
    parts: int | None = None
    checksum_algorithm: str | None = None


@dataclass
class GroundTruth:
    """Everything the seeder wrote, so drills and tests can check a recovery against it."""

    vault_account: str
    recovery_account: str
    region: str
    vault_bucket: str
    vault_key_arn: str
    random_seed: int
    versions: list[SeededVersion] = field(default_factory=list)

    def counts(self, restore_archived: bool = False) -> dict[str, int]:
        """Return the number of versions per expected outcome, plus totals.

        With `restore_archived` (a run with the restore step), the archived replicas are expected too.
        """
        by_outcome = Counter(v.expected_outcome for v in self.versions)
        archived = by_outcome[SKIP_ARCHIVED]
        return {
            "source_versions": len(self.versions),
            "objects": sum(1 for v in self.versions if not v.is_delete_marker),
            "delete_markers": sum(1 for v in self.versions if v.is_delete_marker),
            "keys": len({v.key for v in self.versions}),
            "expected": by_outcome[RECOVER] + (archived if restore_archived else 0),
            **{outcome: by_outcome[outcome] for outcome in (SKIP_NOT_REPLICA, SKIP_DELETE_MARKER)},
            SKIP_ARCHIVED: 0 if restore_archived else archived,
            "archived": archived,
        }

    def expected_versions(self, restore_archived: bool = False) -> list[SeededVersion]:
        """Return the versions a complete recovery must bring back (archived replicas too with the restore step)."""
        wanted = {RECOVER, SKIP_ARCHIVED} if restore_archived else {RECOVER}
        return [v for v in self.versions if v.expected_outcome in wanted]

    def archived_versions(self) -> list[SeededVersion]:
        """Return the archived replicas: recovered only by a run with the restore step."""
        return [v for v in self.versions if v.expected_outcome == SKIP_ARCHIVED]

    def to_json(self) -> str:
        """Return the ground truth as JSON (counts first, then every version, one a line)."""
        text = io.StringIO()
        self.write_json(text)
        return text.getvalue()

    def write_json(self, out: TextIO) -> None:
        """Write the ground truth as JSON to an open text file, version by version, never whole in memory."""
        document = {
            "vault_account": self.vault_account,
            "recovery_account": self.recovery_account,
            "region": self.region,
            "vault_bucket": self.vault_bucket,
            "vault_key_arn": self.vault_key_arn,
            "random_seed": self.random_seed,
            # The seeded history, and the points in time a drill may recover as of (see seed_history).
            "history": {
                "start": seed_history.HISTORY_START.isoformat(),
                "end": seed_history.HISTORY_END.isoformat(),
                "as_of_earliest": seed_history.AS_OF_EARLIEST.isoformat(),
                "as_of_latest": seed_history.AS_OF_LATEST.isoformat(),
            },
            "counts": self.counts(),
        }
        # One version per line. json's C encoder writes only compact JSON (an indent makes it use its
        # pure-Python one, some five times slower: a minute at 10^6 versions); vars() of a flat
        # dataclass gives asdict's fields in order, without its deep copy.
        out.write(json.dumps(document, indent=1, ensure_ascii=False)[:-2] + ',\n "versions": [\n')
        for index, version in enumerate(self.versions):
            out.write((",\n  " if index else "  ") + json.dumps(vars(version), ensure_ascii=False))
        out.write("\n ]\n}")

    def write(self, path: Path) -> Path:
        """Write the ground truth as JSON to `path` and return it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            self.write_json(out)
        return path


# Attempts per setup call, and the backoff between them: the embedded backend throttles at random,
# so more attempts help and long waits do not; the bound keeps a hopeless seeding under half a minute.
SEED_ATTEMPTS = 30
SEED_BACKOFF_SECONDS = 0.02
SEED_BACKOFF_CAP_SECONDS = 0.25
# botocore does not retry on its own (one attempt in all; its `max_attempts` would count retries
# after the first): `_call` is the one retry policy, so its bound holds.
_SEEDER_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1})

_Answer = TypeVar("_Answer")
# How the seeder waits between attempts (tests replace it to run without waiting).
_sleep = time.sleep


def _call(operation: Callable[..., _Answer], **arguments: Any) -> _Answer:
    """Return the operation's answer, retrying throttled answers; BackendError when throttling outlasts them."""
    try:
        return retry_throttled(operation, attempts=SEED_ATTEMPTS, pause=SEED_BACKOFF_SECONDS,
                               cap=SEED_BACKOFF_CAP_SECONDS, sleep=_sleep, **arguments)
    except ClientError as last:
        if not is_throttling(last):
            raise
        name = getattr(operation, "__name__", "a setup call")
        raise BackendError(
            f"seeding the vault failed: the backend answered {error_code(last)} (throttling) to {name} "
            f"{SEED_ATTEMPTS} times in a row. The backend's injected throttling is too high to seed through; "
            "start it with a lower --throttle fraction (or none) and seed again."
        ) from last


_VERSION_ID_ALPHABET = string.ascii_letters + string.digits + "._"


def _version_id(rng: random.Random) -> str:
    """Return a version id like S3's: 32 characters of letters, digits, "." and "_"."""
    return "".join(rng.choices(_VERSION_ID_ALPHABET, k=32))


def _key_names(rng: random.Random, count: int) -> list[str]:
    """Return `count` distinct key names: application-like paths plus every awkward one."""
    names: list[str] = list(AWKWARD_KEYS[: max(0, min(len(AWKWARD_KEYS), count // 4))])
    apps = ("billing", "orders", "customers", "media", "logs")
    while len(names) < count:
        app = rng.choice(apps)
        day = datetime(2025, 1, 1) + timedelta(days=rng.randrange(690))
        suffix = rng.choice((".json", ".parquet", ".csv", ".png", ".gz"))
        names.append(f"{app}/{day:%Y/%m/%d}/{app}-{len(names):06d}{suffix}")
    return names


def _operator_client(endpoint: str, service: str, account: str) -> Any:
    """Return a client acting in `account` through the operator role, as the vault's owners act."""
    import boto3

    sts = boto3.client(
        "sts", endpoint_url=endpoint, region_name=REGION, config=_SEEDER_CONFIG,
        aws_access_key_id="seeder", aws_secret_access_key="seeder",
    )
    creds = _call(
        sts.assume_role, RoleArn=aws_facts.iam_role_arn(account, OPERATOR_ROLE_NAME, PARTITION),
        RoleSessionName="seeder",
    )["Credentials"]
    return boto3.client(  # type: ignore[call-overload]  # the service name is chosen at run time
        service, endpoint_url=endpoint, region_name=REGION, config=_SEEDER_CONFIG,
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _setup_accounts(endpoint: str) -> None:
    """Create the vault bucket, its KMS key and the operator roles through the API, as AWS would."""

    def client(service: str, account: str) -> Any:
        return _operator_client(endpoint, service, account)

    admin_policy = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    )
    for account in (VAULT_ACCOUNT, RECOVERY_ACCOUNT):
        iam = client("iam", account)
        trust = json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow",
                           "Principal": {"AWS": aws_facts.account_root_arn(OPERATOR_ACCOUNT, PARTITION)},
                           "Action": "sts:AssumeRole"}],
        })
        _call(iam.create_role, RoleName=OPERATOR_ROLE_NAME, AssumeRolePolicyDocument=trust,
              Description="Break-glass operator role used for the recovery drill")
        _call(iam.put_role_policy, RoleName=OPERATOR_ROLE_NAME, PolicyName="administrator",
              PolicyDocument=admin_policy)

    _setup_vault_bucket(endpoint, VAULT_BUCKET, VAULT_KEY_ID, VAULT_KEY_ALIAS)


def _setup_vault_bucket(endpoint: str, bucket: str, key_id: str, alias: str) -> None:
    """Create one vault bucket with its own KMS key (a pinned id), Object Lock and the vault's settings."""
    kms = _operator_client(endpoint, "kms", VAULT_ACCOUNT)
    created = _call(kms.create_key, Description=f"Vault golden copies of {bucket} (SSE-KMS with Bucket Key)")
    _pin_key_id(created["KeyMetadata"]["KeyId"], key_id)
    _call(kms.create_alias, AliasName=alias, TargetKeyId=key_id)
    key_arn = aws_facts.kms_key_arn(REGION, VAULT_ACCOUNT, key_id)

    s3 = _operator_client(endpoint, "s3", VAULT_ACCOUNT)
    _call(s3.create_bucket, Bucket=bucket, ObjectLockEnabledForBucket=True)
    _call(s3.put_bucket_ownership_controls,
          Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    _call(s3.put_public_access_block, Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
    })
    _call(s3.put_bucket_encryption, Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
        "BucketKeyEnabled": True,
    }]})
    _call(s3.put_object_lock_configuration, Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": DEFAULT_RETENTION_DAYS}},
    })


def _pin_key_id(created_id: str, wanted_id: str) -> None:
    """Give the vault key a fixed id, so parameter sets can name its ARN before a backend starts."""
    backend = moto_state.kms_backend(VAULT_ACCOUNT, REGION)
    key = backend.keys.pop(created_id)
    key.id = wanted_id
    key.arn = aws_facts.kms_key_arn(REGION, VAULT_ACCOUNT, wanted_id)
    policy = json.loads(key.policy)
    key.policy = json.dumps(policy)
    backend.keys[wanted_id] = key


def vault_bucket_name(index: int) -> str:
    """Return the name of the seeded vault bucket number `index` (0 is the one-bucket drill's)."""
    return VAULT_BUCKET if index == 0 else f"{VAULT_BUCKET}-{index + 1}"


def vault_key_id(index: int) -> str:
    """Return the pinned key id of the seeded vault bucket number `index`: each bucket has its own key."""
    return VAULT_KEY_ID if index == 0 else str(uuid.uuid5(uuid.UUID(VAULT_KEY_ID), vault_bucket_name(index)))


def vault_key_arn(index: int) -> str:
    """Return the ARN of the seeded vault bucket number `index`'s key."""
    return aws_facts.kms_key_arn(REGION, VAULT_ACCOUNT, vault_key_id(index))


def seed_vaults(endpoint: str, buckets: int, versions: int = 300, random_seed: int = 1) -> list[GroundTruth]:
    """Seed `buckets` vault buckets of `versions` versions each, each with its own key; return their ground truths.

    The first bucket is exactly `seed_vault`'s; the others are named `vault_bucket_name(i)` and
    drawn from seeds of their own, so each bucket holds other keys and versions.
    """
    if buckets < 1:
        raise BackendError(f"a vault needs at least one bucket, got {buckets}")
    truths = [seed_vault(endpoint, versions, random_seed)]
    for index in range(1, buckets):
        name = vault_bucket_name(index)
        _setup_vault_bucket(endpoint, name, vault_key_id(index), f"alias/{name}")
        with heap.bulk_phase():
            truths.append(_seed_bucket(endpoint, vault_bucket_name(index), vault_key_arn(index), versions,
                                       random_seed + 1000 * index))
    return truths


def seed_owner_inventories(endpoint: str, truths: Sequence[GroundTruth]) -> list[Any]:
    """Give every seeded vault bucket its owners' daily inventory and deliver its first report (`owner_inventory`)."""
    from runbook_lib.embedded import owner_inventory

    return owner_inventory.seed_owner_inventory(_operator_client(endpoint, "s3", VAULT_ACCOUNT), VAULT_ACCOUNT,
                                                [truth.vault_bucket for truth in truths], PARTITION)


def seed_vault(endpoint: str, versions: int = 300, random_seed: int = 1) -> GroundTruth:
    """Build the vault account's world in the running backend and return its ground truth."""
    if versions < 20:
        raise BackendError(f"a realistic vault needs at least 20 versions, got {versions}")
    if moto_state.bucket_owner(VAULT_BUCKET) is not None:
        raise BackendError(
            f"this backend already holds a vault ({VAULT_BUCKET}); seed a freshly started backend, "
            "or reset it first (POST /moto-api/reset) if losing its state is intended"
        )
    _setup_accounts(endpoint)
    with heap.bulk_phase():
        return _seed_bucket(endpoint, VAULT_BUCKET, VAULT_KEY_ARN, versions, random_seed)


def _seed_bucket(endpoint: str, bucket_name: str, key_arn: str, versions: int, random_seed: int) -> GroundTruth:
    """Write a realistic history of versions into one vault bucket and return its ground truth."""
    from moto.s3.models import FakeDeleteMarker

    rng = random.Random(random_seed)
    backend = moto_state.s3_backend(VAULT_ACCOUNT)
    bucket = backend.get_bucket(bucket_name)
    now = utc_now().replace(microsecond=0)
    truth = GroundTruth(VAULT_ACCOUNT, RECOVERY_ACCOUNT, REGION, bucket_name, key_arn, random_seed)

    key_count = max(5, round(versions / 2.4))
    names = _key_names(rng, key_count)
    plan = [1] * key_count
    for _ in range(versions - key_count):
        plan[rng.randrange(key_count)] += 1
    large_budget = 3 if versions >= MULTI_MEGABYTE_FROM else 1
    archived_budget = max(1, versions // 150)
    # Three keys with two versions or more at least (the history's edges need them; see seed_history).
    while sum(count >= 2 for count in plan) < 3:
        plan[plan.index(max(plan))] -= 1
        plan[plan.index(1)] += 1
    # A delete marker is the newest entry of about one key in twelve (never the key's only version),
    # and of at least two keys.
    marker_keys = {i for i, count in enumerate(plan) if count >= 2 and rng.random() < 0.08}
    while len(marker_keys) < 2:
        marker_keys.add(rng.choice([i for i, count in enumerate(plan) if count >= 2 and i not in marker_keys]))
    traits = list(REQUIRED_TRAITS) + (["multi_megabyte"] if versions >= MULTI_MEGABYTE_FROM else [])
    traits += list(MULTIPART_OBJECTS) if versions >= MULTIPART_FROM else []
    uploader = _operator_client(endpoint, "s3", VAULT_ACCOUNT) if versions >= MULTIPART_FROM else None
    trait_of = dict(zip(rng.sample(range(versions - len(marker_keys)), len(traits)), traits, strict=True))

    written: list[tuple[str, Any, str]] = []  # (key, stored version, expected outcome)
    object_index = 0
    for key_index, (name, count) in enumerate(zip(names, plan, strict=True)):
        moment = now - timedelta(days=rng.randrange(30, 700), seconds=rng.randrange(86400))
        marker_last = key_index in marker_keys
        for index in range(count):
            moment += timedelta(hours=rng.randrange(1, 2000), seconds=rng.randrange(3600))
            if marker_last and index == count - 1:
                marker = FakeDeleteMarker(key=bucket.keys[name])
                marker._version_id = _version_id(rng)
                marker.last_modified = moment.replace(tzinfo=None)
                marker.replication_status = aws_facts.REPLICATION_STATUS_REPLICA  # type: ignore[attr-defined]
                bucket.keys[name] = marker
                written.append((name, marker, SKIP_DELETE_MARKER))
                continue
            written.append(_put_version(
                backend, bucket, rng, name, moment, now, large_budget, archived_budget,
                trait_of.get(object_index), uploader, key_arn,
            ))
            object_index += 1
            stored, outcome = written[-1][1], written[-1][2]
            if stored.size >= 1_000_000:
                large_budget -= 1
            if outcome == SKIP_ARCHIVED:
                archived_budget -= 1

    # Creation times in the fixed history a point in time is chosen from, each key's order kept.
    seed_history.place_in_history(written, RECOVER)
    latest: dict[str, Any] = {}
    for name, stored, _ in written:
        previous = latest.get(name)
        if previous is None or stored.last_modified >= previous.last_modified:
            latest[name] = stored
    for name, stored, outcome in written:
        truth.versions.append(_describe(name, stored, outcome, latest[name] is stored))
    return truth


def _put_version(
    backend: Any, bucket: Any, rng: random.Random, name: str, moment: datetime, now: datetime,
    large_budget: int, archived_budget: int, trait: str | None = None, uploader: Any = None,
    key_arn: str = VAULT_KEY_ARN,
) -> tuple[str, Any, str]:
    """Write one object version with a realistic mix of lock, hold, size and provenance.

    `trait` (one of REQUIRED_TRAITS, "multi_megabyte" or a MULTIPART_OBJECTS name) forces that
    property on this version; an object in parts is uploaded through `uploader`, a vault S3 client.
    """
    roll = rng.random()
    if large_budget > 0 and roll < 0.02:
        size = rng.randrange(2_000_000, 5_000_000)
    elif roll < 0.08:
        size = 0
    else:
        size = rng.randrange(1, 4096)
    if trait == "zero_bytes":
        size = 0
    elif trait == "multi_megabyte":
        size = rng.randrange(2_000_000, 5_000_000)
    part_sizes, checksum, multipart_mode, multipart_hold = MULTIPART_OBJECTS.get(trait or "", ((), None, None, None))
    if part_sizes:
        size = sum(part_sizes)
    body = rng.randbytes(size)

    mode_roll = rng.random()
    if mode_roll < 0.55:
        mode: str | None = "GOVERNANCE"
    elif mode_roll < 0.85:
        mode = "COMPLIANCE"
    else:
        mode = None  # written before the vault had a default retention
    if trait in ("governance", "hold_with_retention"):
        mode = "GOVERNANCE"
    elif trait == "compliance":
        mode = "COMPLIANCE"
    elif trait == "hold_without_retention":
        mode = None
    until = (now + timedelta(days=rng.randrange(1, 3650), seconds=rng.randrange(86400))) if mode else None
    hold = "ON" if rng.random() < 0.12 else ("OFF" if rng.random() < 0.05 else None)
    if trait in ("hold_with_retention", "hold_without_retention"):
        hold = "ON"
    if part_sizes:
        mode, hold = multipart_mode, multipart_hold
        until = until or now + timedelta(days=rng.randrange(1, 3650), seconds=rng.randrange(86400))

    replica = trait == "archived" or (trait != "not_replica" and rng.random() >= 0.06)
    archived = replica and (trait == "archived" or (archived_budget > 0 and rng.random() < 0.02))
    if part_sizes:
        replica, archived = True, False  # golden copies the recovery must bring back
    # The tiering draw happens only for a version that is not archived, which keeps seeds reproducible.
    standard = aws_facts.DEFAULT_STORAGE_CLASS
    # The required archived version is in DEEP_ARCHIVE, the others drawn at random in GLACIER.
    archive_class = "DEEP_ARCHIVE" if trait == "archived" else "GLACIER"
    storage = archive_class if archived else ("INTELLIGENT_TIERING" if rng.random() < 0.2 else standard)
    sse_s3 = rng.random() < 0.05
    if part_sizes:
        # Uploaded like a large golden copy: the vault's default SSE-KMS, the lock given at creation.
        storage = standard
        stored = _upload_in_parts(backend, uploader, bucket.name, name, body, part_sizes, checksum, mode, until,
                                  hold)
    else:
        stored = backend.put_object(
            bucket.name, name, body, storage=storage,
            encryption="AES256" if sse_s3 else "aws:kms",
            kms_key_id=None if sse_s3 else key_arn,
            bucket_key_enabled=None if sse_s3 else True,
            lock_mode=mode, lock_legal_status=hold,
            lock_until=until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None,
            disable_notification=True,
        )
    stored._version_id = _version_id(rng)
    stored.last_modified = moment.replace(tzinfo=None)
    if rng.random() < 0.3:
        stored.set_metadata({"x-amz-meta-source-system": rng.choice(("erp", "crm", "web"))})
    if replica:
        stored.replication_status = aws_facts.REPLICATION_STATUS_REPLICA
        outcome = SKIP_ARCHIVED if archived else RECOVER
    else:
        stored.replication_status = None
        outcome = SKIP_NOT_REPLICA
    return name, stored, outcome


def _upload_in_parts(
    backend: Any, s3: Any, bucket_name: str, name: str, body: bytes, part_sizes: tuple[int, ...], checksum: str | None,
    mode: str | None, until: datetime | None, hold: str | None,
) -> Any:
    """Upload `body` in parts through the API, the lock given to CreateMultipartUpload; return the stored version."""
    if s3 is None:
        raise ValueError("an object in parts needs the vault's S3 client")
    lock: dict[str, Any] = {}
    if mode and until:
        lock.update(ObjectLockMode=mode, ObjectLockRetainUntilDate=until)
    if hold:
        lock["ObjectLockLegalHoldStatus"] = hold
    if checksum:
        lock["ChecksumAlgorithm"] = checksum
    upload = _call(s3.create_multipart_upload, Bucket=bucket_name, Key=name, **lock)["UploadId"]
    parts, start = [], 0
    for number, part_size in enumerate(part_sizes, start=1):
        extra = {"ChecksumAlgorithm": checksum} if checksum else {}
        answer = _call(s3.upload_part, Bucket=bucket_name, Key=name, UploadId=upload, PartNumber=number,
                       Body=body[start:start + part_size], **extra)
        parts.append({"PartNumber": number, "ETag": answer["ETag"],
                      **({f"Checksum{checksum}": answer[f"Checksum{checksum}"]} if checksum else {})})
        start += part_size
    version = _call(s3.complete_multipart_upload, Bucket=bucket_name, Key=name, UploadId=upload,
                    MultipartUpload={"Parts": parts})["VersionId"]
    bucket = backend.get_bucket(bucket_name)
    return next(v for v in moto_state.versions_of(bucket, name) if str(v.version_id) == str(version))


def _describe(name: str, stored: Any, outcome: str, is_latest: bool) -> SeededVersion:
    modified = as_utc(stored.last_modified).isoformat()
    if moto_state.is_delete_marker(stored):
        return SeededVersion(
            name, stored.version_id, True, is_latest, 0, None, modified, None, aws_facts.REPLICATION_STATUS_REPLICA,
            None, None, None, None, outcome,
        )
    until = stored.lock_until
    return SeededVersion(
        key=name,
        version_id=stored.version_id,
        is_delete_marker=False,
        is_latest=is_latest,
        size=stored.size,
        etag=stored.etag,
        last_modified=modified,
        storage_class=stored.storage_class,
        replication_status=getattr(stored, "replication_status", None),
        encryption=stored.encryption,
        object_lock_mode=stored.lock_mode,
        object_lock_retain_until_date=until,
        object_lock_legal_hold_status=stored.lock_legal_status,
        expected_outcome=outcome,
        parts=len(stored.multipart.partlist) if stored.multipart else None,
        checksum_algorithm=stored.checksum_algorithm,
    )


def content_digest(truth: GroundTruth) -> str:
    """Return a digest of the ground truth's versions, to check that seeding is deterministic."""
    rows = [(v.key, v.version_id, v.size, v.etag, v.object_lock_mode, v.expected_outcome) for v in truth.versions]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
