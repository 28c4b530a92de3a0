"""A record of every AWS call the runbook makes, one JSON line per HTTP request, in the run folder.

Change boards and security leads ask who did what in their accounts; CloudTrail answers from
AWS's side, `calls.jsonl` from ours. Each line is one attempt of one call, so a throttled call that
botocore retried shows once per attempt, each with the request id AWS gave it:

| field | what it is |
|---|---|
| `time` | when the attempt was sent (UTC, to the millisecond); CloudTrail's `eventTime` is within seconds |
| `run_id`, `phase` | the run and the phase that made the call |
| `side`, `account`, `region` | the session (vault or recovery), the account it acts in, the client's Region |
| `service`, `operation` | as botocore names them (`s3`, `HeadObject`); CloudTrail's `eventSource` / `eventName` |
| `resource` | the call's own names for what it acts on: bucket, key, version id, role, key id, job id, ... |
| `attempt` | 1 for the first try, 2 for botocore's first retry, ... |
| `http_status`, `error_code` | the outcome; `error_code` is AWS's code, or the SDK's error when no answer came |
| `request_id`, `extended_request_id` | `x-amz-request-id` and `x-amz-id-2` (S3), or `x-amzn-RequestId` |
| `duration_ms` | from sending the attempt to its answer |

`request_id` is what CloudTrail records as `requestID`.

What is never written: request headers (so no Authorization header, access key id, session token
or signature), request and response bodies (so no object data, no policy document, no KMS
plaintext or ciphertext, no credentials returned by STS), and any parameter that is not a name
from `RESOURCE_PARAMETERS`. Resource names are written as the call gave them.

The hooks go on the boto3 sessions before any client is made (`accounts.open_sessions`), so every
client of those sessions logs, the ones botocore makes for itself included: the AssumeRole calls
that turn a profile's `role_arn` into credentials are calls made in the operator's name too. Every
such request also carries the runbook's user-agent app id (`accounts.APP_ID`), so CloudTrail's
`userAgent` tells the runbook's calls from everyone else's.

Phases run in separate kernels and processes, and verification sends HEADs from many threads: each
line is written with one `write` on a file opened with O_APPEND, which the operating system keeps
whole and in order among concurrent writers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runbook_lib.errors import CallLogError

__all__ = [
    "CALL_LOG_FILE",
    "FIELDS",
    "RESOURCE_PARAMETERS",
    "CallLog",
    "describe",
    "read_calls",
]

CALL_LOG_FILE = "calls.jsonl"

# Every line has exactly these fields, in this order.
FIELDS: tuple[str, ...] = (
    "time", "run_id", "phase", "side", "account", "region", "service", "operation", "resource", "attempt",
    "http_status", "error_code", "request_id", "extended_request_id", "duration_ms",
)

# The request parameters that name what a call acts on, and only those: never a document, a body,
# a token or an e-mail address.
RESOURCE_PARAMETERS: tuple[str, ...] = (
    "AccountId", "Bucket", "Key", "VersionId", "Prefix", "JobId", "RoleName", "RoleArn", "RoleSessionName",
    "PolicyArn", "PolicyName", "KeyId", "AliasName", "TargetKeyId", "TopicArn", "SubscriptionArn", "QueueUrl",
    "QueueName", "Name", "Rule", "EventBusName",
)

# Where the call's names and the attempt's start wait in botocore's per-call context.
_CALL = "runbook_call"
_STARTED = "runbook_call_started"
_HANDLER_ID = "runbook-call-log"


@dataclass(frozen=True)
class CallLog:
    """The run folder's call log, and the run and phase whose calls it records."""

    path: Path
    run_id: str
    phase: str | None = None

    @classmethod
    def in_run_folder(cls, run_dir: str | Path, run_id: str, phase: str | None = None) -> CallLog:
        """Return the call log of a run folder (`calls.jsonl`)."""
        return cls(Path(run_dir) / CALL_LOG_FILE, run_id, phase)

    def attach(self, session: Any, *, side: str, account: str) -> None:
        """Record every call of the clients `session` makes from now on (botocore's own clients included)."""
        events = session.events
        events.register("before-parameter-build", _remember_call, unique_id=f"{_HANDLER_ID}-call")
        events.register("request-created", _remember_start, unique_id=f"{_HANDLER_ID}-start")

        def record(context: Mapping[str, Any] | None = None, response_dict: Mapping[str, Any] | None = None,
                   parsed_response: Mapping[str, Any] | None = None, exception: BaseException | None = None,
                   **_: Any) -> None:
            self.append(_line(self, side, account, context or {}, response_dict, parsed_response, exception))

        events.register("response-received", record, unique_id=f"{_HANDLER_ID}-record-{side}")

    def append(self, line: Mapping[str, Any]) -> None:
        """Append one line; one write on an O_APPEND descriptor, so concurrent writers never interleave."""
        data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                written = os.write(descriptor, data)
            finally:
                os.close(descriptor)
        except OSError as error:
            raise CallLogError(
                f"cannot append to the call log {self.path}: {error}. The AWS call was made but is not recorded; "
                "free space or fix the run folder's permissions, then run the phase again.",
                str(self.path),
            ) from error
        if written != len(data):
            raise CallLogError(
                f"the call log {self.path} took {written} of {len(data)} bytes of a line (is the disk full?); "
                "free space, then run the phase again.",
                str(self.path),
            )


