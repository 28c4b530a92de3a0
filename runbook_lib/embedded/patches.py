"""Every change we make to moto's behaviour, in one place, applied inside the backend's process.

moto 5.2.1 is pinned. Each patch names the moto behaviour it replaces and records a fingerprint of
the moto source it replaces or wraps (`PATCHED_SOURCES`); `tests/test_moto_patches.py` fails when a
moto upgrade changes that source, so the patch is reviewed instead of silently drifting.

| patch                         | moto behaviour replaced                                                     |
|-------------------------------|-----------------------------------------------------------------------------|
| instance tracking             | every FakeKey / FakeDeleteMarker, deep copies included, is appended to a    |
|                               | class-level registry that is never pruned (about 1.5 GB per 20k listing)    |
| list_object_versions          | deep-copies every version of the bucket on every page (quadratic in time)   |
| key store removals            | none: we note each removal of a key name (`_VersionedKeyStore.pop`), so a   |
|                               | listing sorts a bucket's names once, not once per page                      |
| ListObjectVersions answer     | rendered by the generic serializer, most of a second per page of 1,000; we  |
|                               | write the same XML directly                                                 |
| GetObjectRetention            | not implemented: `GET ?retention` falls through to GetObject                |
| GetObjectLegalHold            | refuses archived versions (InvalidObjectState) and answers an empty status  |
|                               | for a version without a hold (AWS: NoSuchObjectLockConfiguration)           |
| lock fields per caller        | a bucket-policy or identity-policy Deny of s3:GetObjectRetention or         |
|                               | s3:GetObjectLegalHold is ignored: moto checks only s3:GetObject, so HEAD    |
|                               | and GET still send the lock headers and both calls still answer. We omit    |
|                               | the headers and answer AccessDenied, per object, as AWS does                |
| x-amz-replication-status      | never emitted; we keep the status on the key and send it on GET/HEAD        |
| retain-until header           | sent as stored; we always send a UTC ISO-8601 value with a `Z`             |
| GetBucketReplication          | rewrites rules on read (drops SourceSelectionCriteria, Filter, ...)        |
| GetBucketNotificationConfig.  | drops EventBridgeConfiguration on read, so it never round-trips             |
| EventBridge -> SNS target     | raises NotImplementedError, and stops delivery to later rules              |
| inventory configurations      | IncludedObjectVersions is dropped (Get/List always answer All), a single   |
|                               | optional field is kept as a string, and DeleteBucketInventoryConfiguration  |
|                               | falls through to DeleteBucket (an empty bucket is deleted)                  |
| Object Lock of multipart      | CreateMultipartUpload drops the lock headers (mode, retain-until, legal     |
| uploads                       | hold) and CompleteMultipartUpload ignores the bucket's default retention:   |
|                               | we keep the headers on the upload and give the object its lock on           |
|                               | completion, as PutObject does; lock headers on a bucket without Object      |
|                               | Lock are refused (InvalidRequest), as on PutObject                          |
| RestoreObject and             | restores the key's latest version whatever versionId says, finishes at once |
| x-amz-restore                 | (or on moto's own state-manager clock), never answers 409 for a restore in  |
|                               | progress; we restore the addressed version through `restore` (a configurable|
|                               | delay, AWS's expiry rounding) and send its x-amz-restore header instead      |
"""

from __future__ import annotations

import bisect
import hashlib
import inspect
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import xmltodict
from moto import settings as moto_settings
from moto.core.responses import ActionResult
from moto.core.utils import unix_time_millis
from moto.events.models import Rule
from moto.s3.exceptions import LockNotEnabled
from moto.s3.models import FakeDeleteMarker, FakeKey, S3Backend
from moto.s3.responses import S3Response
from moto.s3.utils import _VersionedKeyStore

from runbook_lib import aws_facts
from runbook_lib.embedded import iam_eval, moto_state, restore
from runbook_lib.embedded.moto_state import PARTITION
from runbook_lib.embedded.utc import iso_millis, iso_seconds
from runbook_lib.errors import BackendError

__all__ = ["PATCHED_SOURCES", "apply_all", "moto_source_fingerprint", "normalise_retain_until"]

