"""The S3 Control job API on the wire: rest-xml requests in, XML answers out, for `models.JobStore`.

Requests are parsed and answers rendered from botocore's own model of S3 Control (the same file
every SDK call is serialized from), so element names, `<member>` lists, hyphenated union members
such as `<SSE-S3/>` and timestamp formats are exactly what clients send and expect. The model's
constraints (required members, enums, lengths, patterns, ranges) are checked here too; rules the
model cannot express live in `validation`. Which path and method is which operation is `urls`'s.

The account is the `x-amz-account-id` header; it must be the caller's own account (from the
request's access key), and the Region is the one the request was signed for.

| topic | what the emulator does (AWS does not document it) |
|---|---|
| AccountId other than the caller's account | code `AccessDenied`, HTTP 403 |
| errors | S3 Control's `ErrorResponse` document, with the request id also in `x-amz-request-id` |
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from botocore.model import ListShape, Shape, StructureShape
from botocore.utils import parse_timestamp
from werkzeug.wrappers import Request, Response

from runbook_lib.embedded import moto_state
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.s3control import urls
from runbook_lib.embedded.s3control.exceptions import AccessDenied, InvalidRequest, MalformedXML, S3ControlError
from runbook_lib.embedded.s3control.models import JobStore
from runbook_lib.embedded.utc import iso_millis

__all__ = [
    "NAMESPACE",
    "BatchOperationsApp",
    "error_body",
    "parse_request_body",
    "render_result",
    "validate_value",
]

NAMESPACE = "http://awss3control.amazonaws.com/doc/2018-08-20/"
_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/")
_DEFAULT_REGION = "us-east-1"
_FIELD_LIMIT = 100


@lru_cache(maxsize=1)
def _service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("s3control")


def _input_shape(operation: str) -> StructureShape:
    shape = _service_model().operation_model(operation).input_shape
    assert isinstance(shape, StructureShape)
    return shape


def _output_shape(operation: str) -> StructureShape:
    shape = _service_model().operation_model(operation).output_shape
    assert isinstance(shape, StructureShape)
    return shape


# --------------------------------------------------------------------------- parsing


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_request_body(body: bytes, shape: StructureShape) -> dict[str, Any]:
    """Return a rest-xml request body as botocore's parameter dict (the names boto3 callers use)."""
    if not body.strip():
        raise MalformedXML("The request body is empty; send the XML document the operation takes.")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as error:
        raise MalformedXML(f"The request body is not well-formed XML: {error}") from error
    parsed = _parse(root, shape, "")
    assert isinstance(parsed, dict)
    return parsed


