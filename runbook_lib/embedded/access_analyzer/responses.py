"""Access Analyzer's policy checks on the wire: rest-json requests in, JSON answers out.

Requests are checked against botocore's own model of the service (required members, enums,
list lengths), so a call the SDK would send to AWS is accepted here and a malformed one gets the
error AWS gives: `ValidationException` (400) with the field, as a JSON document and the
`x-amzn-ErrorType` header botocore reads. ValidatePolicy pages its findings by `maxResults` and
`nextToken` like AWS; the token is the position of the next finding (a choice: AWS's tokens
are opaque).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from botocore.model import ListShape, Shape, StructureShape
from werkzeug.wrappers import Request, Response

from runbook_lib.embedded.access_analyzer import access_checks, urls
from runbook_lib.embedded.access_analyzer.exceptions import AccessAnalyzerError, ValidationException
from runbook_lib.embedded.access_analyzer.validation import validate_policy

__all__ = ["AccessAnalyzerApp", "check_request"]


@lru_cache(maxsize=1)
def _service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("accessanalyzer")


def _check(value: Any, shape: Shape, name: str) -> None:
    """Raise ValidationException when a value breaks its shape's type, enum, required members or length."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            raise ValidationException(f"{name} must be an object.", name)
        for required in shape.required_members:
            if value.get(required) is None:
                raise ValidationException(f"{required} is required.", required)
        for member, member_shape in shape.members.items():
            if member in value and not member_shape.serialization.get("location"):
                _check(value[member], member_shape, member)
        return
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            raise ValidationException(f"{name} must be a list.", name)
        _check_length(len(value), shape, name)
        for item in value:
            _check(item, shape.member, name)
        return
    if kind == "string":
        if not isinstance(value, str):
            raise ValidationException(f"{name} must be a string.", name)
        allowed = shape.metadata.get("enum")
        if allowed and value not in allowed:
            raise ValidationException(f"{name} must be one of {', '.join(allowed)}, not {value!r}.", name)
        _check_length(len(value), shape, name)


def _check_length(length: int, shape: Shape, name: str) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and length < low) or (high is not None and length > high):
        raise ValidationException(f"{name} must have between {low} and {high} elements.", name)


def check_request(operation: str, body: dict[str, Any]) -> None:
    """Raise ValidationException when a request body breaks botocore's model of the operation's input."""
    shape = _service_model().operation_model(operation).input_shape
    _check(body, shape, operation)


def _validate(body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    findings = validate_policy(body["policyDocument"], body["policyType"], body.get("validatePolicyResourceType"))
    start = int(query.get("nextToken") or 0)
    size = int(query.get("maxResults") or len(findings) or 1)
    answer: dict[str, Any] = {"findings": findings[start:start + size]}
    if start + size < len(findings):
        answer["nextToken"] = str(start + size)
    return answer


def _no_new_access(body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    new = access_checks.parse_policy(body["newPolicyDocument"], "newPolicyDocument")
    existing = access_checks.parse_policy(body["existingPolicyDocument"], "existingPolicyDocument")
    return access_checks.check_no_new_access(new, existing)


def _access_not_granted(body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    document = access_checks.parse_policy(body["policyDocument"], "policyDocument")
    access = body["access"][0] if body["access"] else {}
    if not access.get("actions") and not access.get("resources"):
        raise ValidationException("access must name actions, resources, or both.", "access")
    return access_checks.check_access_not_granted(document, list(access.get("actions", [])),
                                                   list(access.get("resources", [])))


_HANDLERS: dict[str, Callable[[dict[str, Any], dict[str, str]], dict[str, Any]]] = {
    "ValidatePolicy": _validate,
    "CheckNoNewAccess": _no_new_access,
    "CheckAccessNotGranted": _access_not_granted,
}


class AccessAnalyzerApp:
    """The WSGI app the server's middleware sends Access Analyzer requests to."""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = Response(json.dumps(self.answer(request)), status=200, content_type="application/json")
        except AccessAnalyzerError as error:
            response = Response(json.dumps(error.body()), status=error.status, content_type="application/json",
                                headers={"x-amzn-ErrorType": error.code})
        answer: Iterable[bytes] = response(environ, start_response)
        return answer

    @staticmethod
    def answer(request: Request) -> dict[str, Any]:
        """Return the answer document of one request, or raise the API's error."""
        operation = urls.ROUTES.get((request.method, request.path))
        if operation is None:
            raise AccessAnalyzerError("ResourceNotFoundException",
                                      f"The embedded backend serves no Access Analyzer call at {request.method} "
                                      f"{request.path}.", 404)
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError as error:
            raise ValidationException(f"The request body is not JSON: {error}.") from error
        check_request(operation, body)
        return _HANDLERS[operation](body, dict(request.args))
