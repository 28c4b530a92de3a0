"""What the job status topic's subscribers receive: an audit queue beside the e-mail subscription.

E-mail cannot be read back by a notebook, so the run also subscribes an SQS queue it owns to the
topic. Phase 06 reads that queue to show the job's status events exactly as subscribers got them,
and keeps every event it read in the ledger as evidence.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from runbook_lib import aws_facts
from runbook_lib.accounts import error_code
from runbook_lib.aws_facts import RUN_ID_TAG
from runbook_lib.context import RunContext
from runbook_lib.planning import known_after
from runbook_lib.provision import Outcome

__all__ = ["ensure_audit_queue", "received_job_events"]


def _queue_policy(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "RunbookTopicDeliversJobEvents",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }],
    }


def ensure_audit_queue(ctx: RunContext) -> Outcome:
    """Return the outcome of the run's audit queue subscribed to the job status topic."""
    sqs = ctx.vault("sqs")
    sns = ctx.vault("sns")
    params = ctx.params
    topic_arn = ctx.ledger.resource("topic_arn", "05_notifications (SNS topic)")
    name = f"{params.notification_topic_name}-audit"[:80]
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        created = False
    except ClientError as error:
        if "NonExistentQueue" not in error_code(error):
            raise
        url = _create_queue(ctx, sqs, name)
        created = True
    if ctx.plan is not None and ctx.plan.creates(url):
        # A queue this plan would create has no policy yet; its ARN follows from its name.
        attributes: dict[str, str] = {
            "QueueArn": aws_facts.sqs_queue_arn(params.region, params.vault.account_id, name)}
    else:
        answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "Policy"])["Attributes"]
        attributes = {str(name): value for name, value in answer.items()}
    arn = attributes["QueueArn"]
    if created:
        ctx.ledger.record_created("sqs_queue", url, arn=arn)
    elif not _queue_owned(ctx, sqs, url):
        return Outcome("audit queue", arn, "drift", {"queue": "exists, not created by this run"},
                       note=f"a queue named {name} belongs to someone else; set another notification_topic_name")
    ctx.ledger.set_resource("audit_queue_url", url)
    differences: dict[str, Any] = {}
    wanted = _queue_policy(arn, topic_arn)
    current = json.loads(attributes["Policy"]) if attributes.get("Policy") else None
    if current != wanted:
        # Re-runs must not write when nothing changed, so the policy is compared first.
        if ctx.plan is not None:
            ctx.plan.intend("vault", "sqs", "SetQueueAttributes", arn, wanted, found=current)
        else:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(wanted)})
        differences["queue_policy"] = {"found": current, "wanted": wanted}
    subscriptions = [] if ctx.plan is not None and ctx.plan.creates(topic_arn) else (
        sns.list_subscriptions_by_topic(TopicArn=topic_arn).get("Subscriptions", []))
    if not any(s["Protocol"] == "sqs" and s["Endpoint"] == arn for s in subscriptions):
        subscription = {"Protocol": "sqs", "Endpoint": arn, "Attributes": {"RawMessageDelivery": "true"}}
        if ctx.plan is not None:
            ctx.plan.intend("vault", "sns", "Subscribe", topic_arn, subscription)
        else:
            sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        differences["subscribed"] = topic_arn
    if created:
        return Outcome("audit queue", arn, "created", note="subscribed to the topic")
    return Outcome("audit queue", arn, "updated" if differences else "unchanged", differences or None,
                   note="subscribed to the topic")


def _create_queue(ctx: RunContext, sqs: Any, name: str) -> str:
    """Return the URL of the audit queue created now (planning: a stand-in, SQS gives the URL)."""
    attributes = {"MessageRetentionPeriod": str(14 * 24 * 3600)}
    if ctx.plan is not None:
        url = f"{name} ({known_after('05')})"
        ctx.plan.intend("vault", "sqs", "CreateQueue", url, {"QueueName": name, "Attributes": attributes},
                        creates=True)
        return url
    return str(sqs.create_queue(QueueName=name, tags=dict(ctx.tags), Attributes=attributes)["QueueUrl"])


def _queue_owned(ctx: RunContext, sqs: Any, url: str) -> bool:
    if ctx.ledger.was_created("sqs_queue", url):
        return True
    tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    return bool(tags.get(RUN_ID_TAG) == ctx.params.run_id)


def received_job_events(ctx: RunContext, job_id: str | None = None) -> pd.DataFrame:
    """Return the job status events the topic delivered so far (read from the audit queue, kept in the ledger)."""
    url = ctx.ledger.state.resources.audit_queue_url
    events: list[dict[str, Any]] = list(ctx.ledger.state.job_events)
    if url:
        sqs = ctx.vault("sqs")
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            for message in messages:
                events.append(_event_row(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        ctx.ledger.state.job_events = events
        ctx.ledger.save()
    frame = pd.DataFrame(events, columns=["time", "event", "job_id", "status", "failure_codes"])
    if job_id is not None:
        frame = frame[frame["job_id"] == job_id]
    return frame.reset_index(drop=True)


def _event_row(body: str) -> dict[str, Any]:
    document = json.loads(body)
    if "Message" in document and "detail" not in document:  # an SNS envelope (raw delivery off)
        document = json.loads(document["Message"])
    detail = document.get("detail", {})
    service = detail.get("serviceEventDetails", {})
    return {
        "time": document.get("time") or detail.get("eventTime"),
        "event": detail.get("eventName"),
        "job_id": service.get("jobId"),
        "status": service.get("status"),
        "failure_codes": ",".join(service.get("failureCodes", []) or []),
    }
