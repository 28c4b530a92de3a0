"""Checks of one parameter value at a time, and the annotated types that attach them to the model.

Each check returns the value (normalised where AWS would normalise it) or raises pydantic's
"parameter" error whose text completes the sentence "expected ...": `param_problems` turns it into
a `ParameterProblem` naming the field and the value. A check never looks at another parameter; the
rules between parameters live with the model in `params`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal, NoReturn, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, SecretStr
from pydantic_core import PydanticCustomError

from runbook_lib import aws_facts
from runbook_lib.aws_facts import RUN_ID_TAG, ReplicationStatusFilter, StorageClass, kms_key_arn, partition_of

__all__ = [
    "MAX_TAGS",
    "AccountId",
    "AwareDatetime",
    "BucketName",
    "CurrentViewSetting",
    "EmailAddress",
    "Flag",
    "HistoryFile",
    "KeyConstraint",
    "KmsKeyAlias",
    "KmsKeyArn",
    "ObjectLockToken",
    "OptionalBucketName",
    "OptionalKmsKeyArn",
    "OptionalRegion",
    "PolicyName",
    "PollSeconds",
    "Prefix",
    "ProfileName",
    "Region",
    "ReplicationStatus",
    "ReplicationStatuses",
    "RestoreTier",
    "RoleName",
    "RuleName",
    "RunBackend",
    "RunId",
    "RunPurpose",
    "SampleCount",
    "SampleFraction",
    "SampleSeed",
    "StorageClass",
    "StorageClassName",
    "Tags",
    "TopicName",
    "bucket_rule_failures",
    "whole_number",
]

# Names used by inventory verification (appended here so the list above stays as it was).
__all__ += [
    "AthenaDatabase",
    "AthenaWorkGroup",
    "InventoryConfigId",
    "S3Url",
    "VerificationEngine",
    "VerificationMethod",
]

_T = TypeVar("_T")

ReplicationStatus = ReplicationStatusFilter

# User tags per resource; the run adds RUN_ID_TAG itself, and AWS allows at most 50 in all.
MAX_TAGS = 40

_REGION = re.compile(r"(?:[a-z]{2}|us-gov)-[a-z]+-[0-9]{1,2}")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}")
_BUCKET_CHARACTERS = re.compile(r"[a-z0-9.-]*")
_IP_ADDRESS = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_KMS_ALIAS = re.compile(r"alias/[A-Za-z0-9/_-]{1,250}")
_TAG_CHARACTERS = re.compile(r"[\w\s.:/=+@-]*")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _reject(expected: str, **context: object) -> NoReturn:
    """Never returns: raises the error that `param_problems` turns into a ParameterProblem."""
    raise PydanticCustomError("parameter", "{expected}", {"expected": expected, **context})


def _text(value: object, expected: str) -> str:
    """Return the value when it is a string; a number or a list is rejected with `expected`."""
    if not isinstance(value, str):
        _reject(expected)
    return value


def _matching(pattern: str, expected: str) -> Callable[[object], str]:
    """Return a check accepting only strings that match `pattern` in full."""
    compiled = re.compile(pattern)

    def check(value: object) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            _reject(expected)
        return value

    return check


def _optional(check: Callable[[object], _T]) -> Callable[[object], _T | None]:
    """Return a check that lets null through, so YAML's `null` keeps the default meaning."""

    def check_unless_null(value: object) -> _T | None:
        return None if value is None else check(value)

    return check_unless_null


def _whole_number(low: int, high: int, expected: str) -> Callable[[object], int]:
    """Return a check accepting an int in [low, high]; YAML's true/false are not numbers here."""

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            _reject(expected)
        return value

    return check


def whole_number(low: int, high: int, expected: str) -> BeforeValidator:
    """Return a validator for an int in [low, high]; YAML's true/false are not numbers here."""
    return BeforeValidator(_whole_number(low, high, expected))