# Fingerprints (sha256 of inspect.getsource) of the moto code each patch replaces or relies on.
# One function per line, even past the line length, so a changed fingerprint is a one-line diff.
PATCHED_SOURCES: dict[str, str] = {
    "moto.core.common_models.BaseModel.__new__": "08cf0ef20e88029a2eb91949492ce3281001a34b98143db186239962ad379eec",
    "moto.s3.models.S3Backend.list_object_versions": "268a5f62e83a572464f0dd13c2048e20e8b1ef39ea09aae8be0248b286dc71b4",
    "moto.s3.utils._VersionedKeyStore.pop": "92736e3c4102461ee6c07a013b9ca36008abc77e2625edee46ac4838bdaddefd",
    "moto.s3.responses.S3Response.list_object_versions": "a5ad4dafbad9f008ffcb35f4c53552d29afb9b3441309e81ef39fa1221eed318",  # noqa: E501
    "moto.s3.responses.S3Response._key_response_get": "ee432d6a706f4276ede0c405542da415557775b7b4420aa585d6562f6a4f52f3",  # noqa: E501
    "moto.s3.models.FakeKey.response_dict": "57d0ac8aa00fe7bef968e0515f6488564880b1b7f79b901e2b0c823c13a32554",
    "moto.s3.responses.S3Response.get_bucket_replication": "5da06c98f09811719ef0078fecdfcd8054da06afd0674138d2a922451ae94ed1",  # noqa: E501
    "moto.s3.models.S3Backend.put_bucket_replication": "6dd7d63edffb31763b84024bcaa7cdd86e6e13e2aee12764ae56c3f907c52e2c",  # noqa: E501
    "moto.s3.responses.S3Response.get_bucket_notification": "82884034c1654e24095a79acbc0b53832d84a3ce9638e137b2302e6c6279014d",  # noqa: E501
    "moto.events.models.Rule.send_to_targets": "472e002e2dab8a599554a7d6c7ea0910625a5b39c7699b9ca4404255efcfc172",
    "moto.s3.responses.S3Response.get_object_legal_hold": "55b147e8c19f370206cf9a317b6c6b15753f1074e42c5c2c7ff46baaffe87aa5",  # noqa: E501
    "moto.s3.responses.S3Response.head_object": "6ca35f68a7d0aae787cfa4bafe879e2a6a3f51acdcd696a2f9eaea11282ff1db",
    "moto.s3.responses.S3Response.get_object": "dc26b46ecc3efe1cb5652f2ac283ba4ed40f4b98a5a4801ba6c309e20f25931c",
    "moto.s3.models.S3Backend.put_bucket_inventory_configuration": "fe11ca9edaa48ec12a04010ac35726a77b9cfc508ebb4dfb244ae36caedca91b",  # noqa: E501
    "moto.s3.responses.S3Response.get_bucket_inventory_configuration": "701b8945d728be86d1336289ae108d570b0f6791946058a9911b96b54c4c90cf",  # noqa: E501
    "moto.s3.responses.S3Response.list_bucket_inventory_configurations": "43c967ddf3a698453e70d1f4185691d77887516bf09881278b9386a8b14dafd8",  # noqa: E501
    "moto.s3.responses.S3Response._bucket_response_delete": "068da6315fbdfd6fe3f38d1ff9774d3aa1dbb3391721bfdab73ee22c0e3ff339",  # noqa: E501
    "moto.s3.responses.S3Response._key_response_post": "2233819724e1ac943065b077aa8dc693807d463a1708dbedcd6dbc45152b47ec",  # noqa: E501
    "moto.s3.models.S3Backend.complete_multipart_upload": "f16c9a08e5db3f4fddba3a9dcb82f0ed5889e482cff8106c47d7cc7c04309748",  # noqa: E501
    "moto.s3.models.S3Backend.restore_object": "c70a0707979b8c5d461583924af8f7ff74408e7e69aa9cb97febec23ededdae6",
    "moto.s3.models.FakeKey.restore": "a67a777b8d69c449176e517c3f1df81e4749a03c5b17180f093c03063076bfae",
}

_applied = False
_lock = threading.Lock()
_originals: dict[str, Any] = {}


