"""The runbook's parameters: one YAML file, checked in full before any AWS call is made.

`load_params` reads a parameter set and returns a `RunbookParams`; anything wrong with it, from a
misspelt key to two buckets with the same name, becomes one `ParameterProblem` and all of them are
raised together in a single `ParameterError`, so one round of edits fixes the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from difflib import get_close_matches
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from runbook_lib import aws_facts
from runbook_lib.aws_facts import RUN_ID_TAG, partition_of
from runbook_lib.errors import ParameterError, ParameterProblem

__all__ = [
    "MISSING",
    "REPLICATION_STATUSES",
    "STORAGE_CLASSES",
    "JobSettings",
    "RecoveryAccount",
    "ReplicationStatus",
    "RunbookParams",
    "StorageClass",
    "VaultAccount",
    "VerificationSettings",
    "load_params",
    "parse_params",
]

_T = TypeVar("_T")

ReplicationStatus = Literal["NONE", "FAILED", "COMPLETED", "REPLICA"]
StorageClass = Literal[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
]
REPLICATION_STATUSES: tuple[str, ...] = aws_facts.REPLICATION_STATUS_FILTERS
STORAGE_CLASSES: tuple[str, ...] = aws_facts.STORAGE_CLASSES

# The run tags everything it creates with RUN_ID_TAG, so a user's tag must not claim it.
_RUN_ID_TAG = RUN_ID_TAG
_MAX_TAGS = 40
_FILE = "(file)"
_TOP_LEVEL = "(top level)"


class _Missing:
    """Stands in for the value of a parameter that was not given at all."""

    def __repr__(self) -> str:
        return "nothing"


MISSING: Any = _Missing()

# ---------------------------------------------------------------------------------------------
# Single-value checks. Each raises a "parameter" error whose text completes "expected ...".
# ---------------------------------------------------------------------------------------------

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
    """Never returns: raises the error that `_problem_from` turns into a ParameterProblem."""
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


def _whole_number(low: int, high: int, expected: str) -> BeforeValidator:
    """Return a validator for an int in [low, high]; YAML's true/false are not numbers here."""

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            _reject(expected)
        return value

    return BeforeValidator(check)


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


def _bucket_rule_failures(name: str) -> list[str]:
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
    failures = _bucket_rule_failures(name)
    if failures:
        _reject("an S3 bucket name " + "; ".join(failures))
    return name


_KEY_ARN_EXAMPLE = "arn:aws:kms:us-east-1:111111111111:key/<key id>"


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


def _key_constraint(value: object) -> str:
    """Return a key-name constraint of the job's manifest filter: 1 to 1024 characters."""
    text = _text(value, "a piece of key name (text), or null for none")
    if not 1 <= len(text) <= 1024:
        _reject("1 to 1024 characters of a key name, or null for none")
    return text


def _replication_statuses(value: object) -> list[str]:
    """Return the distinct replication statuses the job's manifest filters on."""
    allowed = ", ".join(REPLICATION_STATUSES)
    if not isinstance(value, list) or not value:
        _reject(f"a non-empty list of statuses from: {allowed}")
    unknown = [status for status in value if status not in REPLICATION_STATUSES]
    if unknown:
        _reject(f"only statuses from: {allowed} (not {', '.join(repr(s) for s in unknown)})")
    repeated = sorted({status for status in value if value.count(status) > 1})
    if repeated:
        _reject(f"each status at most once ({', '.join(repeated)} repeated)")
    return list(value)


def _storage_class(value: object) -> str:
    """Return the storage class the replicas are written in."""
    if value not in STORAGE_CLASSES:
        _reject(f"one of {', '.join(STORAGE_CLASSES)}")
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


def _object_lock_token(value: object) -> SecretStr:
    """Return the Object Lock token wrapped so that printing the parameters never shows it."""
    if not isinstance(value, str) or not value.strip():
        _reject("the Object Lock token from AWS Support as text, or null when you have none")
    return SecretStr(value)