def _flag(value: object) -> bool:
    """Return the value when it is true or false; strings like "no" are refused, not guessed."""
    if not isinstance(value, bool):
        _reject("true or false")
    return value


def _poll_seconds(value: object) -> float:
    """Return the polling interval in seconds: a number in (0, 300]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 300:
        _reject("a number of seconds greater than 0 and at most 300")
    return float(value)


def _account_id(value: object) -> str:
    """Return the account id as a 12-digit string; a bare YAML number must already have 12 digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0 and len(str(value)) == 12:
            return str(value)
        _reject(
            'an account id of exactly 12 digits written in quotes, such as "012345678901": '
            "YAML reads a bare number and drops its leading zeros"
        )
    if not isinstance(value, str) or not _ACCOUNT_ID.fullmatch(value):
        _reject("an AWS account id of exactly 12 digits, in quotes")
    return value


def bucket_rule_failures(name: str) -> list[str]:
    """Return one phrase per S3 bucket naming rule the name breaks (empty when it is valid)."""
    # Each phrase completes "an S3 bucket name ...", so several read as one sentence.
    failures = []
    if not 3 <= len(name) <= 63:
        failures.append("of 3 to 63 characters")
    if not _BUCKET_CHARACTERS.fullmatch(name):
        failures.append("of only lowercase letters, digits, '.' and '-'")
    if name and not (name[0].isalnum() and name[-1].isalnum()):
        failures.append("that begins and ends with a letter or digit")
    if ".." in name:
        failures.append("without two adjacent periods")
    if _IP_ADDRESS.fullmatch(name):
        failures.append("not formatted as an IP address")
    failures += [
        f"not starting with '{prefix}' (reserved by AWS)"
        for prefix in _RESERVED_BUCKET_PREFIXES
        if name.startswith(prefix)
    ]
    failures += [
        f"not ending with '{suffix}' (reserved by AWS)"
        for suffix in _RESERVED_BUCKET_SUFFIXES
        if name.endswith(suffix)
    ]
    return failures


def _bucket_name(value: object) -> str:
    """Return the value when it follows every S3 bucket naming rule."""
    name = _text(value, "an S3 bucket name (text)")
    failures = bucket_rule_failures(name)
    if failures:
        _reject("an S3 bucket name " + "; ".join(failures))
    return name


_KEY_ARN_EXAMPLE = kms_key_arn("us-east-1", "111111111111", "<key id>")


def _kms_key_arn(value: object) -> str:
    """Return the value when it is the ARN of a KMS key (an alias ARN is refused)."""
    arn = _text(value, f"a KMS key ARN such as {_KEY_ARN_EXAMPLE}")
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        _reject(f"a KMS key ARN such as {_KEY_ARN_EXAMPLE}")
    _, partition, service, region, account, resource = parts
    failures = []
    if service != "kms":
        failures.append(f"a KMS key ARN (service kms, not '{service}')")
    if not _REGION.fullmatch(region):
        failures.append("a region such as us-east-1 inside the ARN")
    elif partition != partition_of(region):
        failures.append(f"the partition '{partition_of(region)}' for region {region}")
    if not _ACCOUNT_ID.fullmatch(account):
        failures.append("a 12-digit account id inside the ARN")
    if resource.startswith("alias/"):
        failures.append("the ARN of the key itself, not of an alias: it ends in key/<key id>")
    elif not resource.startswith("key/"):
        failures.append("a resource part of the form key/<key id>")
    elif not _KEY_ID.fullmatch(resource.removeprefix("key/")):
        failures.append("a key id that is a lowercase UUID or mrk- followed by 32 lowercase hex digits")
    if failures:
        _reject("; ".join(failures))
    return arn


def _kms_key_alias(value: object) -> str:
    """Return the value when it is an alias name the run may create for its own key."""
    alias = _text(value, "a KMS alias name such as alias/recovery-golden-copies")
    if not _KMS_ALIAS.fullmatch(alias):
        _reject("'alias/' followed by 1 to 250 letters, digits, '/', '_' or '-'")
    if alias.startswith("alias/aws/"):
        _reject("an alias not starting with 'alias/aws/', which AWS keeps for its managed keys")
    return alias


