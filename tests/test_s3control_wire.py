"""The job API's routes, errors and shared helpers, each tested alone: no server, no moto state."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from runbook_lib.embedded import moto_state
from runbook_lib.embedded.s3control import urls
from runbook_lib.embedded.s3control.exceptions import MethodNotAllowed, NotFound, S3ControlError
from runbook_lib.embedded.s3control.models import JobStore
from runbook_lib.embedded.s3control.responses import BatchOperationsApp
from runbook_lib.embedded.utc import as_utc, iso_millis


def test_every_route_has_a_handler_and_every_handler_a_route() -> None:
    app = BatchOperationsApp(store=JobStore())
    assert set(urls.ROUTES.values()) == app.operations


@pytest.mark.parametrize(("method", "path", "operation"), [
    ("POST", "/v20180820/jobs", "CreateJob"),
    ("GET", "/v20180820/jobs", "ListJobs"),
    ("GET", "/v20180820/jobs/abc", "DescribeJob"),
    ("POST", "/v20180820/jobs/abc/status", "UpdateJobStatus"),
    ("POST", "/v20180820/jobs/abc/priority", "UpdateJobPriority"),
    ("GET", "/v20180820/jobs/abc/tagging", "GetJobTagging"),
    ("PUT", "/v20180820/jobs/abc/tagging", "PutJobTagging"),
    ("DELETE", "/v20180820/jobs/abc/tagging", "DeleteJobTagging"),
])
def test_each_path_and_method_names_one_operation(method: str, path: str, operation: str) -> None:
    assert urls.is_jobs_path(path)
    assert urls.operation(method, urls.job_resource(path)) == operation


@pytest.mark.parametrize("path", ["/v20180820/configuration/publicAccessBlock", "/v20180820/jobsx", "/bucket/key"])
def test_other_s3_control_paths_are_left_to_moto(path: str) -> None:
    assert not urls.is_jobs_path(path)


def test_a_path_naming_no_job_resource_is_not_found() -> None:
    with pytest.raises(NotFound) as raised:
        urls.job_resource("/v20180820/jobs/abc/unknown")
    assert (raised.value.code, raised.value.status) == ("NotFoundException", 404)


def test_a_method_the_resource_does_not_take_is_not_allowed() -> None:
    with pytest.raises(MethodNotAllowed) as raised:
        urls.operation("DELETE", urls.job_resource("/v20180820/jobs/abc"))
    assert isinstance(raised.value, S3ControlError)
    assert (raised.value.code, raised.value.status) == ("MethodNotAllowed", 405)


@pytest.mark.parametrize("stored", [
    '{"Version": "2012-10-17", "Statement": []}',
    quote('{"Version": "2012-10-17", "Statement": []}'),
    b'{"Version": "2012-10-17", "Statement": []}',
    {"Version": "2012-10-17", "Statement": []},
], ids=["json", "url-encoded", "bytes", "dict"])
def test_a_stored_policy_reads_the_same_in_every_form_moto_keeps(stored: object) -> None:
    assert moto_state.policy_document(stored) == {"Version": "2012-10-17", "Statement": []}


@pytest.mark.parametrize("stored", [None, "", "not json", "[1, 2]", b"\x00"])
def test_anything_but_a_json_object_is_no_policy(stored: object) -> None:
    assert moto_state.policy_document(stored) is None


def test_a_naive_moment_is_utc_whatever_the_local_zone() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5, 678_900)
    aware = naive.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=5)))
    assert as_utc(naive) == as_utc(aware) == naive.replace(tzinfo=timezone.utc)
    assert iso_millis(naive) == iso_millis(aware) == "2026-01-02T03:04:05.678Z"
