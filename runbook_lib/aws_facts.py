"""Facts about AWS the whole runbook relies on, written once: partitions and ARNs, statuses, storage classes.

Every module that builds an ARN or names a job status, a replication status or a storage class
takes it from here, so a China or GovCloud run never gets an `arn:aws:` it did not ask for, and
a status spelt one way in the job watcher is spelt the same way in verification and the emulator.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "AFTER_CONFIRMATION_JOB_STATUSES",
    "ARCHIVED_STORAGE_CLASSES",
    "BATCH_OPERATIONS_SERVICE_PRINCIPAL",
    "COMMERCIAL_PARTITION",
    "DEFAULT_STORAGE_CLASS",
    "JOB_STATUSES",
    "REPLICATION_STATUS_COMPLETED",
    "REPLICATION_STATUS_FAILED",
    "REPLICATION_STATUS_FILTERS",
    "REPLICATION_STATUS_NONE",
    "REPLICATION_STATUS_REPLICA",
    "RUN_ID_TAG",
    "S3_SERVICE_PRINCIPAL",
    "STORAGE_CLASSES",
    "TERMINAL_JOB_STATUSES",
    "UNSUCCESSFUL_END_STATUSES",
    "ReplicationStatusFilter",
    "StorageClass",
    "account_of_arn",
    "account_root_arn",
    "batch_job_arn",
    "bucket_arn",
    "bucket_name_of_arn",
    "dns_suffix",
    "event_rule_arn",
    "iam_policy_arn",
    "iam_role_arn",
    "kms_key_arn",
    "kms_via_service",
    "object_arn",
    "objects_arn",
    "partition_of",
    "sns_topic_arn",
    "split_s3_object_arn",
    "sqs_queue_arn",
]

# The partition of every commercial Region, and the only one moto (so the embedded backend) serves.
COMMERCIAL_PARTITION = "aws"

# The service principals that assume roles for Batch Operations jobs and for S3 replication.
BATCH_OPERATIONS_SERVICE_PRINCIPAL = "batchoperations.s3.amazonaws.com"
S3_SERVICE_PRINCIPAL = "s3.amazonaws.com"

# The tag every resource the run creates carries; ownership is decided by it and by the run state.
RUN_ID_TAG = "RunbookRunId"

# S3 Batch Operations job statuses (botocore's JobStatus enum).
JOB_STATUSES: tuple[str, ...] = (
    "Active", "Cancelled", "Cancelling", "Complete", "Completing", "Failed", "Failing", "New",
    "Paused", "Pausing", "Preparing", "Ready", "Suspended",
)
# A job ends in one of these (the event pattern lists them in this order).
TERMINAL_JOB_STATUSES: tuple[str, ...] = ("Complete", "Failed", "Cancelled")
# A job that ended in one of these did not do what it was created for: a new attempt is needed.
UNSUCCESSFUL_END_STATUSES: tuple[str, ...] = ("Failed", "Cancelled")
# Statuses a job reaches only once it was confirmed (or never needed a confirmation).
AFTER_CONFIRMATION_JOB_STATUSES: frozenset[str] = frozenset({
    "Ready", "Active", "Pausing", "Paused", "Completing", "Complete", "Failing", "Failed", "Cancelling", "Cancelled",
})

# Values of the manifest generator's ObjectReplicationStatuses filter; NONE means "no status".
ReplicationStatusFilter = Literal["NONE", "FAILED", "COMPLETED", "REPLICA"]
REPLICATION_STATUS_FILTERS: tuple[str, ...] = get_args(ReplicationStatusFilter)
# An object version's replication status (x-amz-replication-status): a source S3 copied, a source
# it failed to copy, a copy S3 wrote; NONE is the filter's name for a version with no status.
REPLICATION_STATUS_COMPLETED = "COMPLETED"
REPLICATION_STATUS_FAILED = "FAILED"
REPLICATION_STATUS_REPLICA = "REPLICA"
REPLICATION_STATUS_NONE = "NONE"

# The class of an object stored without one; S3 leaves it out of HEAD and listings.
DEFAULT_STORAGE_CLASS = "STANDARD"
# The storage classes a replication rule may write replicas in (the parameter model's type).
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
STORAGE_CLASSES: tuple[str, ...] = get_args(StorageClass)
# Versions in these classes must be restored before Batch Replication can copy them.
ARCHIVED_STORAGE_CLASSES: frozenset[str] = frozenset({"GLACIER", "DEEP_ARCHIVE"})


def partition_of(region: str) -> str:
    """Return the ARN partition a region belongs to: aws-cn in China, aws-us-gov in GovCloud, else aws."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return COMMERCIAL_PARTITION


