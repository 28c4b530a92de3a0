"""Batch Operations job status events, put on the job account's default EventBridge bus.

S3 reports a job's creation (`JobCreated`) and each later status change (`JobStatusChanged`) as
CloudTrail service events: source `aws.s3`, detail-type "AWS Service Event via CloudTrail", and
a `serviceEventDetails` object naming the job, its new status, failure codes and the reason for
the change. They go through moto's EventBridge backend in-process, so rules with SQS targets (and
SNS targets, patched in `patches`) deliver them like any other event. Delivery is best effort, as
on AWS: a failure to deliver is logged and never stops the job.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from runbook_lib import aws_facts
from runbook_lib.embedded import moto_state
from runbook_lib.embedded.utc import iso_seconds, utc_now

__all__ = [
    "DETAIL_TYPE",
    "JOB_CREATED",
    "JOB_STATUS_CHANGED",
    "JobIdentity",
    "announce",
    "job_event_detail",
    "publish_job_event",
]

log = logging.getLogger(__name__)

DETAIL_TYPE = "AWS Service Event via CloudTrail"
JOB_CREATED = "JobCreated"
JOB_STATUS_CHANGED = "JobStatusChanged"
_S3 = aws_facts.S3_SERVICE_PRINCIPAL


class JobIdentity(Protocol):
    """What an event needs to name a job: its account, Region, id and ARN."""

    account: str
    region: str
    job_id: str

    @property
    def arn(self) -> str:
        """Return the job's ARN."""


def job_event_detail(
    *,
    event_name: str,
    account: str,
    region: str,
    job_id: str,
    job_arn: str,
    status: str,
    failure_codes: Sequence[str] = (),
    reasons: Sequence[str] = (),
    when: datetime | None = None,
) -> dict[str, Any]:
    """Return the `detail` of a job event in the shape of S3's CloudTrail service events."""
    moment = iso_seconds(when or utc_now())
    return {
        "eventVersion": "1.05",
        "userIdentity": {"accountId": account, "invokedBy": _S3},
        "eventTime": moment,
        "eventSource": _S3,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": _S3,
        "userAgent": _S3,
        "requestParameters": None,
        "responseElements": None,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsServiceEvent",
        "recipientAccountId": account,
        "serviceEventDetails": {
            "jobId": job_id,
            "jobArn": job_arn,
            "status": status,
            "jobEventId": uuid.uuid4().hex,
            "failureCodes": list(failure_codes),
            "statusChangeReason": list(reasons),
        },
    }


def publish_job_event(account: str, region: str, detail: dict[str, Any]) -> bool:
    """Put one job event on the account's default bus in `region`; return whether it was accepted."""
    entry = {"Source": "aws.s3", "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail), "Resources": []}
    try:
        answers = moto_state.events_backend(account, region).put_events([entry])
    except Exception as error:  # a broken rule or target must never stop the job, as on AWS
        log.warning("job event %s for %s not delivered: %s", detail.get("eventName"), account, error)
        return False
    return all("EventId" in answer for answer in answers)


def announce(
    job: JobIdentity, event_name: str, status: str, failure_codes: Sequence[str] = (), reasons: Sequence[str] = ()
) -> bool:
    """Put one event about the job on its account's default bus; return whether it was accepted."""
    detail = job_event_detail(
        event_name=event_name, account=job.account, region=job.region, job_id=job.job_id,
        job_arn=job.arn, status=status, failure_codes=failure_codes, reasons=reasons,
    )
    return publish_job_event(job.account, job.region, detail)