def _resolve(dotted: str) -> Any:
    """Return the moto object a dotted path names (module attributes, then class members)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = __import__(".".join(parts[:split]), fromlist=["_"])
        except ImportError:
            continue
        for name in parts[split:]:
            obj = inspect.getattr_static(obj, name)
        return obj
    raise LookupError(dotted)


def moto_source_fingerprint(dotted: str) -> str:
    """Return the sha256 of the original moto source behind `dotted`, for upgrade checks."""
    original = _originals.get(dotted) or _resolve(dotted)
    if isinstance(original, property):
        original = original.fget
    if isinstance(original, (staticmethod, classmethod)):
        original = original.__func__
    source = inspect.getsource(original)
    return hashlib.sha256(source.encode()).hexdigest()


# ---------------------------------------------------------------------------- instance tracking


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    # moto's registry only serves its dashboard; keeping every copy alive leaks memory.
    return object.__new__(cls)


# ------------------------------------------------------------------------- list_object_versions


class _VersionView:
    """A listing entry: the stored version plus its is_latest flag, without copying the version."""

    __slots__ = ("_version", "is_latest")

    def __init__(self, version: Any, is_latest: bool) -> None:
        self._version = version
        self.is_latest = is_latest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._version, name)

    @property
    def is_delete_marker(self) -> bool:
        return isinstance(self._version, FakeDeleteMarker)


# Where a bucket's key store keeps its sorted names, and the token of its last removal of a name.
_SORTED_NAMES = "_runbook_sorted_names"
_REMOVAL = "_runbook_removal"
_removal_tokens = itertools.count(1)


def _sorted_names(store: Any) -> list[str]:
    """Return a key store's names in listing order (not to be changed), sorted again only when they changed.

    Sorting every name for each page of 1,000 made listing a bucket quadratic: a vault of 10^6
    versions spent most of a second per page on it. A name is added only by a write (the count of
    names grows) and removed only through `pop` (which leaves a new removal token), so equal counts
    and an unchanged token mean the same names.
    """
    stamp = (len(store), store.__dict__.get(_REMOVAL, 0))
    cached = store.__dict__.get(_SORTED_NAMES)
    if cached is not None and cached[0] == stamp:
        names: list[str] = cached[1]
        return names
    names = sorted(store.keys())
    # The count of these names, and the removal token read before they were taken: a name added or
    # removed since makes the next look sort again.
    store.__dict__[_SORTED_NAMES] = ((len(names), stamp[1]), names)
    return names


def _noting_removal(original: Callable[..., Any]) -> Callable[..., Any]:
    def pop(self: Any, key: str) -> Any:
        try:
            return original(self, key)
        finally:
            self.__dict__[_REMOVAL] = next(_removal_tokens)

    return pop


def _versions_from(bucket: Any, first_name: str) -> Iterator[_VersionView]:
    """Yield versions in moto's listing order (name, newest first), starting at `first_name`."""
    names = _sorted_names(bucket.keys)
    for position in range(bisect.bisect_left(names, first_name), len(names)):  # no copy of the rest
        name = names[position]
        versions = sorted(
            bucket.keys.getlist(name, []), key=lambda v: -unix_time_millis(v.last_modified)
        )
        for index, version in enumerate(versions):
            yield _VersionView(version, is_latest=index == 0)


def _list_object_versions(
    self: S3Backend,
    bucket_name: str,
    delimiter: str | None = None,
    key_marker: str | None = None,
    max_keys: int | None = 1000,
    prefix: str = "",
    version_id_marker: str | None = None,
) -> tuple[list[Any], list[str], list[Any], str | None, str | None]:
    """AWS's paging rules, starting at the marker and without deep-copying the bucket."""
    bucket = self.get_bucket(bucket_name)
    common_prefixes: set[str] = set()
    requested_versions: list[Any] = []
    delete_markers: list[Any] = []
    next_key_marker: str | None = None
    next_version_id_marker: str | None = None
    # Names before both the marker and the prefix can never be listed: start past them.
    start = max(key_marker or "", prefix or "")
    skip_versions = key_marker is not None
    # The last entry returned (key or common prefix, version id): where the next page resumes.
    last_entry: tuple[str, str | None] | None = None
    for version in _versions_from(bucket, start):
        name = version.name
        if skip_versions:
            if not version_id_marker:
                # A key marker alone resumes after every version of that key.
                if key_marker is not None and name <= key_marker:
                    continue
                skip_versions = False
            else:
                if name == key_marker and version.version_id == version_id_marker:
                    skip_versions = False
                continue
        if not name.startswith(prefix):
            if name > prefix:
                break
            continue
        is_common_prefix = False
        if delimiter and delimiter in name[len(prefix) :]:
            end = len(prefix) + name[len(prefix) :].index(delimiter) + len(delimiter)
            name = name[0:end]
            # A common prefix counts once, and not again on the page after it was returned.
            if name == key_marker or name in common_prefixes:
                continue
            is_common_prefix = True
        if (
            max_keys is not None
            and len(requested_versions) + len(delete_markers) + len(common_prefixes) >= max_keys
        ):
            if last_entry is not None:
                next_key_marker, next_version_id_marker = last_entry
            break
        if is_common_prefix:
            common_prefixes.add(name)
            last_entry = (name, None)
        else:
            last_entry = (name, version.version_id)
            if version.is_delete_marker:
                delete_markers.append(version)
            else:
                requested_versions.append(version)
    return (
        requested_versions,
        sorted(common_prefixes),
        delete_markers,
        next_key_marker,
        next_version_id_marker,
    )