def _email(value: object) -> str:
    """Return the e-mail address in normalised form; its domain is not looked up."""
    address = _text(value, "an e-mail address such as recovery-team@example.com")
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        _reject("an e-mail address such as recovery-team@example.com")


def _prefix(value: object) -> str:
    """Return an S3 key prefix of 1 to 512 characters that does not start with '/'."""
    prefix = _text(value, "a key prefix (text)")
    if not 1 <= len(prefix) <= 512:
        _reject("a key prefix of 1 to 512 characters")
    if prefix.startswith("/"):
        _reject("a key prefix that does not start with '/'")
    return prefix


def _history_file(value: object) -> str:
    """Return the path of a JSON Lines history file: text ending in .jsonl, without NUL characters."""
    path = _text(value, "a file path ending in .jsonl, or null for history.jsonl next to the run folder")
    if not path.endswith(".jsonl") or "\x00" in path:
        _reject("a file path ending in .jsonl (JSON Lines), or null for history.jsonl next to the run folder")
    return path


def _key_constraint(value: object) -> str:
    """Return a key-name constraint of the job's manifest filter: 1 to 1024 characters."""
    text = _text(value, "a piece of key name (text), or null for none")
    if not 1 <= len(text) <= 1024:
        _reject("1 to 1024 characters of a key name, or null for none")
    return text


def _replication_statuses(value: object) -> list[str]:
    """Return the distinct replication statuses the job's manifest filters on."""
    allowed = ", ".join(aws_facts.REPLICATION_STATUS_FILTERS)
    if not isinstance(value, list) or not value:
        _reject(f"a non-empty list of statuses from: {allowed}")
    unknown = [status for status in value if status not in aws_facts.REPLICATION_STATUS_FILTERS]
    if unknown:
        _reject(f"only statuses from: {allowed} (not {', '.join(repr(s) for s in unknown)})")
    repeated = sorted({status for status in value if value.count(status) > 1})
    if repeated:
        _reject(f"each status at most once ({', '.join(repeated)} repeated)")
    return list(value)


def _storage_class(value: object) -> str:
    """Return the storage class the replicas are written in."""
    if value not in aws_facts.STORAGE_CLASSES:
        _reject(f"one of {', '.join(aws_facts.STORAGE_CLASSES)}")
    return str(value)


_DATETIME_EXAMPLE = "2024-05-01T00:00:00Z"


def _aware_datetime(value: object) -> datetime:
    """Return a date and time that carries a timezone, read from YAML or an ISO-8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            _reject(f"an ISO-8601 date and time with a timezone, such as {_DATETIME_EXAMPLE}")
    if not isinstance(value, datetime):
        _reject(f"an ISO-8601 date and time with a timezone, such as {_DATETIME_EXAMPLE}")
    if value.utcoffset() is None:
        _reject(f"a date and time with a timezone: add Z for UTC, as in {_DATETIME_EXAMPLE}")
    return value


def _run_purpose(value: object) -> str:
    """Return what the run is for: a drill (a rehearsal) or a recovery (the real thing)."""
    if value not in ("drill", "recovery"):
        _reject("drill or recovery (or null on the embedded backend, where every run is a drill)")
    return str(value)


def _run_backend(value: object) -> str:
    """Return which AWS the parameters reach: real accounts, or the runbook's embedded backend."""
    if value not in ("aws", "embedded"):
        _reject("aws for real accounts, or embedded for the runbook's own embedded backend")
    return str(value)


def _current_view(value: object) -> str:
    """Return how differences in what applications would read count: reported, or failing the verdict."""
    if value not in ("report", "fail_unexplained", "fail_any"):
        _reject("report (differences are shown only), fail_unexplained (a difference without a documented "
                "reason fails the verdict) or fail_any (every difference fails it)")
    return str(value)


