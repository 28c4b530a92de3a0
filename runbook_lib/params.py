"""The runbook's parameters: one YAML file, checked in full before any AWS call is made.

`load_params` reads a parameter set and returns a `RunbookParams`; anything wrong with it, from a
misspelt key to two buckets with the same name, becomes one `ParameterProblem` and all of them are
raised together in a single `ParameterError`, so one round of edits fixes the file.

This module holds the model and the rules between its fields; each field's own check is in
`param_checks`, and the wording of pydantic's errors as problems in `param_problems`. The rules
between fields run once, in `RunbookParams`'s validator, whether or not every field was valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)

from runbook_lib import aws_facts
from runbook_lib.aws_facts import RUN_ID_TAG, partition_of
from runbook_lib.bucket_pairs import BucketPair, pair_problems, pairs_of
from runbook_lib.errors import ParameterError, ParameterProblem
from runbook_lib.param_checks import (
    AccountId,
    AthenaDatabase,
    AthenaWorkGroup,
    AwareDatetime,
    BucketName,
    CurrentViewSetting,
    EmailAddress,
    Flag,
    HistoryFile,
    InventoryConfigId,
    KeyConstraint,
    KmsKeyAlias,
    KmsKeyArn,
    ObjectLockToken,
    OptionalBucketName,
    OptionalKmsKeyArn,
    OptionalRegion,
    PolicyName,
    PollSeconds,
    Prefix,
    ProfileName,
    Region,
    ReplicationStatus,
    ReplicationStatuses,
    RestoreTier,
    RoleName,
    RuleName,
    RunBackend,
    RunId,
    RunPurpose,
    S3Url,
    SampleCount,
    SampleFraction,
    SampleSeed,
    StorageClass,
    StorageClassName,
    Tags,
    TopicName,
    VerificationEngine,
    VerificationMethod,
    whole_number,
)
from runbook_lib.param_problems import MISSING, known_values, problems_from

__all__ = [
    "MISSING",
    "REPLICATION_STATUSES",
    "STORAGE_CLASSES",
    "BucketPair",
    "HistorySettings",
    "JobSettings",
    "RecoveryAccount",
    "ReplicationStatus",
    "RestoreSettings",
    "RunSettings",
    "RunbookParams",
    "SampleSettings",
    "StorageClass",
    "VaultAccount",
    "VaultBucket",
    "VerificationSettings",
    "load_params",
    "parse_params",
]

REPLICATION_STATUSES: tuple[str, ...] = aws_facts.REPLICATION_STATUS_FILTERS
STORAGE_CLASSES: tuple[str, ...] = aws_facts.STORAGE_CLASSES

_FILE = "(file)"
_TOP_LEVEL = "(top level)"


class _Section(BaseModel):
    """Common settings: unknown keys are errors, and parameters do not change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class VaultBucket(_Section):
    """One vault bucket of a recovery over many: its key, and optionally its scope, priority and recovery bucket."""

    bucket: BucketName = Field(description="a vault bucket holding golden copies")
    kms_key_arn: KmsKeyArn = Field(description="the ARN of the KMS key that encrypts this vault bucket")
    key_prefix: KeyConstraint = Field(
        default=None, description="only keys starting with this text (null: job.key_prefix)")
    priority: Annotated[int | None, whole_number(0, 2147483647, "a whole number from 0 to 2147483647")] = Field(
        default=None, description="this bucket's job priority (null: job.priority)")
    recovery_bucket: OptionalBucketName = Field(
        default=None, description="the recovery bucket for this vault bucket (null: recovery.bucket_name_pattern)")


class VaultAccount(_Section):
    """The isolated account that holds the Object Lock vault bucket or buckets (the source)."""

    profile: ProfileName = Field(description="the AWS profile that reaches the vault account")
    account_id: AccountId = Field(description="the vault account's 12-digit id")
    bucket: OptionalBucketName = Field(
        default=None, description="the vault bucket holding the golden copies (one-bucket form)")
    kms_key_arn: OptionalKmsKeyArn = Field(
        default=None, description="the ARN of the KMS key that encrypts the vault bucket (one-bucket form)"
    )
    buckets: list[VaultBucket] | None = Field(
        default=None, description="the vault buckets of a recovery that spans many (instead of bucket)")