# moto's answer to ListObjectVersions, rendered by hand: its generic serializer (a botocore shape
# walk and a timestamp parse per field) takes most of a second per page of 1,000 versions, so
# listing a million-version vault took a quarter of an hour. Same elements, same order, same values.
_LISTING_OWNER = (
    "<Owner><DisplayName>webfile</DisplayName>"
    "<ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner>"
)


def _element(name: str, value: str | None) -> str:
    """Return one XML element with escaped text, empty as `<name/>`, as moto's serializer writes it."""
    return f"<{name}>{xml_escape(value)}</{name}>" if value else f"<{name}/>"


def _list_object_versions_response(self: S3Response) -> Any:
    """Answer ListObjectVersions with the XML moto's serializer writes, built directly."""
    delimiter = self.querystring.get("delimiter", [None])[0]
    key_marker = self.querystring.get("key-marker", [None])[0]
    max_keys = int(self.querystring.get("max-keys", [moto_settings.get_s3_default_max_keys()])[0])
    prefix = self._get_querystring(self.request, self.uri).get("prefix", [""])[0]
    version_id_marker = self.querystring.get("version-id-marker", [None])[0]
    bucket = self.backend.get_bucket(self.bucket_name)
    versions, prefixes, markers, next_key, next_version = self.backend.list_object_versions(
        self.bucket_name, delimiter=delimiter, key_marker=key_marker, max_keys=max_keys, prefix=prefix,
        version_id_marker=version_id_marker,
    )
    self.data["Action"] = "ListObjectVersions"
    truncated = next_key is not None
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n',
        f'<ListVersionsResult xmlns="{_S3_NS}"><IsTruncated>{"true" if truncated else "false"}</IsTruncated>',
        _element("KeyMarker", key_marker), _element("VersionIdMarker", version_id_marker),
    ]
    if truncated:
        parts += [_element("NextKeyMarker", next_key), _element("NextVersionIdMarker", next_version)]
    for version in versions:
        parts.append(
            f"<Version>{_element('ETag', version.etag)}<Size>{version.size}</Size>"
            f"{_element('StorageClass', version.storage_class)}{_element('Key', version.name)}"
            f"{_element('VersionId', version.version_id)}"
            f"<IsLatest>{'true' if getattr(version, 'is_latest', False) else 'false'}</IsLatest>"
            f"{_element('LastModified', version.last_modified_ISO8601)}{_LISTING_OWNER}</Version>"
        )
    for marker in markers:
        parts.append(
            f"<DeleteMarker>{_element('Key', marker.name)}{_element('VersionId', marker.version_id)}"
            f"<IsLatest>{'true' if getattr(marker, 'is_latest', False) else 'false'}</IsLatest>"
            f"{_element('LastModified', marker.last_modified_ISO8601)}{_LISTING_OWNER}</DeleteMarker>"
        )
    parts += [_element("Name", bucket.name), _element("Prefix", prefix)]
    if delimiter is not None:
        parts.append(_element("Delimiter", delimiter))
    parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
    parts += [f"<CommonPrefixes>{_element('Prefix', common)}</CommonPrefixes>" for common in prefixes]
    parts.append("</ListVersionsResult>")
    return 200, {"Content-Type": "application/xml"}, "".join(parts)


# ---------------------------------------------------------------- GetObjectRetention, headers