def read_calls(path: str | Path) -> list[dict[str, Any]]:
    """Return the lines of a call log, oldest first ([] when the run made no call yet)."""
    file = Path(path)
    if file.is_dir():
        file = file / CALL_LOG_FILE
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def describe(run_dir: str | Path) -> str:
    """Return a sentence for the evidence: where the call log is, how many calls it holds, and how to use it."""
    calls = read_calls(run_dir)
    if not calls:
        return f"The run made no AWS call recorded in {CALL_LOG_FILE}."
    failed = sum(1 for call in calls if call["error_code"])
    services = sorted({str(call["service"]) for call in calls})
    return (
        f"Every AWS call of this run is in [{CALL_LOG_FILE}]({CALL_LOG_FILE}): {len(calls):,} requests "
        f"({failed:,} answered with an error) to {', '.join(services)}, from {calls[0]['time']} "
        f"to {calls[-1]['time']}. Each line names the account, Region, operation, resource and AWS's request "
        "id, which CloudTrail records as requestID."
    )


# --------------------------------------------------------------------------- botocore hooks


def _remember_call(params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    """Keep the call's service, operation and resource names in its context, for each attempt's line."""
    context[_CALL] = {
        "service": model.service_model.service_name,
        "operation": model.name,
        "resource": {name: str(params[name]) for name in RESOURCE_PARAMETERS if params.get(name) not in (None, "")},
    }


def _remember_start(request: Any, **_: Any) -> None:
    """Note when this attempt was sent (each retry makes a new request)."""
    context = getattr(request, "context", None)
    if isinstance(context, dict):
        context[_STARTED] = (datetime.now(timezone.utc), time.monotonic())


def _line(
    log: CallLog, side: str, account: str, context: Mapping[str, Any], response: Mapping[str, Any] | None,
    parsed: Mapping[str, Any] | None, exception: BaseException | None,
) -> dict[str, Any]:
    """Return the call log line of one attempt."""
    call = context.get(_CALL) or {}
    started, monotonic = context.get(_STARTED) or (datetime.now(timezone.utc), time.monotonic())
    headers = {str(k).lower(): str(v) for k, v in ((response or {}).get("headers") or {}).items()}
    status = (response or {}).get("status_code")
    error = ""
    if exception is not None:
        error = type(exception).__name__
    elif status is not None and int(status) >= 300:
        error = str(((parsed or {}).get("Error") or {}).get("Code") or status)
    request_id = headers.get("x-amz-request-id") or headers.get("x-amzn-requestid") or ""
    return {
        "time": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run_id": log.run_id,
        "phase": log.phase,
        "side": side,
        "account": account,
        "region": context.get("client_region"),
        "service": call.get("service"),
        "operation": call.get("operation"),
        "resource": call.get("resource", {}),
        "attempt": int((context.get("retries") or {}).get("attempt", 1)),
        "http_status": int(status) if status is not None else None,
        "error_code": error or None,
        "request_id": request_id or None,
        "extended_request_id": headers.get("x-amz-id-2") or None,
        "duration_ms": round((time.monotonic() - monotonic) * 1000, 1),
    }