def _restore_tier(value: object) -> str:
    """Return the retrieval tier of the restore job: Batch Operations restores take BULK or STANDARD only."""
    if value not in aws_facts.BATCH_RESTORE_TIERS:
        tiers = ", ".join(aws_facts.BATCH_RESTORE_TIERS)
        _reject(f"one of {tiers} (Batch Operations restore jobs offer no other tier)")
    return str(value)


def _sample_fraction(value: object) -> float:
    """Return a share of the versions in scope to draw: a number greater than 0 and at most 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        _reject("a share of the versions in scope greater than 0 and at most 1, such as 0.02 for 2 %")
    return float(value)


def _object_lock_token(value: object) -> SecretStr:
    """Return the Object Lock token wrapped so that printing the parameters never shows it."""
    if not isinstance(value, str) or not value.strip():
        _reject("the Object Lock token from AWS Support as text, or null when you have none")
    return SecretStr(value)


# The run tags everything it creates with RUN_ID_TAG, so a user's tag must not claim it.
def _tag_key(value: object) -> str:
    """Return a tag key that AWS accepts and the run does not reserve for itself."""
    key = _text(value, "a tag key (text)")
    if not 1 <= len(key) <= 128:
        _reject("a tag key of 1 to 128 characters")
    if not _TAG_CHARACTERS.fullmatch(key):
        _reject("a tag key of letters, digits, spaces and _ . : / = + - @")
    if key.lower().startswith("aws:"):
        _reject("a tag key not starting with 'aws:', which AWS keeps for itself")
    if key == RUN_ID_TAG:
        _reject(f"a tag key other than {RUN_ID_TAG}, which the run adds by itself")
    return key


def _tag_value(value: object) -> str:
    """Return a tag value that AWS accepts; numbers must be quoted to become text."""
    text = _text(value, 'a tag value as text (quote numbers, such as "2")')
    if len(text) > 256:
        _reject("a tag value of at most 256 characters")
    if not _TAG_CHARACTERS.fullmatch(text):
        _reject("a tag value of letters, digits, spaces and _ . : / = + - @")
    return text


def _tag_count(tags: dict[str, str]) -> dict[str, str]:
    """Return the tags when there are few enough to leave room for the run's own tag."""
    if len(tags) > MAX_TAGS:
        _reject(f"at most {MAX_TAGS} tags", shown=f"{len(tags)} tags")
    return tags


_run_id = _matching(
    r"[a-z][a-z0-9-]{0,39}", "1 to 40 lowercase letters, digits or '-', starting with a letter"
)
_region = _matching(_REGION.pattern, "an AWS region name such as us-east-1, eu-west-3 or ap-southeast-2")
_profile = _matching(r"\S+", "an AWS profile name: not empty, without spaces")
_role_name = _matching(
    r"[A-Za-z0-9_+=,.@-]{1,64}", "an IAM role name: 1 to 64 letters, digits or _ + = , . @ -"
)
_policy_name = _matching(
    r"[A-Za-z0-9_+=,.@-]{1,128}", "an IAM policy name: 1 to 128 letters, digits or _ + = , . @ -"
)
_topic_name = _matching(r"[A-Za-z0-9_-]{1,256}", "an SNS topic name: 1 to 256 letters, digits, '_' or '-'")
_rule_name = _matching(
    r"[A-Za-z0-9._-]{1,64}", "an EventBridge rule name: 1 to 64 letters, digits, '.', '_' or '-'"
)