def normalise_retain_until(value: Any) -> str | None:
    """Return a retain-until value as AWS sends it: ISO-8601 UTC with milliseconds and a `Z`."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return iso_millis(value)
    return iso_millis(datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")))


_NO_LOCK_CONFIGURATION = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchObjectLockConfiguration</Code>'
    "<Message>The specified object does not have a ObjectLock configuration</Message></Error>"
)
_ACCESS_DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    "<Message>Access Denied</Message></Error>"
)
_RETENTION_HEADERS = ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date")
_LEGAL_HOLD_HEADERS = ("x-amz-object-lock-legal-hold",)
GET_RETENTION = "s3:GetObjectRetention"
GET_LEGAL_HOLD = "s3:GetObjectLegalHold"


def _lock_key(self: S3Response) -> tuple[Any, dict[str, str]]:
    """Return the addressed version and its version header; archived versions answer too, as on AWS."""
    key, _ = self._get_key(validate_storage_class=False)
    headers: dict[str, str] = {}
    if key.version_id != "null":
        headers["x-amz-version-id"] = key.version_id
    return key, headers


def _get_object_retention(self: S3Response) -> Any:
    key, headers = _lock_key(self)
    if not key.lock_mode and not key.lock_until:
        return 404, headers, _NO_LOCK_CONFIGURATION
    retention = {"Mode": key.lock_mode, "RetainUntilDate": normalise_retain_until(key.lock_until)}
    body = xmltodict.unparse(
        {"Retention": {"@xmlns": "http://s3.amazonaws.com/doc/2006-03-01/", **retention}}
    )
    return 200, headers, body


def _get_object_legal_hold(self: S3Response) -> Any:
    key, headers = _lock_key(self)
    if not key.lock_legal_status:
        return 404, headers, _NO_LOCK_CONFIGURATION
    body = xmltodict.unparse(
        {"LegalHold": {"@xmlns": "http://s3.amazonaws.com/doc/2006-03-01/", "Status": key.lock_legal_status}}
    )
    return 200, headers, body


def _caller_role_arn(self: S3Response) -> str:
    """Return the IAM role ARN behind the request's access key ("" when it is not an assumed role)."""
    authorization = str(self.headers.get("Authorization", ""))
    access_key = authorization.partition("Credential=")[2].partition("/")[0]
    if not access_key:
        return ""
    return moto_state.assumed_role_arn(self.current_account, access_key)


def lock_read_denied(self: S3Response, action: str, key_name: str) -> bool:
    """Return True when a Deny in the bucket policy or the caller's identity policies refuses `action` on the object.

    Only explicit denies count: the backend runs without moto's authentication, so an absent
    Allow refuses nothing, as everywhere else in it.
    """
    bucket = self.backend.get_bucket(self.bucket_name)
    role_arn = _caller_role_arn(self)
    request = iam_eval.Request(
        principal_arn=role_arn, principal_account=self.current_account, action=action,
        resource=aws_facts.object_arn(self.bucket_name, key_name, PARTITION), resource_account=str(bucket.account_id),
    )
    role = moto_state.iam_role(role_arn) if role_arn else None
    policies = moto_state.identity_policies(role) if role is not None else []
    bucket_policy = moto_state.policy_document(bucket.policy)
    if bucket_policy is not None:
        policies.append(bucket_policy)
    try:
        return any(iam_eval.evaluate(policy, request) == "Deny" for policy in policies)
    except BackendError:
        return True  # a policy we cannot read must not grant what it may deny


def _wrap_key_response_get(original: Callable[..., Any]) -> Callable[..., Any]:
    def _key_response_get(self: S3Response, query: dict[str, Any], key_name: str) -> Any:
        lock_call = (
            ("GetObjectRetention", GET_RETENTION, _get_object_retention) if "retention" in query
            else ("GetObjectLegalHold", GET_LEGAL_HOLD, _get_object_legal_hold) if "legal-hold" in query
            else None
        )
        if lock_call is None or query.get("uploadId"):
            return original(self, query, key_name)
        name, action, answer = lock_call
        self._set_action("KEY", "GET", query)
        self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name, key_name=key_name)
        self.data["Action"] = name
        if lock_read_denied(self, action, key_name):
            return 403, {}, _ACCESS_DENIED
        return answer(self)

    return _key_response_get


def _without_unreadable_lock_headers(self: S3Response, key_name: str, headers: dict[str, Any]) -> None:
    """Drop the lock headers the caller may not read: AWS leaves them out of HEAD and GET silently."""
    if not any(name in headers for name in (*_RETENTION_HEADERS, *_LEGAL_HOLD_HEADERS)):
        return
    for action, names in ((GET_RETENTION, _RETENTION_HEADERS), (GET_LEGAL_HOLD, _LEGAL_HOLD_HEADERS)):
        if lock_read_denied(self, action, key_name):
            for name in names:
                headers.pop(name, None)


def _wrap_head_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def head_object(
        self: S3Response, bucket_name: str, query: dict[str, Any], key_name: str, headers: dict[str, Any]
    ) -> Any:
        status, response_headers, body = original(self, bucket_name, query, key_name, headers)
        _without_unreadable_lock_headers(self, key_name, response_headers)
        return status, response_headers, body

    return head_object


def _wrap_get_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_object(self: S3Response) -> Any:
        status, response_headers, body = original(self)
        _without_unreadable_lock_headers(self, self.parse_key_name(), response_headers)
        return status, response_headers, body

    return get_object