class RecoveryAccount(_Section):
    """The new, clean account that receives the recovered object versions (the destination)."""

    profile: ProfileName = Field(description="the AWS profile that reaches the recovery account")
    account_id: AccountId = Field(description="the recovery account's 12-digit id")
    region: OptionalRegion = Field(
        default=None, description="the recovery bucket's region; null means the vault region"
    )
    bucket: OptionalBucketName = Field(
        default=None, description="the recovery bucket the run creates (one-bucket form)")
    bucket_name_pattern: str | None = Field(
        default=None, description="how recovery buckets are named from vault buckets, with {vault_bucket}")
    kms_key_alias: KmsKeyAlias = Field(
        description="the alias of the KMS key the run creates for the recovery bucket"
    )


def _replicas_only() -> list[ReplicationStatus]:
    """Return the default filter: the versions that reached the vault by replication."""
    return ["REPLICA"]


class RunSettings(_Section):
    """What the run is for, and which AWS its profiles reach."""

    purpose: RunPurpose = Field(
        default=None,
        description="drill or recovery; on a real account phase 00 stops until it is set",
    )
    backend: RunBackend = Field(
        default="aws",
        description="aws for real accounts; embedded only for the runbook's embedded backend",
    )


class SampleSettings(_Section):
    """A sample drill: how many of the versions in scope to draw (a count or a fraction), and the seed."""

    count: SampleCount = Field(default=None, description="how many versions in scope to draw")
    fraction: SampleFraction = Field(default=None, description="the share of the versions in scope to draw")
    seed: SampleSeed = Field(description="the seed that makes the random draw repeatable")