RunId = Annotated[str, BeforeValidator(_run_id)]
Region = Annotated[str, BeforeValidator(_region)]
OptionalRegion = Annotated[str | None, BeforeValidator(_optional(_region))]
ProfileName = Annotated[str, BeforeValidator(_profile)]
AccountId = Annotated[str, BeforeValidator(_account_id)]
BucketName = Annotated[str, BeforeValidator(_bucket_name)]
OptionalBucketName = Annotated[str | None, BeforeValidator(_optional(_bucket_name))]
KmsKeyArn = Annotated[str, BeforeValidator(_kms_key_arn)]
OptionalKmsKeyArn = Annotated[str | None, BeforeValidator(_optional(_kms_key_arn))]
KmsKeyAlias = Annotated[str, BeforeValidator(_kms_key_alias)]
EmailAddress = Annotated[str, BeforeValidator(_email)]
RoleName = Annotated[str, BeforeValidator(_role_name)]
PolicyName = Annotated[str, BeforeValidator(_policy_name)]
TopicName = Annotated[str, BeforeValidator(_topic_name)]
RuleName = Annotated[str, BeforeValidator(_rule_name)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Prefix = Annotated[str, BeforeValidator(_prefix)]
KeyConstraint = Annotated[str | None, BeforeValidator(_optional(_key_constraint))]
HistoryFile = Annotated[str | None, BeforeValidator(_optional(_history_file))]
ReplicationStatuses = Annotated[list[ReplicationStatus], BeforeValidator(_replication_statuses)]
StorageClassName = Annotated[StorageClass, BeforeValidator(_storage_class)]
AwareDatetime = Annotated[datetime | None, BeforeValidator(_optional(_aware_datetime))]
PollSeconds = Annotated[float, BeforeValidator(_poll_seconds)]
ObjectLockToken = Annotated[SecretStr | None, BeforeValidator(_optional(_object_lock_token))]
RunPurpose = Annotated[Literal["drill", "recovery"] | None, BeforeValidator(_optional(_run_purpose))]
RunBackend = Annotated[Literal["aws", "embedded"], BeforeValidator(_run_backend)]
CurrentViewSetting = Annotated[
    Literal["report", "fail_unexplained", "fail_any"], BeforeValidator(_current_view)
]
RestoreTier = Annotated[Literal["BULK", "STANDARD"], BeforeValidator(_restore_tier)]
_sample_count = _whole_number(1, 100_000_000, "a whole number of versions from 1 to 100000000")
SampleCount = Annotated[int | None, BeforeValidator(_optional(_sample_count))]
SampleFraction = Annotated[float | None, BeforeValidator(_optional(_sample_fraction))]
SampleSeed = Annotated[
    int, whole_number(0, 2**31 - 1, "a whole number from 0 to 2147483647 that makes the draw repeatable")
]
TagKey = Annotated[str, BeforeValidator(_tag_key)]
TagValue = Annotated[str, BeforeValidator(_tag_value)]
Tags = Annotated[dict[TagKey, TagValue], AfterValidator(_tag_count)]


# ------------------------------------------------------------------ inventory verification

_method = _matching(r"head|inventory|auto", "head, inventory or auto")
_engine = _matching(r"duckdb|athena", "duckdb or athena")
_s3_url = _matching(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", "an s3:// URL such as s3://bucket/prefix/")
_athena_database = _matching(r"[a-z0-9_]{1,255}", "an Athena database name: lowercase letters, digits or '_'")
_work_group = _matching(r"[a-zA-Z0-9._-]{1,128}", "an Athena work group name: letters, digits, '.', '_' or '-'")
_config_id = _matching(r"[A-Za-z0-9._-]{1,64}", "an inventory configuration id: 1 to 64 letters, digits, . _ -")

VerificationMethod = Annotated[str, BeforeValidator(_method)]
VerificationEngine = Annotated[str, BeforeValidator(_engine)]
S3Url = Annotated[str | None, BeforeValidator(_optional(_s3_url))]
AthenaDatabase = Annotated[str, BeforeValidator(_athena_database)]
AthenaWorkGroup = Annotated[str, BeforeValidator(_work_group)]
InventoryConfigId = Annotated[str | None, BeforeValidator(_optional(_config_id))]