def _wrap_response_dict(original: property) -> property:
    def response_dict(self: FakeKey) -> dict[str, Any]:
        headers: dict[str, Any] = original.fget(self)  # type: ignore[misc]
        status = getattr(self, "replication_status", None)
        if status:
            headers["x-amz-replication-status"] = status
        if headers.get("x-amz-object-lock-retain-until-date"):
            headers["x-amz-object-lock-retain-until-date"] = normalise_retain_until(
                headers["x-amz-object-lock-retain-until-date"]
            )
        # moto's own restore state never changes (we answer RestoreObject); ours decides the header.
        headers.pop("x-amz-restore", None)
        restore_header = restore.restore_header(self)
        if restore_header is not None:
            headers["x-amz-restore"] = restore_header
        return headers

    return property(response_dict)


# ------------------------------------------------------------------------ bucket replication

_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _get_bucket_replication(self: S3Response) -> Any:
    """Return the stored configuration as it was put, not moto's abridged rewrite."""
    self.data["Action"] = "GetBucketReplication"
    config = self.backend.get_bucket_replication(self.bucket_name)
    if not config:
        from moto.s3.exceptions import ReplicationConfigurationNotFoundError

        raise ReplicationConfigurationNotFoundError(bucket_name=self.bucket_name)
    document = {k: v for k, v in config.items() if not k.startswith("@")}
    return xmltodict.unparse({"ReplicationConfiguration": {"@xmlns": _S3_NS, **document}})


# ------------------------------------------------------------ bucket notification config