class JobSettings(_Section):
    """How the Batch Replication job is built and watched."""

    replication_statuses: ReplicationStatuses = Field(
        default_factory=_replicas_only,
        description="replication statuses of the versions the job replicates",
    )
    created_after: AwareDatetime = Field(
        default=None, description="only versions created after this time"
    )
    created_before: AwareDatetime = Field(
        default=None, description="only versions created before this time"
    )
    key_prefix: KeyConstraint = Field(
        default=None, description="only versions whose key starts with this text"
    )
    key_suffix: KeyConstraint = Field(
        default=None, description="only versions whose key ends with this text"
    )
    key_substring: KeyConstraint = Field(
        default=None, description="only versions whose key contains this text"
    )
    replica_storage_class: StorageClassName = Field(
        default="INTELLIGENT_TIERING", description="the storage class of the replicas"
    )
    priority: Annotated[int, whole_number(0, 2147483647, "a whole number from 0 to 2147483647")] = Field(
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
    poll_seconds: PollSeconds = Field(
        default=5, description="seconds between two looks at the job's status"
    )
    timeout_minutes: Annotated[
        int, whole_number(1, 10080, "a whole number of minutes from 1 to 10080 (one week)")
    ] = Field(default=720, description="how long to wait for the job before giving up")
    sample: SampleSettings | None = Field(
        default=None, description="null copies the whole scope; a count or fraction and a seed copy a sample"
    )


class RestoreSettings(_Section):
    """The optional restore of archived golden copies (GLACIER, DEEP_ARCHIVE) before the replication job."""

    archived: Flag = Field(
        default=False,
        description="true restores the archived versions in scope with a Batch Operations job, so they are recovered",
    )
    tier: RestoreTier = Field(
        default="STANDARD", description="the retrieval tier: STANDARD (faster) or BULK (cheaper, slower)"
    )
    expiration_days: Annotated[int, whole_number(1, 365, "a whole number of days from 1 to 365")] = Field(
        default=7, description="how many days each restored copy stays readable; long enough for replication"
    )


class VerificationSettings(_Section):
    """How the recovered copy is compared with the vault."""

    max_retry_rounds: Annotated[int, whole_number(0, 10, "a whole number from 0 to 10")] = Field(
        default=2, description="follow-up jobs for failed tasks before the verdict"
    )
    head_workers: Annotated[int, whole_number(1, 128, "a whole number from 1 to 128")] = Field(
        default=16, description="parallel requests when reading object versions"
    )
    current_view: CurrentViewSetting = Field(
        default="fail_unexplained",
        description="whether keys an application would read differently fail the verdict: "
                    "report, fail_unexplained or fail_any",
    )
    # Inventory verification (runbook_lib.inventory_proof): S3 Inventory reports compared in SQL.
    method: VerificationMethod = Field(
        default="head", description="head (HEAD every version), inventory (S3 Inventory + SQL) or auto (by size)"
    )
    engine: VerificationEngine = Field(default="duckdb", description="where the inventory SQL runs: duckdb or athena")
    auto_inventory_from: Annotated[int, whole_number(1, 10**12, "a whole number of versions")] = Field(
        default=1_000_000, description="auto uses inventory from this many vault versions on"
    )
    inventory_prefix: Prefix = Field(
        default="inventory", description="key prefix of the inventory reports in the report bucket"
    )
    vault_inventory_id: InventoryConfigId = Field(
        default=None, description="an existing inventory configuration of the vault bucket to use"
    )
    head_sample: Annotated[int, whole_number(0, 100000, "a whole number from 0 to 100000")] = Field(
        default=100, description="matching versions re-checked with HEAD after an inventory comparison"
    )
    athena_workgroup: AthenaWorkGroup = Field(default="primary", description="Athena work group of the queries")
    athena_database: AthenaDatabase = Field(
        default="vault_recovery_verification", description="Athena database for the comparison's tables"
    )
    inventory_wait_minutes: Annotated[int, whole_number(0, 2880, "a whole number of minutes from 0 to 2880")] = Field(
        default=0, description="how long phase 07 waits for inventory reports newer than the jobs"
    )
    athena_output_location: S3Url = Field(
        default=None, description="s3:// URL for Athena results (default: under the report prefix)"
    )


class HistorySettings(_Section):
    """Where every verdict of every run is appended, for the trend over drills and recoveries."""

    file: HistoryFile = Field(
        default=None,
        description="the history file (JSON Lines); relative to the parameter file's folder; "
                    "null: history.jsonl in the folder that holds the run folder",
    )


class RunbookParams(_Section):
    """One parameter set: both accounts, their buckets and keys, and how the job runs."""

    run_id: RunId = Field(description="names this run and tags every resource it creates")
    run: RunSettings = Field(default_factory=RunSettings, description="what the run is for, and where")
    region: Region = Field(description="the vault bucket's region")
    allow_cross_region: Flag = Field(
        default=False, description="whether the recovery bucket may be in another region"
    )
    recover_as_of: AwareDatetime = Field(
        default=None,
        description="the point in time to recover (ISO 8601 with a timezone): only versions created before it; "
                    "null recovers the latest state",
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
    object_lock_token: ObjectLockToken = Field(
        default=None, description="the Object Lock token from AWS Support, if your account needs one"
    )
    notification_email: EmailAddress = Field(
        description="the address told when the job changes status"
    )
    notification_topic_name: TopicName = Field(
        default="s3-batch-replication-status", description="the SNS topic for job status"
    )
    event_rule_name: RuleName = Field(
        default="s3-batch-replication-job-status", description="the EventBridge rule for job status"
    )
    job: JobSettings = Field(default_factory=JobSettings, description="the Batch Replication job")
    restore: RestoreSettings = Field(
        default_factory=RestoreSettings, description="the restore of archived versions before the job"
    )
    verification: VerificationSettings = Field(
        default_factory=VerificationSettings, description="the verification of the recovered copy"
    )
    tags: Tags = Field(
        default_factory=dict, description="tags for every resource the run creates"
    )
    history: HistorySettings = Field(
        default_factory=HistorySettings, description="the drill and recovery history"
    )

    @model_validator(mode="wrap")
    @classmethod
    def _checked(cls, data: Any, handler: ModelWrapValidatorHandler[RunbookParams]) -> RunbookParams:
        """Return the validated parameters, or raise one ParameterError with every problem found.

        Each field's own problems come from pydantic; the rules between fields then run once, on
        the whole model when it validated, or else on the fields that are valid on their own.
        """
        try:
            params = handler(data)
        except ValidationError as error:
            problems = problems_from(error, cls)
            values = known_values(cls, data, _CROSS_FIELDS) if isinstance(data, Mapping) else {}
            raise ParameterError(problems + _cross_field_problems(values)) from None
        problems = _cross_field_problems({path: _attribute(params, path) for path in _CROSS_FIELDS})
        if problems:
            raise ParameterError(problems)
        return params

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
        return {**self.tags, RUN_ID_TAG: self.run_id}

    @property
    def bucket_pairs(self) -> tuple[BucketPair, ...]:
        """Every vault bucket with its key, scope, priority and recovery bucket (one pair in the one-bucket form)."""
        return pairs_of({path: _attribute(self, path) for path in _PAIR_FIELDS})

    @property
    def pair(self) -> BucketPair:
        """The one bucket pair of these parameters; an error for parameters that name many (act per pair)."""
        pairs = self.bucket_pairs
        if len(pairs) != 1:
            raise ValueError(f"these parameters name {len(pairs)} vault buckets: call this step once per bucket "
                             "pair (RunbookParams.for_pair)")
        return pairs[0]

    def for_pair(self, pair: BucketPair) -> RunbookParams:
        """Return these parameters in the one-bucket form for one of their pairs (a step that acts on one pair)."""
        vault = self.vault.model_copy(update={
            "bucket": pair.vault_bucket, "kms_key_arn": pair.vault_kms_key_arn, "buckets": None})
        recovery = self.recovery.model_copy(update={"bucket": pair.recovery_bucket, "bucket_name_pattern": None})
        job = self.job.model_copy(update={"key_prefix": pair.key_prefix, "priority": pair.priority})
        return self.model_copy(update={"vault": vault, "recovery": recovery, "job": job})

    @property
    def vault_bucket_arn(self) -> str:
        """The vault bucket's ARN (one-bucket parameters)."""
        return aws_facts.bucket_arn(self.pair.vault_bucket, self.partition)

    @property
    def recovery_bucket_arn(self) -> str:
        """The recovery bucket's ARN (one-bucket parameters)."""
        return aws_facts.bucket_arn(self.pair.recovery_bucket, partition_of(self.recovery_region))

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
    "vault.buckets",
    "recovery.profile",
    "recovery.account_id",
    "recovery.region",
    "recovery.bucket",
    "recovery.bucket_name_pattern",
    "report_bucket",
    "job.key_prefix",
    "job.priority",
    "job.created_after",
    "job.created_before",
    "recover_as_of",
    "job.sample",
    "run.purpose",
    "run.backend",
)


# The parameters that make the bucket pairs.
_PAIR_FIELDS = ("vault.bucket", "vault.kms_key_arn", "vault.buckets", "recovery.bucket",
                "recovery.bucket_name_pattern", "job.key_prefix", "job.priority")


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
        if values.get(field) is not None and values.get(other) is not None and values[field] == values[other]
    ]
    problems += _key_location_problems(values)
    problems += pair_problems(values)
    problems += _region_problems(values)
    problems += _as_of_problems(values)
    problems += _time_window_problems(values)
    problems += _sample_problems(values)
    problems += _purpose_problems(values)
    return problems