def _tag_key(value: object) -> str:
    """Return a tag key that AWS accepts and the run does not reserve for itself."""
    key = _text(value, "a tag key (text)")
    if not 1 <= len(key) <= 128:
        _reject("a tag key of 1 to 128 characters")
    if not _TAG_CHARACTERS.fullmatch(key):
        _reject("a tag key of letters, digits, spaces and _ . : / = + - @")
    if key.lower().startswith("aws:"):
        _reject("a tag key not starting with 'aws:', which AWS keeps for itself")
    if key == _RUN_ID_TAG:
        _reject(f"a tag key other than {_RUN_ID_TAG}, which the run adds by itself")
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
    if len(tags) > _MAX_TAGS:
        _reject(f"at most {_MAX_TAGS} tags", shown=f"{len(tags)} tags")
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
ProfileName = Annotated[str, BeforeValidator(_profile)]
AccountId = Annotated[str, BeforeValidator(_account_id)]
BucketName = Annotated[str, BeforeValidator(_bucket_name)]
RoleName = Annotated[str, BeforeValidator(_role_name)]
PolicyName = Annotated[str, BeforeValidator(_policy_name)]
TopicName = Annotated[str, BeforeValidator(_topic_name)]
RuleName = Annotated[str, BeforeValidator(_rule_name)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Prefix = Annotated[str, BeforeValidator(_prefix)]
TagKey = Annotated[str, BeforeValidator(_tag_key)]
TagValue = Annotated[str, BeforeValidator(_tag_value)]


class _Section(BaseModel):
    """Common settings: unknown keys are errors, and parameters do not change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class VaultAccount(_Section):
    """The isolated account that holds the Object Lock vault bucket (the source)."""

    profile: ProfileName = Field(description="the AWS profile that reaches the vault account")
    account_id: AccountId = Field(description="the vault account's 12-digit id")
    bucket: BucketName = Field(description="the vault bucket holding the golden copies")
    kms_key_arn: Annotated[str, BeforeValidator(_kms_key_arn)] = Field(
        description="the ARN of the KMS key that encrypts the vault bucket"
    )


class RecoveryAccount(_Section):
    """The new, clean account that receives the recovered object versions (the destination)."""

    profile: ProfileName = Field(description="the AWS profile that reaches the recovery account")
    account_id: AccountId = Field(description="the recovery account's 12-digit id")
    region: Annotated[str | None, BeforeValidator(_optional(_region))] = Field(
        default=None, description="the recovery bucket's region; null means the vault region"
    )
    bucket: BucketName = Field(description="the recovery bucket the run creates")
    kms_key_alias: Annotated[str, BeforeValidator(_kms_key_alias)] = Field(
        description="the alias of the KMS key the run creates for the recovery bucket"
    )


def _replicas_only() -> list[ReplicationStatus]:
    """Return the default filter: the versions that reached the vault by replication."""
    return ["REPLICA"]


class JobSettings(_Section):
    """How the Batch Replication job is built and watched."""

    replication_statuses: Annotated[list[ReplicationStatus], BeforeValidator(_replication_statuses)] = Field(
        default_factory=_replicas_only,
        description="replication statuses of the versions the job replicates",
    )
    created_after: Annotated[datetime | None, BeforeValidator(_optional(_aware_datetime))] = Field(
        default=None, description="only versions created after this time"
    )
    created_before: Annotated[datetime | None, BeforeValidator(_optional(_aware_datetime))] = Field(
        default=None, description="only versions created before this time"
    )
    key_prefix: Annotated[str | None, BeforeValidator(_optional(_key_constraint))] = Field(
        default=None, description="only versions whose key starts with this text"
    )
    key_suffix: Annotated[str | None, BeforeValidator(_optional(_key_constraint))] = Field(
        default=None, description="only versions whose key ends with this text"
    )
    key_substring: Annotated[str | None, BeforeValidator(_optional(_key_constraint))] = Field(
        default=None, description="only versions whose key contains this text"
    )
    replica_storage_class: Annotated[StorageClass, BeforeValidator(_storage_class)] = Field(
        default="INTELLIGENT_TIERING", description="the storage class of the replicas"
    )
    priority: Annotated[int, _whole_number(0, 2147483647, "a whole number from 0 to 2147483647")] = Field(
        default=10, description="the job's priority"
    )
    confirmation_required: Flag = Field(
        default=True, description="whether the job waits for an explicit confirmation"
    )
    report_prefix: Prefix = Field(
        default="batch-replication-reports", description="where the completion report is written"
    )
    manifest_prefix: Prefix = Field(
        default="batch-replication-manifests", description="where the generated manifest is written"
    )
    poll_seconds: Annotated[float, BeforeValidator(_poll_seconds)] = Field(
        default=5, description="seconds between two looks at the job's status"
    )
    timeout_minutes: Annotated[
        int, _whole_number(1, 10080, "a whole number of minutes from 1 to 10080 (one week)")
    ] = Field(default=720, description="how long to wait for the job before giving up")


class VerificationSettings(_Section):
    """How the recovered copy is compared with the vault."""

    max_retry_rounds: Annotated[int, _whole_number(0, 10, "a whole number from 0 to 10")] = Field(
        default=2, description="follow-up jobs for failed tasks before the verdict"
    )
    head_workers: Annotated[int, _whole_number(1, 128, "a whole number from 1 to 128")] = Field(
        default=16, description="parallel requests when reading object versions"
    )


class RunbookParams(_Section):
    """One parameter set: both accounts, their buckets and keys, and how the job runs."""

    run_id: RunId = Field(description="names this run and tags every resource it creates")
    region: Region = Field(description="the vault bucket's region")
    allow_cross_region: Flag = Field(
        default=False, description="whether the recovery bucket may be in another region"
    )
    vault: VaultAccount = Field(description="the vault account and its bucket")
    recovery: RecoveryAccount = Field(description="the recovery account and its bucket")
    report_bucket: BucketName = Field(
        description="the bucket in the vault account for the job's manifest and reports"
    )
    batch_role_name: RoleName = Field(
        default="s3-batch-replication-role", description="the IAM role Batch Operations assumes"
    )
    batch_policy_name: PolicyName = Field(
        default="s3-batch-replication-policy", description="the IAM policy attached to that role"
    )
    object_lock_token: Annotated[SecretStr | None, BeforeValidator(_optional(_object_lock_token))] = Field(
        default=None, description="the Object Lock token from AWS Support, if your account needs one"
    )
    notification_email: Annotated[str, BeforeValidator(_email)] = Field(
        description="the address told when the job changes status"
    )
    notification_topic_name: TopicName = Field(
        default="s3-batch-replication-status", description="the SNS topic for job status"
    )
    event_rule_name: RuleName = Field(
        default="s3-batch-replication-job-status", description="the EventBridge rule for job status"
    )
    job: JobSettings = Field(default_factory=JobSettings, description="the Batch Replication job")
    verification: VerificationSettings = Field(
        default_factory=VerificationSettings, description="the verification of the recovered copy"
    )
    tags: Annotated[dict[TagKey, TagValue], AfterValidator(_tag_count)] = Field(
        default_factory=dict, description="tags for every resource the run creates"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RunbookParams:
        """Return self when the parameters agree with each other; raise ParameterError otherwise."""
        problems = _cross_field_problems({path: _attribute(self, path) for path in _CROSS_FIELDS})
        if problems:
            raise ParameterError(problems)
        return self

    @property
    def recovery_region(self) -> str:
        """The recovery bucket's region: the one given, or else the vault region."""
        return self.recovery.region or self.region

    @property
    def partition(self) -> str:
        """The ARN partition of the vault region (aws outside China and GovCloud)."""
        return partition_of(self.region)

    @property
    def resource_tags(self) -> dict[str, str]:
        """The tags for every resource the run creates: the user's tags plus the run id."""
        return {**self.tags, _RUN_ID_TAG: self.run_id}

    @property
    def vault_bucket_arn(self) -> str:
        """The vault bucket's ARN."""
        return aws_facts.bucket_arn(self.vault.bucket, self.partition)

    @property
    def recovery_bucket_arn(self) -> str:
        """The recovery bucket's ARN."""
        return aws_facts.bucket_arn(self.recovery.bucket, partition_of(self.recovery_region))

    @property
    def report_bucket_arn(self) -> str:
        """The report bucket's ARN."""
        return aws_facts.bucket_arn(self.report_bucket, self.partition)

    @property
    def batch_role_arn(self) -> str:
        """The ARN of the Batch Operations role in the vault account."""
        return aws_facts.iam_role_arn(self.vault.account_id, self.batch_role_name, self.partition)

    @property
    def batch_policy_arn(self) -> str:
        """The ARN of the Batch Operations role's policy in the vault account."""
        return aws_facts.iam_policy_arn(self.vault.account_id, self.batch_policy_name, self.partition)

    def redacted(self) -> dict[str, Any]:
        """Return the parameters as plain JSON-ready data with the Object Lock token masked."""
        data = self.model_dump(mode="json")
        data["object_lock_token"] = None if self.object_lock_token is None else "***"
        return data


# ---------------------------------------------------------------------------------------------
# Rules that relate two or more parameters.
# ---------------------------------------------------------------------------------------------

_CROSS_FIELDS = (
    "region",
    "allow_cross_region",
    "vault.profile",
    "vault.account_id",
    "vault.bucket",
    "vault.kms_key_arn",
    "recovery.profile",
    "recovery.account_id",
    "recovery.region",
    "recovery.bucket",
    "report_bucket",
    "job.created_after",
    "job.created_before",
)


def _attribute(params: BaseModel, path: str) -> object:
    """Return the attribute at a dotted path such as "vault.bucket"."""
    value: object = params
    for name in path.split("."):
        value = getattr(value, name)
    return value


# Pairs that must differ: (the field blamed, the field it must differ from, what is expected instead).
_MUST_DIFFER = (
    (
        "recovery.account_id",
        "vault.account_id",
        "an account other than the vault account (vault.account_id): recover into a new, separate account",
    ),
    (
        "recovery.profile",
        "vault.profile",
        "a profile other than the vault profile (vault.profile): each account needs its own identity",
    ),
    ("recovery.bucket", "vault.bucket", "a bucket name other than the vault bucket's (vault.bucket)"),
    ("report_bucket", "vault.bucket", "a bucket of its own, not the vault bucket (vault.bucket)"),
    ("report_bucket", "recovery.bucket", "a bucket of its own, not the recovery bucket (recovery.bucket)"),
)


def _cross_field_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return a problem for every rule between parameters that is broken.

    `values` holds the validated value of each parameter in `_CROSS_FIELDS` that is valid on its
    own; a rule involving a parameter absent from it is skipped, as that parameter already has a
    problem of its own.
    """
    problems = [
        ParameterProblem(field, values[field], expected)
        for field, other, expected in _MUST_DIFFER
        if field in values and other in values and values[field] == values[other]
    ]
    problems += _key_location_problems(values)
    problems += _region_problems(values)
    problems += _time_window_problems(values)
    return problems


def _key_location_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return problems when the vault key is not in the vault account and the vault region."""
    if not all(path in values for path in ("vault.kms_key_arn", "vault.account_id", "region")):
        return []
    arn, account, region = values["vault.kms_key_arn"], values["vault.account_id"], values["region"]
    _, _, _, key_region, key_account, _ = arn.split(":", 5)
    problems = []
    if key_account != account:
        expected = f"a key in the vault account {account} (vault.account_id), not in {key_account}"
        problems.append(ParameterProblem("vault.kms_key_arn", arn, expected))
    if key_region != region:
        expected = f"a key in the vault region {region} (region), not in {key_region}"
        problems.append(ParameterProblem("vault.kms_key_arn", arn, expected))
    return problems


def _region_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return a problem when the recovery region differs from the vault's without permission."""
    if not all(path in values for path in ("region", "recovery.region", "allow_cross_region")):
        return []
    region, recovery_region = values["region"], values["recovery.region"]
    if recovery_region in (None, region) or values["allow_cross_region"]:
        return []
    expected = (
        f"the vault region {region} (region), or allow_cross_region: true to recover into another region"
    )
    return [ParameterProblem("recovery.region", recovery_region, expected)]


def _time_window_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return a problem when the creation-time window of the job is empty."""
    after, before = values.get("job.created_after"), values.get("job.created_before")
    if after is None or before is None or after < before:
        return []
    expected = f"a time before job.created_before ({before.isoformat()})"
    return [ParameterProblem("job.created_after", after.isoformat(), expected)]


@cache
def _leaf_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """Return a validator for one field of a model on its own, with the field's own checks."""
    field = model.model_fields[name]
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    return TypeAdapter(annotation)


_UNKNOWN = object()


def _valid_leaf(data: Mapping[str, Any], path: str) -> object:
    """Return the validated value at a dotted path of raw data, its default, or _UNKNOWN if invalid."""
    model: type[BaseModel] = RunbookParams
    node: object = data
    names = path.split(".")
    for depth, name in enumerate(names):
        if not isinstance(node, dict):
            return _UNKNOWN
        field = model.model_fields[name]
        if name not in node:
            if field.is_required():
                return _UNKNOWN
            default: object = field.get_default(call_default_factory=True)
            for rest in names[depth + 1 :]:
                default = getattr(default, rest)
            return default
        if depth == len(names) - 1:
            try:
                return _leaf_adapter(model, name).validate_python(node[name])
            except ValidationError:
                return _UNKNOWN
        node = node[name]
        model = field.annotation  # type: ignore[assignment]
    return _UNKNOWN


def _known_values(data: Mapping[str, Any]) -> dict[str, object]:
    """Return the validated value of every parameter a cross-field rule needs that is valid alone."""
    values = {path: _valid_leaf(data, path) for path in _CROSS_FIELDS}
    return {path: value for path, value in values.items() if value is not _UNKNOWN}


# ---------------------------------------------------------------------------------------------
# From pydantic's errors to ParameterProblems.
# ---------------------------------------------------------------------------------------------


def _model_at(location: tuple[str | int, ...]) -> type[BaseModel] | None:
    """Return the section model found at a location, or None where there is none (tags)."""
    model: type[BaseModel] = RunbookParams
    for name in location:
        field = model.model_fields.get(str(name))
        section = field.annotation if field is not None else None
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            return None
        model = section
    return model


def _expected(error: Mapping[str, Any]) -> str:
    """Return the plain-words expectation for one pydantic error."""
    kind, location = error["type"], error["loc"]
    if kind == "parameter":
        return str(error["ctx"]["expected"])
    if kind == "extra_forbidden":
        parent = _model_at(location[:-1])
        allowed = ", ".join(parent.model_fields) if parent else ""
        return f"unknown parameter; allowed: {allowed}"
    if kind == "missing":
        parent = _model_at(location[:-1])
        field = parent.model_fields.get(str(location[-1])) if parent else None
        what = f" ({field.description})" if field and field.description else ""
        return f"a value: this parameter is required{what}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _model_at(location)
        if section is None:
            return "a mapping of tag keys to values ({} for none)"
        return f"a mapping with the keys: {', '.join(section.model_fields)}"
    return str(error["msg"])


def _may_hold_token(field: str) -> bool:
    """Return whether a field is the Object Lock token or a misspelling of it, such as "lock_tokn"."""
    name = field.rsplit(".", 1)[-1].lower()
    return "token" in name or bool(get_close_matches(name, ["object_lock_token"], cutoff=0.6))


def _shown_value(field: str, error: Mapping[str, Any]) -> object:
    """Return the value to show for a problem: never the token, and dates as ISO text."""
    if error["type"] == "missing":
        return MISSING
    context = error.get("ctx") or {}
    value = context.get("shown", error["input"])
    if _may_hold_token(field) and value not in (None, ""):
        return "***"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def _problem_from(error: Mapping[str, Any]) -> ParameterProblem:
    """Return the ParameterProblem for one pydantic error, named by its dotted path."""
    # "[key]" marks an invalid dict key (a tag key); the path up to it already names the key.
    field = ".".join(str(part) for part in error["loc"] if part != "[key]")
    return ParameterProblem(field, _shown_value(field, error), _expected(error))


def parse_params(data: object, source: str = "parameters") -> RunbookParams:
    """Return the validated parameters, or raise ParameterError listing every problem in `data`."""
    if not isinstance(data, dict):
        problem = ParameterProblem(
            _TOP_LEVEL,
            data,
            "a mapping of parameter names to values, such as 'run_id: drill' on its own line",
        )
        raise ParameterError([problem], source=source)
    try:
        return RunbookParams.model_validate(data)
    except ValidationError as error:
        problems = [_problem_from(item) for item in error.errors(include_url=False)]
        problems += _cross_field_problems(_known_values(data))
        raise ParameterError(problems, source=source) from None
    except ParameterError as error:
        raise ParameterError(error.problems, source=source) from None


# ---------------------------------------------------------------------------------------------
# Reading the YAML file.
# ---------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]
    """A safe YAML loader that refuses a key written twice, where YAML would keep the last silently."""


def _construct_unique_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """Return the mapping of `node`, raising a YAML error at the second occurrence of a key."""
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # keys merged in with "<<" may be overridden on purpose
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # an unhashable key; the default constructor reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} twice",
                key_node.start_mark,
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _yaml_error_text(error: yaml.YAMLError) -> str:
    """Return where and why the YAML could not be read, in one line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return str(error).splitlines()[0]


def load_params(path: str | Path) -> RunbookParams:
    """Return the validated parameters read from a YAML file, or raise ParameterError."""
    source = str(path)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = ParameterProblem(
            _FILE, str(file.absolute()), "an existing YAML file: no file is at this path"
        )
        raise ParameterError([problem], source=source) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        problem = ParameterProblem(_FILE, str(file.absolute()), f"a readable UTF-8 YAML file ({reason})")
        raise ParameterError([problem], source=source) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass, so no arbitrary objects
    except yaml.YAMLError as error:
        problem = ParameterProblem(_FILE, _yaml_error_text(error), "valid YAML")
        raise ParameterError([problem], source=source) from None
    return parse_params(data, source)