def dns_suffix(region: str) -> str:
    """Return the domain of AWS service endpoints in a region's partition: amazonaws.com.cn in China."""
    return "amazonaws.com.cn" if partition_of(region) == "aws-cn" else "amazonaws.com"


def kms_via_service(service: str, region: str) -> str:
    """Return the kms:ViaService value of a service in a region, so a key is usable only through it.

    KMS names the calling service by its regional endpoint host, `<service>.<region>.<domain>`; the
    domain is the partition's endpoint domain (amazonaws.com.cn in Beijing and Ningxia, amazonaws.com
    elsewhere, GovCloud included).
    """
    return f"{service}.{region}.{dns_suffix(region)}"


def bucket_arn(bucket: str, partition: str = "aws") -> str:
    """Return a bucket's ARN, the resource of bucket-level actions."""
    return f"arn:{partition}:s3:::{bucket}"


def objects_arn(bucket: str, partition: str = "aws") -> str:
    """Return the ARN matching every object of a bucket, the resource of object-level actions."""
    return f"{bucket_arn(bucket, partition)}/*"


def object_arn(bucket: str, key: str, partition: str = "aws") -> str:
    """Return one object's ARN (manifests and reports are named this way in job requests)."""
    return f"{bucket_arn(bucket, partition)}/{key}"


def bucket_name_of_arn(arn: str) -> str:
    """Return the bucket a bucket ARN names, in any partition (a bare bucket name is returned as is)."""
    return arn.rsplit(":", 1)[-1]


def split_s3_object_arn(arn: str) -> tuple[str, str]:
    """Return (bucket, key) of an S3 object ARN in any partition."""
    head, separator, rest = arn.partition(":::")
    if not separator or not head.startswith("arn:") or ":s3" not in head or "/" not in rest:
        raise ValueError(f"not an S3 object ARN: {arn!r}")
    bucket, _, key = rest.partition("/")
    return bucket, key


def account_of_arn(arn: str) -> str:
    """Return the account field of an ARN, or "" when it has none (S3 bucket ARNs) or is not an ARN."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def account_root_arn(account_id: str, partition: str = "aws") -> str:
    """Return the principal ARN that stands for a whole account in a resource policy."""
    return f"arn:{partition}:iam::{account_id}:root"


def iam_role_arn(account_id: str, name: str, partition: str = "aws") -> str:
    """Return an IAM role's ARN."""
    return f"arn:{partition}:iam::{account_id}:role/{name}"


def iam_policy_arn(account_id: str, name: str, partition: str = "aws") -> str:
    """Return a customer-managed IAM policy's ARN."""
    return f"arn:{partition}:iam::{account_id}:policy/{name}"


def kms_key_arn(region: str, account_id: str, key_id: str) -> str:
    """Return a KMS key's ARN, in the partition of its region."""
    return f"arn:{partition_of(region)}:kms:{region}:{account_id}:key/{key_id}"


def sns_topic_arn(region: str, account_id: str, name: str) -> str:
    """Return an SNS topic's ARN, in the partition of its region."""
    return f"arn:{partition_of(region)}:sns:{region}:{account_id}:{name}"


def batch_job_arn(region: str, account_id: str, job_id: str) -> str:
    """Return an S3 Batch Operations job's ARN, in the partition of its Region."""
    return f"arn:{partition_of(region)}:s3:{region}:{account_id}:job/{job_id}"


def sqs_queue_arn(region: str, account_id: str, name: str) -> str:
    """Return an SQS queue's ARN, in the partition of its Region."""
    return f"arn:{partition_of(region)}:sqs:{region}:{account_id}:{name}"


def event_rule_arn(region: str, account_id: str, name: str) -> str:
    """Return the ARN of an EventBridge rule on the default event bus, in the partition of its Region."""
    return f"arn:{partition_of(region)}:events:{region}:{account_id}:rule/{name}"
