"""What goes wrong in S3 Batch Operations: errors the S3 Control API answers, and failures that end a job.

    BackendError (runbook_lib.errors)
    ├── S3ControlError              an API call is refused: code, message, HTTP status
    │   ├── InvalidRequest          400: a member breaks a rule (model constraints or ours)
    │   ├── MalformedXML            400: the body is empty or not XML
    │   ├── JobStatusException      400: the job's status does not allow the change
    │   ├── IdempotencyException    400: a ClientRequestToken reused for another request
    │   ├── InvalidNextToken        400: a ListJobs token that matches no listing
    │   ├── AccessDenied            403: the caller manages another account's jobs
    │   ├── NotFound                404: no such job, or no job resource at that path
    │   └── MethodNotAllowed        405: the resource does not take that method
    └── JobFailure                  a job cannot go on: one of its FailureReasons

An API error reaches the caller as S3 Control's XML error document (`responses.error_body`); a
job failure is never an HTTP error, it moves the job to Failing and Failed.
"""

from __future__ import annotations

from runbook_lib.errors import BackendError

__all__ = [
    "AccessDenied",
    "IdempotencyException",
    "InvalidNextToken",
    "InvalidRequest",
    "JobFailure",
    "JobStatusException",
    "MalformedXML",
    "MethodNotAllowed",
    "NotFound",
    "S3ControlError",
]


class S3ControlError(BackendError):
    """An S3 Control API error: the code, message and HTTP status the caller receives."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}")


class InvalidRequest(S3ControlError):
    """A request member breaks a constraint of botocore's model or a rule of ours (400)."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidRequest", message, 400)


class MalformedXML(S3ControlError):
    """The request body is empty or not well-formed XML (400)."""

    def __init__(self, message: str) -> None:
        super().__init__("MalformedXML", message, 400)


class JobStatusException(S3ControlError):
    """The job's status does not allow the requested status change (400)."""

    def __init__(self, message: str) -> None:
        super().__init__("JobStatusException", message, 400)


class IdempotencyException(S3ControlError):
    """A ClientRequestToken was already used for a different CreateJob request (400)."""

    def __init__(self, message: str) -> None:
        super().__init__("IdempotencyException", message, 400)


class InvalidNextToken(S3ControlError):
    """A ListJobs nextToken that belongs to no listing of these jobs (400)."""

    def __init__(self) -> None:
        super().__init__(
            "InvalidNextTokenException", "The nextToken is not valid for this listing; start again without it.", 400
        )


class AccessDenied(S3ControlError):
    """The caller may not manage the jobs it names (403)."""

    def __init__(self, message: str) -> None:
        super().__init__("AccessDenied", message, 403)


class NotFound(S3ControlError):
    """No such job in the account, or no job resource at the path (404)."""

    def __init__(self, message: str) -> None:
        super().__init__("NotFoundException", message, 404)


class MethodNotAllowed(S3ControlError):
    """The job resource exists but does not take that HTTP method (405)."""

    def __init__(self, message: str) -> None:
        super().__init__("MethodNotAllowed", message, 405)


class JobFailure(BackendError):
    """The job cannot go on: `failure_code` and `reason` become one of its FailureReasons."""

    def __init__(self, failure_code: str, reason: str) -> None:
        # DescribeJob's model limits both fields; longer values would make the answer invalid.
        self.failure_code = failure_code[:64]
        self.reason = reason[:256]
        super().__init__(f"{self.failure_code}: {self.reason}")
