"""The S3 Control job API's routes, written once: which requests are job calls, and which operation each is.

    POST /v20180820/jobs                          CreateJob
    GET  /v20180820/jobs                          ListJobs
    GET  /v20180820/jobs/{id}                     DescribeJob
    POST /v20180820/jobs/{id}/status              UpdateJobStatus
    POST /v20180820/jobs/{id}/priority            UpdateJobPriority
    GET|PUT|DELETE /v20180820/jobs/{id}/tagging   Get/Put/DeleteJobTagging

The server's middleware sends a request to the job emulator when `is_jobs_path` says so, and every
other S3 Control call (public access blocks, say) to moto. The emulator resolves the path first
(404 when it names no job resource) and the method only after checking the account, as S3 Control
answers a request with neither a valid account nor a valid method with the account's error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runbook_lib.embedded.s3control.exceptions import MethodNotAllowed, NotFound

__all__ = ["ROUTES", "JobResource", "is_jobs_path", "job_resource", "operation"]

# Any path under the jobs collection, with or without a query string: the middleware's test.
_JOBS_PREFIX = re.compile(r"^/v20180820/jobs(?:/|$|\?)")
_JOB_RESOURCE = re.compile(r"^/v20180820/jobs(?:/(?P<job_id>[^/]+)(?:/(?P<action>status|priority|tagging))?)?/?$")

# (method, the path names a job, the sub-resource) -> the operation botocore's model names.
ROUTES: dict[tuple[str, bool, str | None], str] = {
    ("POST", False, None): "CreateJob",
    ("GET", False, None): "ListJobs",
    ("GET", True, None): "DescribeJob",
    ("POST", True, "status"): "UpdateJobStatus",
    ("POST", True, "priority"): "UpdateJobPriority",
    ("GET", True, "tagging"): "GetJobTagging",
    ("PUT", True, "tagging"): "PutJobTagging",
    ("DELETE", True, "tagging"): "DeleteJobTagging",
}


@dataclass(frozen=True)
class JobResource:
    """What a job API path names: the collection (no job id) or one job, and its sub-resource."""

    job_id: str | None
    action: str | None


def is_jobs_path(path: str) -> bool:
    """Return True when the path belongs to the Batch Operations job API, which moto does not serve."""
    return _JOBS_PREFIX.match(path) is not None


def job_resource(path: str) -> JobResource:
    """Return the job resource a path names, or raise NotFound when it names none."""
    route = _JOB_RESOURCE.match(path)
    if route is None:
        raise NotFound(f"No S3 Control job resource at {path}.")
    return JobResource(route.group("job_id"), route.group("action"))


def operation(method: str, resource: JobResource) -> str:
    """Return the operation a method on a job resource calls, or raise MethodNotAllowed."""
    name = ROUTES.get((method, resource.job_id is not None, resource.action))
    if name is None:
        raise MethodNotAllowed(f"{method} is not allowed on this job resource.")
    return name
