"""Every read of moto's in-process state, in one place: buckets and versions, roles, keys, backends.

The emulator works on moto's backends inside the server's process, never over HTTP: it needs what
the API cannot give (version ids, replication statuses) and runs two orders of magnitude faster.
Each lookup answers None where AWS would answer "not found", so callers decide which error that is.

moto is imported on first use, not with this module: importing `runbook_lib.embedded` must stay
cheap for the command line, and moto reads some settings from the environment when imported.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any
from urllib.parse import unquote

from runbook_lib import aws_facts

__all__ = [
    "PARTITION",
    "access_key_account",
    "assumed_role_arn",
    "bucket_owner",
    "events_backend",
    "find_bucket",
    "find_version",
    "iam_role",
    "identity_policies",
    "is_delete_marker",
    "kms_backend",
    "kms_key",
    "moto_module",
    "owned_bucket",
    "policy_document",
    "s3_backend",
    "sns_backend",
    "stored_identity_policies",
    "tag_version",
    "version_tags",
    "versions_of",
]

# moto keys its backends by partition; it serves the commercial one, so every ARN built here is in it.
PARTITION = aws_facts.COMMERCIAL_PARTITION




@cache
def moto_module(name: str) -> Any:
    """Return a moto module, imported on first use and then kept: a job reads moto's state many times a task.

    An import statement inside a function costs more than a microsecond each time it runs.
    """
    return importlib.import_module(name)


# --- S3 -----------------------------------------------------------------------------------------


def _backend_of(backends: Any, account: str, region: str) -> Any:
    """Return one account's backend of a service in a Region (or partition), as `backends[account][region]` does.

    moto's BackendDict takes a lock and copies its keys on every lookup, to create a missing backend;
    a job asks several times per task for backends that exist long since, so those are read directly.
    """
    per_account = dict.get(backends, account)
    if per_account is None:
        return backends[account][region]
    backend = dict.get(per_account, region)
    return per_account[region] if backend is None else backend


def s3_backend(account: str) -> Any:
    """Return moto's S3 backend of an account."""
    s3_backends = moto_module("moto.s3.models").s3_backends
    return _backend_of(s3_backends, account, PARTITION)


def bucket_owner(name: str) -> str | None:
    """Return the account that owns a bucket, or None when no account has it (names are global)."""
    s3_backends = moto_module("moto.s3.models").s3_backends
    entry = s3_backends.bucket_accounts.get(name)
    return None if entry is None else str(entry[1])


def owned_bucket(account: str, name: str) -> Any:
    """Return the bucket of that name when this account owns it, or None."""
    return s3_backend(account).buckets.get(name)


def find_bucket(name: str) -> Any:
    """Return the bucket of that name in whichever account owns it, or None."""
    s3_backends = moto_module("moto.s3.models").s3_backends
    entry = s3_backends.bucket_accounts.get(name)
    if entry is None:
        return None
    partition, account = entry
    return _backend_of(s3_backends, account, partition).buckets.get(name)


def versions_of(bucket: Any, key: str) -> list[Any]:
    """Return a copy of a key's versions (objects and delete markers) in moto's order, oldest first.

    A copy, because request threads insert versions into the same lists while a job reads them.
    """
    return list(bucket.keys.getlist(key, []))


def find_version(bucket: Any, key: str, version_id: str) -> Any:
    """Return one stored version (object or delete marker) of a key, or None when it is absent."""
    if bucket is None:
        return None
    return next((v for v in versions_of(bucket, key) if str(v.version_id) == version_id), None)


def is_delete_marker(version: Any) -> bool:
    """Return True for a delete marker, False for an object version."""
    FakeDeleteMarker = moto_module("moto.s3.models").FakeDeleteMarker
    return isinstance(version, FakeDeleteMarker)


def version_tags(bucket: Any, version: Any) -> dict[str, str]:
    """Return the object tags of a version (delete markers have none)."""
    if is_delete_marker(version):
        return {}
    return dict(s3_backend(bucket.account_id).tagger.get_tag_dict_for_resource(version.arn))


def tag_version(bucket: Any, version: Any, tags: Mapping[str, str]) -> None:
    """Give a version of the bucket these object tags."""
    tag_list = [{"Key": key, "Value": value} for key, value in tags.items()]
    s3_backend(bucket.account_id).tagger.tag_resource(version.arn, tag_list)