def _parse(element: ElementTree.Element, shape: Shape, path: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        children: dict[str, ElementTree.Element] = {}
        for child in element:
            children.setdefault(_local(child.tag), child)
        parsed: dict[str, Any] = {}
        for name, member in shape.members.items():
            if member.serialization.get("location"):
                continue  # headers, query strings and URI labels are not in the body
            found = children.get(member.serialization.get("name", name))
            if found is not None:
                parsed[name] = _parse(found, member, f"{path}.{name}".lstrip("."))
        return parsed
    if isinstance(shape, ListShape):
        item = shape.member
        item_name = item.serialization.get("name", "member")
        items = (child for child in element if _local(child.tag) == item_name)
        return [_parse(child, item, f"{path}[{i}]") for i, child in enumerate(items)]
    if kind == "map":
        return {
            (entry.findtext(f"{{{NAMESPACE}}}key") or entry.findtext("key") or ""):
            (entry.findtext(f"{{{NAMESPACE}}}value") or entry.findtext("value") or "")
            for entry in element
        }
    return _scalar(element.text or "", kind, path)


def _scalar(text: str, kind: str, path: str) -> Any:
    """Return one XML text value typed as the model says, or raise InvalidRequest naming the member."""
    try:
        if kind == "boolean":
            if text.strip() not in ("true", "false"):
                raise ValueError(text)
            return text.strip() == "true"
        if kind in ("integer", "long"):
            return int(text.strip())
        if kind == "timestamp":
            return parse_timestamp(text.strip())
    except (ValueError, TypeError) as error:
        raise InvalidRequest(f"{path}: {text!r} is not a valid {kind}.") from error
    return text


# --------------------------------------------------------------------------- validation


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    # Python's re has no Unicode property classes; the nearest classes stand in for them.
    translated = pattern.replace(r"\p{L}", r"\w").replace(r"\p{Z}", r"\s").replace(r"\p{N}", r"\d")
    try:
        return re.compile(translated)
    except re.error:
        return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _FIELD_LIMIT else text[:_FIELD_LIMIT] + "..."


def validate_value(value: Any, shape: Shape, path: str) -> list[str]:
    """Return every way `value` breaks the model's constraints for `shape`, as readable sentences."""
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        return _validate_structure(value, shape, path)
    problems: list[str] = []
    metadata = shape.metadata
    if isinstance(shape, ListShape):
        count = len(value)
        if "min" in metadata and count < metadata["min"]:
            problems.append(f"{path} needs at least {metadata['min']} item(s), got {count}")
        if "max" in metadata and count > metadata["max"]:
            problems.append(f"{path} takes at most {metadata['max']} item(s), got {count}")
        for index, item in enumerate(value):
            problems += validate_value(item, shape.member, f"{path}[{index}]")
    elif kind == "string":
        problems += _validate_string(str(value), shape, path)
    elif kind in ("integer", "long"):
        if "min" in metadata and value < metadata["min"]:
            problems.append(f"{path} {value} is below the minimum {metadata['min']}")
        if "max" in metadata and value > metadata["max"]:
            problems.append(f"{path} {value} is above the maximum {metadata['max']}")
    return problems


def _validate_structure(value: dict[str, Any], shape: StructureShape, path: str) -> list[str]:
    problems: list[str] = []
    prefix = f"{path}." if path else ""
    for required in shape.required_members:
        if value.get(required) is None and not shape.members[required].serialization.get("location"):
            problems.append(f"{prefix}{required} is required")
    if shape.is_tagged_union and len(value) != 1:
        choices = ", ".join(shape.members)
        problems.append(f"{path or shape.name} must set exactly one of {choices}; it sets {len(value)}")
    for name, member_value in value.items():
        if member_value is not None and name in shape.members:
            problems += validate_value(member_value, shape.members[name], f"{prefix}{name}")
    return problems


def _validate_string(text: str, shape: Shape, path: str) -> list[str]:
    metadata = shape.metadata
    enum = getattr(shape, "enum", None)
    if enum and text not in enum:
        return [f"{path} {_shown(text)} is not one of {', '.join(enum)}"]
    problems = []
    if "min" in metadata and len(text) < metadata["min"]:
        problems.append(f"{path} {_shown(text)} is shorter than {metadata['min']} character(s)")
    if "max" in metadata and len(text) > metadata["max"]:
        problems.append(f"{path} is longer than {metadata['max']} characters")
    compiled = _pattern(metadata["pattern"]) if "pattern" in metadata else None
    if compiled is not None and text and compiled.fullmatch(text) is None:
        problems.append(f"{path} {_shown(text)} does not match the pattern {metadata['pattern']}")
    return problems


def _check(value: Any, shape: Shape, path: str) -> None:
    problems = validate_value(value, shape, path)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise InvalidRequest(f"The request has {len(problems)} {noun}: " + "; ".join(problems) + ".")


# --------------------------------------------------------------------------- rendering


def _render(value: Any, shape: Shape, name: str) -> str:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        inner = "".join(
            _render(value[member], member_shape, member_shape.serialization.get("name", member))
            for member, member_shape in shape.members.items()
            if value.get(member) is not None
        )
        return f"<{name}>{inner}</{name}>" if inner else f"<{name}/>"
    if isinstance(shape, ListShape):
        item = shape.member
        item_name = item.serialization.get("name", "member")
        return f"<{name}>" + "".join(_render(v, item, item_name) for v in value) + f"</{name}>"
    if kind == "map":
        entries = "".join(
            f"<entry><key>{escape(str(k))}</key><value>{escape(str(v))}</value></entry>" for k, v in value.items())
        return f"<{name}>{entries}</{name}>"
    if kind == "boolean":
        text = "true" if value else "false"
    elif kind == "timestamp":
        text = iso_millis(value if isinstance(value, datetime) else parse_timestamp(str(value)))
    else:
        text = escape(str(value))
    return f"<{name}>{text}</{name}>"


def render_result(operation: str, result: dict[str, Any]) -> bytes:
    """Return an operation's answer as the XML document botocore parses for it."""
    shape = _output_shape(operation)
    root = f"{operation}Result"
    inner = "".join(
        _render(result[name], member, member.serialization.get("name", name))
        for name, member in shape.members.items()
        if result.get(name) is not None
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NAMESPACE}">{inner}</{root}>'.encode()


def error_body(code: str, message: str, request_id: str) -> bytes:
    """Return S3 Control's XML error document."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<ErrorResponse><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{escape(request_id)}</RequestId></ErrorResponse>"
    ).encode()


# --------------------------------------------------------------------------- the WSGI app


def _caller_account(request: Request) -> str | None:
    """Return the account of the request's access key, or None for an unsigned request."""
    match = _CREDENTIAL.search(request.headers.get("Authorization", ""))
    if match is None:
        return None
    return moto_state.access_key_account(match.group("key"))


def _region(request: Request) -> str:
    match = _CREDENTIAL.search(request.headers.get("Authorization", ""))
    return match.group("region") if match else _DEFAULT_REGION


class BatchOperationsApp:
    """WSGI app answering the S3 Control job API from a `JobStore`."""

    def __init__(self, faults: Faults | None = None, store: JobStore | None = None) -> None:
        self.store = store or JobStore(faults)
        self._handlers: dict[str, Callable[[Request, str, str, str], tuple[int, bytes]]] = {
            "CreateJob": self._create_job,
            "ListJobs": self._list_jobs,
            "DescribeJob": self._describe_job,
            "UpdateJobStatus": self._update_job_status,
            "UpdateJobPriority": self._update_job_priority,
            "GetJobTagging": self._get_job_tagging,
            "PutJobTagging": self._put_job_tagging,
            "DeleteJobTagging": self._delete_job_tagging,
        }

    @property
    def operations(self) -> frozenset[str]:
        """Return the operations this app answers (every one `urls.ROUTES` names)."""
        return frozenset(self._handlers)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request_id = uuid.uuid4().hex[:16].upper()
        try:
            status, body = self._dispatch(request)
        except S3ControlError as error:
            status, body = error.status, error_body(error.code, error.message, request_id)
        response = Response(body, status=status, content_type="application/xml")
        response.headers["x-amz-request-id"] = request_id
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> tuple[int, bytes]:
        resource = urls.job_resource(request.path)
        account = self._account(request)
        region = _region(request)
        if resource.job_id is not None:
            _check(resource.job_id, _input_shape("DescribeJob").members["JobId"], "JobId")
        handler = self._handlers[urls.operation(request.method, resource)]
        return handler(request, account, region, resource.job_id or "")

    @staticmethod
    def _account(request: Request) -> str:
        account = request.headers.get("x-amz-account-id", "")
        if not account:
            raise InvalidRequest("Missing required header for this request: x-amz-account-id.")
        _check(account, _input_shape("CreateJob").members["AccountId"], "AccountId")
        caller = _caller_account(request)
        if caller is not None and caller != account:
            raise AccessDenied(
                f"Access Denied: the caller is in account {caller} and cannot manage jobs of account {account}."
            )
        return account

    # ------------------------------------------------------------------ operations

    def _create_job(self, request: Request, account: str, region: str, _: str) -> tuple[int, bytes]:
        shape = _input_shape("CreateJob")
        parsed = parse_request_body(request.get_data(), shape)
        _check(parsed, shape, "")
        job_id = self.store.create_job(account, region, parsed)
        return 200, render_result("CreateJob", {"JobId": job_id})

    def _describe_job(self, _: Request, account: str, region: str, job_id: str) -> tuple[int, bytes]:
        return 200, render_result("DescribeJob", {"Job": self.store.describe_job(account, region, job_id)})

    def _list_jobs(self, request: Request, account: str, region: str, _: str) -> tuple[int, bytes]:
        shape = _input_shape("ListJobs")
        statuses = request.args.getlist("jobStatuses")
        max_results = request.args.get("maxResults")
        token = request.args.get("nextToken")
        parameters: dict[str, Any] = {"JobStatuses": statuses}
        if max_results is not None:
            parameters["MaxResults"] = _scalar(max_results, "integer", "maxResults")
        if token is not None:
            parameters["NextToken"] = token
        _check(parameters, shape, "")
        jobs, next_token = self.store.list_jobs(account, region, statuses, parameters.get("MaxResults"), token)
        return 200, render_result("ListJobs", {"Jobs": jobs, "NextToken": next_token})

    def _update_job_status(self, request: Request, account: str, region: str, job_id: str) -> tuple[int, bytes]:
        parameters: dict[str, Any] = {"JobId": job_id, "RequestedJobStatus": request.args.get("requestedJobStatus")}
        reason = request.args.get("statusUpdateReason")
        if reason is not None:
            parameters["StatusUpdateReason"] = reason
        _check(parameters, _input_shape("UpdateJobStatus"), "")
        answer = self.store.update_job_status(account, region, job_id, parameters["RequestedJobStatus"], reason)
        return 200, render_result("UpdateJobStatus", answer)

    def _update_job_priority(self, request: Request, account: str, region: str, job_id: str) -> tuple[int, bytes]:
        raw = request.args.get("priority")
        parameters: dict[str, Any] = {"JobId": job_id}
        if raw is not None:
            parameters["Priority"] = _scalar(raw, "integer", "priority")
        _check(parameters, _input_shape("UpdateJobPriority"), "")
        answer = self.store.update_job_priority(account, region, job_id, parameters["Priority"])
        return 200, render_result("UpdateJobPriority", answer)

    def _get_job_tagging(self, _: Request, account: str, region: str, job_id: str) -> tuple[int, bytes]:
        return 200, render_result("GetJobTagging", {"Tags": self.store.job_tagging(account, region, job_id)})

    def _put_job_tagging(self, request: Request, account: str, region: str, job_id: str) -> tuple[int, bytes]:
        shape = _input_shape("PutJobTagging")
        parsed = parse_request_body(request.get_data(), shape)
        _check(parsed, shape, "")
        self.store.put_job_tagging(account, region, job_id, parsed["Tags"])
        return 200, render_result("PutJobTagging", {})

    def _delete_job_tagging(self, _: Request, account: str, region: str, job_id: str) -> tuple[int, bytes]:
        self.store.put_job_tagging(account, region, job_id, [])
        return 200, render_result("DeleteJobTagging", {})