def _key_location_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return problems when the vault key is not in the vault account and the vault region."""
    if not all(values.get(path) is not None for path in ("vault.kms_key_arn", "vault.account_id", "region")):
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


def _as_of_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return problems when the point in time is in the future or disagrees with job.created_before."""
    as_of, before = values.get("recover_as_of"), values.get("job.created_before")
    if as_of is None:
        return []
    problems = []
    if as_of > datetime.now(timezone.utc):
        problems.append(ParameterProblem(
            "recover_as_of", as_of.isoformat(),
            "a time that has passed (the point in time whose state is recovered), or null for the latest state"))
    if before is not None and before != as_of:
        problems.append(ParameterProblem(
            "job.created_before", before.isoformat(),
            f"null, or the same time as recover_as_of ({as_of.isoformat()}): the point in time is the job's "
            "CreatedBefore; drop job.created_before"))
    return problems


def _time_window_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return a problem when the creation-time window of the job is empty."""
    limit = "recover_as_of" if values.get("recover_as_of") is not None else "job.created_before"
    after, before = values.get("job.created_after"), values.get(limit)
    if after is None or before is None or after < before:
        return []
    expected = f"a time before {limit} ({before.isoformat()})"
    return [ParameterProblem("job.created_after", after.isoformat(), expected)]


def _sample_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return a problem when a sample gives both or neither of count and fraction, or is asked of a recovery."""
    sample = values.get("job.sample")
    if sample is None:
        return []
    problems = []
    if sample.count is not None and sample.fraction is not None:
        problems.append(ParameterProblem(
            "job.sample.fraction", sample.fraction,
            f"null when job.sample.count is given ({sample.count}): a sample has one size, a count or a fraction"))
    if sample.count is None and sample.fraction is None:
        problems.append(ParameterProblem(
            "job.sample.count", MISSING,
            "a number of versions to draw (or job.sample.fraction, a share of the versions in scope)"))
    if values.get("vault.buckets"):
        problems.append(ParameterProblem(
            "job.sample", sample.model_dump(),
            "null when vault.buckets names many buckets: a sample drill draws from one vault bucket "
            "(run it with the one-bucket form, once per bucket)"))
    if values.get("run.purpose") == "recovery":
        problems.append(ParameterProblem(
            "job.sample", sample.model_dump(),
            "null: a recovery copies the whole scope; a sample is for drills (run.purpose: drill)"))
    return problems


def _purpose_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return a problem when a run on the embedded backend claims to be a recovery."""
    if values.get("run.backend") == "embedded" and values.get("run.purpose") == "recovery":
        return [ParameterProblem(
            "run.purpose", "recovery", "drill (or null): a run on the embedded backend is always a drill")]
    return []


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