# --- IAM and policy documents ------------------------------------------------------------------


def iam_role(role_arn: str) -> Any:
    """Return the role an ARN names (its path included, as AWS's role ARNs have it), or None."""
    iam_backends = moto_module("moto.iam.models").iam_backends
    account = aws_facts.account_of_arn(role_arn)
    if not account:
        return None
    backend = _backend_of(iam_backends, account, PARTITION)
    # A copy of the values, as request threads may create roles meanwhile. moto builds a role's ARN
    # each time it is read, so the name (the ARN's last part) is compared first.
    name = role_arn.rpartition("/")[2]
    for role in list(backend.roles.values()):
        if role.name == name and role.arn == role_arn:
            return role
    return None


def identity_policies(role: Any) -> list[dict[str, Any]]:
    """Return the role's inline policies and the default version of each attached managed policy."""
    documents = (policy_document(text) for text in stored_identity_policies(role))
    return [document for document in documents if document is not None]


def stored_identity_policies(role: Any) -> tuple[Any, ...]:
    """Return the role's identity policies as moto stores them (text), inline ones first: cheap to compare."""
    stored = list(role.policies.values())
    for policy in list(role.managed_policies.values()):
        default = next((v for v in policy.versions if v.is_default), None)
        if default is not None:
            stored.append(default.document)
    return tuple(stored)


def policy_document(stored: Any) -> dict[str, Any] | None:
    """Return a stored policy as a dict, or None when there is none or it is not a JSON object.

    moto keeps policies as JSON text (bucket policies as bytes), sometimes URL-encoded as IAM sends
    them. The dict may be shared with other callers: read it, never modify it.
    """
    if stored is None:
        return None
    if type(stored) is str:  # the usual form, tested first: every task reads several policies
        return _parsed_policy(stored) if stored else None
    if isinstance(stored, Mapping):
        return dict(stored)
    if isinstance(stored, (bytes, bytearray)):
        stored = stored.decode()
    if not stored or not isinstance(stored, str):
        return None
    return _parsed_policy(stored)


@lru_cache(maxsize=512)
def _parsed_policy(text: str) -> dict[str, Any] | None:
    # Cached: a job evaluates the same few policies for each of thousands of tasks.
    for candidate in (text, unquote(text)):
        try:
            document = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(document, dict):
            return document
    return None


# --- STS ------------------------------------------------------------------------------------------


def access_key_account(access_key: str) -> str:
    """Return the account an access key belongs to (moto's default account for an unknown key)."""
    get_account_id_from = moto_module("moto.iam.models").get_account_id_from
    return str(get_account_id_from(access_key))


def assumed_role_arn(account: str, access_key: str) -> str:
    """Return the role ARN behind an assumed-role access key of the account, or "" for any other key."""
    sts_backends = moto_module("moto.sts.models").sts_backends
    assumed = sts_backends[account][PARTITION].get_assumed_role_from_access_key(access_key)
    return str(assumed.role_arn) if assumed is not None else ""


# --- KMS, EventBridge, SNS ----------------------------------------------------------------------


def kms_backend(account: str, region: str) -> Any:
    """Return moto's KMS backend of an account in a Region."""
    kms_backends = moto_module("moto.kms.models").kms_backends
    return _backend_of(kms_backends, account, region)


def kms_key(reference: str, account: str, region: str) -> Any:
    """Return the KMS key an ARN, key id, alias or alias ARN names, or None when there is none.

    An ARN names its own account and Region; a bare id or alias is looked up in `account` and `region`.
    """
    if reference.startswith("arn:"):
        parts = reference.split(":")
        if len(parts) < 6 or parts[2] != "kms":
            return None
        region, account = parts[3] or region, parts[4] or account
    backend = kms_backend(account, region)
    try:
        key_id = backend.any_id_to_key_id(reference)
    except Exception:  # moto raises several types for an unknown alias
        return None
    return backend.keys.get(key_id) if key_id else None


def events_backend(account: str, region: str) -> Any:
    """Return moto's EventBridge backend of an account in a Region."""
    events_backends = moto_module("moto.events.models").events_backends
    return events_backends[account][region]


def sns_backend(account: str, region: str) -> Any:
    """Return moto's SNS backend of an account in a Region."""
    sns_backends = moto_module("moto.sns.models").sns_backends
    return sns_backends[account][region]