def _get_bucket_notification(self: S3Response) -> Any:
    """moto's rendering plus EventBridgeConfiguration, which moto stores but never returns."""
    from moto.s3.responses import ActionResult, EmptyResult

    configuration = self.backend.get_bucket_notification_configuration(self.bucket_name)
    if not configuration:
        return self.serialized(EmptyResult())

    def build(item: Any, arn_key: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": item.id, arn_key: item.arn, "Events": item.events}
        if item.filters:
            entry["Filter"] = {"Key": {"FilterRules": item.filters["S3Key"]["FilterRule"]}}
        return entry

    result: dict[str, Any] = {
        "TopicConfigurations": [build(t, "TopicArn") for t in configuration.topic],
        "QueueConfigurations": [build(q, "QueueArn") for q in configuration.queue],
        "LambdaFunctionConfigurations": [build(f, "LambdaFunctionArn") for f in configuration.cloud_function],
    }
    if configuration.event_bridge is not None:
        result["EventBridgeConfiguration"] = {}
    self.data["Action"] = "GetBucketNotificationConfiguration"
    return self.serialized(ActionResult(result))


# --------------------------------------------------------------------- EventBridge -> SNS


def _wrap_send_to_targets(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_to_targets(self: Rule, original_event: dict[str, Any], transform_input: bool = True) -> None:
        sns_targets = [t for t in self.targets if t["Arn"].split(":")[2] == "sns"]
        if sns_targets and self.event_pattern.matches_event(original_event):  # type: ignore[arg-type]
            event = dict(original_event)
            if isinstance(event.get("time"), (int, float)):
                event["time"] = iso_seconds(datetime.fromtimestamp(event["time"], tz=timezone.utc))
            for target in sns_targets:
                _, _, _, region, account, _ = target["Arn"].split(":", 5)
                moto_state.sns_backend(account, region).publish(
                    message=json.dumps(event), arn=target["Arn"], subject=None
                )
        others = [t for t in self.targets if t not in sns_targets]
        if others:
            saved = self.targets
            try:
                self.targets = others
                original(self, original_event, transform_input)
            finally:
                self.targets = saved

    return send_to_targets


# ------------------------------------------------------------------- inventory configurations


def _wrap_put_inventory(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_bucket_inventory_configuration(
        self: S3Backend, bucket_name: str, inventory_configuration: dict[str, Any]
    ) -> None:
        original(self, bucket_name, inventory_configuration)
        stored = self.get_bucket(bucket_name).inventory_configs[inventory_configuration["Id"]]
        stored.included_object_versions = (  # type: ignore[attr-defined]
            inventory_configuration.get("IncludedObjectVersions") or "All"
        )
        fields = inventory_configuration.get("OptionalFields") or {}
        listed = fields.get("Field") if isinstance(fields, dict) else fields
        stored.optional_fields = [listed] if isinstance(listed, str) else list(listed or [])

    return put_bucket_inventory_configuration


def _inventory_document(config: Any) -> dict[str, Any]:
    """Return a stored configuration as S3 answers it, IncludedObjectVersions as it was put."""
    document: dict[str, Any] = {
        "Destination": config.destination,
        "IsEnabled": str(config.is_enabled).lower() == "true",
        "Id": config.id,
        "IncludedObjectVersions": getattr(config, "included_object_versions", None) or "All",
        "Schedule": config.schedule,
    }
    if config.filters:
        document["Filter"] = config.filters
    if config.optional_fields:
        listed = config.optional_fields
        listed = listed.get("Field", []) if isinstance(listed, dict) else listed
        document["OptionalFields"] = [listed] if isinstance(listed, str) else list(listed)
    return document


def _get_bucket_inventory_configuration(self: S3Response) -> Any:
    config = self.backend.get_bucket_inventory_configuration(
        bucket_name=self.bucket_name, id=self.querystring["id"][0]
    )
    self.data["Action"] = "GetBucketInventoryConfiguration"
    return self.serialized(ActionResult({"InventoryConfiguration": _inventory_document(config)}))


def _list_bucket_inventory_configurations(self: S3Response) -> Any:
    configs = self.backend.list_bucket_inventory_configurations(bucket_name=self.bucket_name)
    result = {"InventoryConfigurationList": [_inventory_document(c) for c in configs], "IsTruncated": False}
    self.data["Action"] = "ListBucketInventoryConfigurations"
    return self.serialized(ActionResult(result))


_NO_SUCH_CONFIGURATION = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchConfiguration</Code>'
    "<Message>The specified configuration does not exist.</Message></Error>"
)


def _wrap_bucket_response_delete(original: Callable[..., Any]) -> Callable[..., Any]:
    def _bucket_response_delete(self: S3Response, bucket_name: str, querystring: dict[str, Any]) -> Any:
        if "inventory" not in querystring:
            return original(self, bucket_name, querystring)
        self._set_action("BUCKET", "DELETE", querystring)
        self._authenticate_and_authorize_s3_action(bucket_name=bucket_name)
        config_id = (querystring.get("id") or [""])[0]
        configs = self.backend.get_bucket(bucket_name).inventory_configs
        if config_id not in configs:
            return 404, {}, _NO_SUCH_CONFIGURATION
        del configs[config_id]
        return 204, {}, ""

    return _bucket_response_delete


# ------------------------------------------------------------- Object Lock of multipart uploads

# The lock a CreateMultipartUpload asked for, kept on moto's upload until it completes.
_REQUESTED_LOCK = "requested_object_lock"
_UPLOAD_ID = re.compile(r"<UploadId>([^<]+)</UploadId>")


def _requested_lock(self: S3Response) -> tuple[str | None, str | None, str | None]:
    """Return the (mode, retain-until date, legal hold) headers of the request, as PutObject reads them."""
    return (
        self.headers.get("x-amz-object-lock-mode"),
        self.headers.get("x-amz-object-lock-retain-until-date"),
        self.headers.get("x-amz-object-lock-legal-hold"),
    )


def _restore_object(self: S3Response, body: bytes, bucket_name: str, query: dict[str, Any], key_name: str) -> Any:
    """Answer RestoreObject for the addressed version (the latest without versionId), as S3 does."""
    self._set_action("KEY", "POST", query)
    self._authenticate_and_authorize_s3_action(bucket_name=bucket_name, key_name=key_name)
    self.data["Action"] = "RestoreObject"
    version_id = (query.get("versionId") or [None])[0]
    key = self.backend.get_object(bucket_name, key_name, version_id=version_id)
    if key is None:
        return 404, {}, _error_body("NoSuchVersion" if version_id else "NoSuchKey",
                                    "The specified version does not exist." if version_id
                                    else "The specified key does not exist.")
    request = (xmltodict.parse(body) if body else {}).get("RestoreRequest") or {}
    tier = (request.get("GlacierJobParameters") or {}).get("Tier") or request.get("Tier") or "Standard"
    try:
        status = restore.request_restore(key, int(request.get("Days") or 0), str(tier).upper())
    except restore.RestoreRefused as refused:
        return refused.status, {}, _error_body(refused.code, refused.message)
    return status, {}, ""


def _error_body(code: str, message: str) -> str:
    """Return an S3 error document."""
    return str(xmltodict.unparse({"Error": {"Code": code, "Message": message, "RequestId": "embedded"}}))


def _wrap_key_response_post(original: Callable[..., Any]) -> Callable[..., Any]:
    def _key_response_post(
        self: S3Response, request: Any, body: bytes, bucket_name: str, query: dict[str, Any], key_name: str
    ) -> Any:
        if "restore" in query:
            return _restore_object(self, body, bucket_name, query, key_name)
        if not (body == b"" and "uploads" in query):
            return original(self, request, body, bucket_name, query, key_name)
        mode, until, hold = _requested_lock(self)
        if (mode or until or hold) and not self.backend.get_bucket(bucket_name).object_lock_enabled:
            raise LockNotEnabled
        answer = original(self, request, body, bucket_name, query, key_name)
        found = _UPLOAD_ID.search(answer[2] if isinstance(answer[2], str) else answer[2].decode())
        upload = self.backend.get_bucket(bucket_name).multiparts.get(found.group(1)) if found else None
        if upload is not None:
            setattr(upload, _REQUESTED_LOCK, (mode, until, hold))
        return answer

    return _key_response_post


def _wrap_complete_multipart_upload(original: Callable[..., Any]) -> Callable[..., Any]:
    def complete_multipart_upload(
        self: S3Backend, bucket_name: str, multipart_id: str, body: Iterator[tuple[int, str]]
    ) -> Any:
        bucket = self.get_bucket(bucket_name)
        upload = bucket.multiparts.get(multipart_id)
        mode, until, hold = getattr(upload, _REQUESTED_LOCK, (None, None, None))
        key = original(self, bucket_name, multipart_id, body)
        if key is None:
            return key
        if not (mode or until or hold) and bucket.object_lock_enabled and bucket.has_default_lock:
            # The bucket's default retention counts from the moment the object is created.
            mode, until = bucket.default_lock_mode, bucket.default_retention()
        key.lock_mode, key.lock_until, key.lock_legal_status = mode, until, hold
        return key

    return complete_multipart_upload


# ---------------------------------------------------------------------------------- apply


def apply_all() -> None:
    """Install every patch once per process; later calls do nothing."""
    global _applied
    with _lock:
        if _applied:
            return
        for dotted in PATCHED_SOURCES:
            _originals[dotted] = _resolve(dotted)
        FakeKey.__new__ = _untracked_new  # type: ignore[method-assign]
        FakeDeleteMarker.__new__ = _untracked_new  # type: ignore[method-assign]
        S3Backend.list_object_versions = _list_object_versions  # type: ignore[method-assign]
        _VersionedKeyStore.pop = _noting_removal(  # type: ignore[method-assign]
            _originals["moto.s3.utils._VersionedKeyStore.pop"]
        )
        S3Response.list_object_versions = _list_object_versions_response  # type: ignore[method-assign]
        S3Response._key_response_get = _wrap_key_response_get(  # type: ignore[method-assign]
            _originals["moto.s3.responses.S3Response._key_response_get"]
        )
        S3Response.head_object = _wrap_head_object(  # type: ignore[method-assign]
            _originals["moto.s3.responses.S3Response.head_object"]
        )
        S3Response.get_object = _wrap_get_object(  # type: ignore[method-assign]
            _originals["moto.s3.responses.S3Response.get_object"]
        )
        FakeKey.response_dict = _wrap_response_dict(  # type: ignore[method-assign,assignment]
            _originals["moto.s3.models.FakeKey.response_dict"]
        )
        S3Response.get_bucket_replication = _get_bucket_replication  # type: ignore[method-assign]
        S3Response.get_bucket_notification = _get_bucket_notification  # type: ignore[method-assign]
        Rule.send_to_targets = _wrap_send_to_targets(  # type: ignore[method-assign]
            _originals["moto.events.models.Rule.send_to_targets"]
        )
        S3Backend.put_bucket_inventory_configuration = _wrap_put_inventory(  # type: ignore[method-assign]
            _originals["moto.s3.models.S3Backend.put_bucket_inventory_configuration"]
        )
        S3Response.get_bucket_inventory_configuration = (  # type: ignore[method-assign]
            _get_bucket_inventory_configuration
        )
        S3Response.list_bucket_inventory_configurations = (  # type: ignore[method-assign]
            _list_bucket_inventory_configurations
        )
        S3Response._bucket_response_delete = _wrap_bucket_response_delete(  # type: ignore[method-assign]
            _originals["moto.s3.responses.S3Response._bucket_response_delete"]
        )
        S3Response._key_response_post = _wrap_key_response_post(  # type: ignore[method-assign]
            _originals["moto.s3.responses.S3Response._key_response_post"]
        )
        S3Backend.complete_multipart_upload = _wrap_complete_multipart_upload(  # type: ignore[method-assign]
            _originals["moto.s3.models.S3Backend.complete_multipart_upload"]
        )
        _applied = True
