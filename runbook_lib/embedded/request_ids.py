"""Request ids as AWS sends them, on every answer of the embedded backend, and a log of the requests served.

AWS gives every request an id, which CloudTrail records and which a caller's own record of its
calls (the run folder's call log) must match. moto sends `x-amzn-RequestId` for every service,
S3 included, where S3 sends `x-amz-request-id` (16 hexadecimal characters) and `x-amz-id-2` (an
extended id in base64), and botocore reads `x-amzn-RequestId` first. So, for requests signed for
S3 (S3 Control included):

| moto sends | the backend answers |
|---|---|
| `x-amzn-RequestId` | removed: S3 does not send it |
| no `x-amz-request-id` | one, 16 upper-case hexadecimal characters |
| no `x-amz-id-2` | one, 64 base64 characters |
| an error document whose `<RequestId>` / `<HostId>` differ | the same ids as the headers |

Other services get a UUID in `x-amzn-RequestId`, as AWS sends them, in place of moto's random
52-character id, in the header and wherever the document repeats it. The formats follow what
AWS's answers show; AWS does not document them (a choice, not a fact).

`RequestLog` keeps, for tests and drills that ask for it, one entry per request answered: time,
method, path, service and Region from the signature's credential scope (never the access key,
the signature or a token), the operation where the request names it (`X-Amz-Target` of JSON
services, `Action` of query services; S3 and the other REST services name it by method and
path), status, the request ids sent, and the User-Agent.
"""

from __future__ import annotations

import base64
import io
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote

__all__ = [
    "RequestLog",
    "ServedRequest",
    "with_request_ids",
]

_S3_SCOPE = "/s3/aws4_request"
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)/aws4_request")
_AMZN_REQUEST_ID = "x-amzn-requestid"
_S3_REQUEST_ID = "x-amz-request-id"
_S3_EXTENDED_ID = "x-amz-id-2"
# Request ids only need to be unique, not secret: a seeded generator costs a fraction of os.urandom per request.
_IDS = random.Random()


@dataclass(frozen=True)
class ServedRequest:
    """One request the backend answered, as the request log keeps it."""

    time: str
    method: str
    path: str
    service: str
    region: str
    status: int
    request_id: str
    extended_request_id: str
    user_agent: str
    operation: str = ""  # named by JSON and query requests; "" for REST ones (S3: method and path)


@dataclass
class RequestLog:
    """The requests the backend answered, in the order their answers started."""

    entries: list[ServedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entry: ServedRequest) -> None:
        """Keep one served request."""
        with self._lock:
            self.entries.append(entry)

    def served(self) -> list[ServedRequest]:
        """Return a copy of the entries so far."""
        with self._lock:
            return list(self.entries)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self.entries.clear()


def with_request_ids(
    app: Callable[..., Iterable[bytes]], environ: dict[str, Any], start_response: Callable[..., Any],
    log: RequestLog | None = None,
) -> Iterable[bytes]:
    """Return `app`'s answer to the request with AWS's request-id headers, recorded in `log` when given."""
    # A signed header, or a presigned URL's query string (whose slashes are escaped).
    signature = str(environ.get("HTTP_AUTHORIZATION", "")) or unquote(str(environ.get("QUERY_STRING", "")))
    scope = _SCOPE.search(signature.replace("X-Amz-Credential=", "Credential="))
    is_s3 = _S3_SCOPE in signature
    operation = _operation(environ) if log is not None and not is_s3 else ""
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        captured.update(status=status, headers=headers, exc_info=exc_info)
        return _no_write

    answer = app(environ, capture)
    status = str(captured.get("status", "500 Internal Server Error"))
    headers = list(captured.get("headers", []))
    body: Iterable[bytes] = answer
    if is_s3:
        headers, request_id, extended_id = _s3_ids(headers)
        if int(status.split(" ", 1)[0]) >= 300:
            body, headers = _error_document_ids(answer, headers, request_id, extended_id)
    else:
        body, headers, request_id = _other_ids(answer, headers)
        extended_id = ""
    if log is not None:
        log.add(ServedRequest(
            time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            method=str(environ.get("REQUEST_METHOD", "")),
            path=str(environ.get("PATH_INFO", "")),
            service=scope.group("service") if scope else "",
            region=scope.group("region") if scope else "",
            status=int(status.split(" ", 1)[0]),
            request_id=request_id,
            extended_request_id=extended_id,
            user_agent=str(environ.get("HTTP_USER_AGENT", "")),
            operation=operation,
        ))
    start_response(status, headers, captured.get("exc_info"))
    return body


def _operation(environ: dict[str, Any]) -> str:
    """Return the operation a JSON or query request names ("" for REST requests), leaving its body readable."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        return target.rpartition(".")[2]
    if not str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        return ""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)  # the app reads the same bytes after us
    return str(parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0])


def _no_write(data: bytes) -> None:
    raise RuntimeError("the embedded backend's apps return their bodies; they never call write()")


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return next((value for key, value in headers if key.lower() == name), "")


def _s3_ids(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str, str]:
    """Return S3's headers: x-amz-request-id and x-amz-id-2 (kept or added), no x-amzn-RequestId."""
    request_id = _header(headers, _S3_REQUEST_ID) or _IDS.randbytes(8).hex().upper()
    extended_id = _header(headers, _S3_EXTENDED_ID) or base64.b64encode(_IDS.randbytes(48)).decode()
    kept = [(k, v) for k, v in headers if k.lower() not in (_AMZN_REQUEST_ID, _S3_REQUEST_ID, _S3_EXTENDED_ID)]
    return [*kept, (_S3_REQUEST_ID, request_id), (_S3_EXTENDED_ID, extended_id)], request_id, extended_id


def _other_ids(
    answer: Iterable[bytes], headers: list[tuple[str, str]]
) -> tuple[list[bytes], list[tuple[str, str]], str]:
    """Return another service's answer with a UUID request id, in x-amzn-RequestId and wherever moto's id stood.

    moto writes a random 52-character id into the header and the document's RequestId; AWS's are
    UUIDs. These answers are small documents, so they are read whole.
    """
    document = _read(answer)
    request_id = str(uuid.uuid4())
    moto_id = _header(headers, _AMZN_REQUEST_ID)
    if moto_id:
        document = document.replace(moto_id.encode(), request_id.encode())
    kept = [(k, v) for k, v in headers if k.lower() not in (_AMZN_REQUEST_ID, "content-length")]
    return [document], [*kept, ("x-amzn-RequestId", request_id), ("Content-Length", str(len(document)))], request_id


def _read(answer: Iterable[bytes]) -> bytes:
    """Return a WSGI answer's body whole, closing it as a server would."""
    try:
        return b"".join(answer)
    finally:
        close = getattr(answer, "close", None)
        if close is not None:
            close()


_REQUEST_ID_ELEMENT = re.compile(rb"<RequestId>[^<]*</RequestId>")
_HOST_ID_ELEMENT = re.compile(rb"<HostId>[^<]*</HostId>")


def _error_document_ids(
    answer: Iterable[bytes], headers: list[tuple[str, str]], request_id: str, extended_id: str
) -> tuple[list[bytes], list[tuple[str, str]]]:
    """Return an S3 error document naming the same ids as the headers, and headers with its new length."""
    document = _read(answer)
    document = _REQUEST_ID_ELEMENT.sub(f"<RequestId>{request_id}</RequestId>".encode(), document)
    document = _HOST_ID_ELEMENT.sub(f"<HostId>{extended_id}</HostId>".encode(), document)
    sized = [(k, v) for k, v in headers if k.lower() != "content-length"]
    return [document], [*sized, ("Content-Length", str(len(document)))]
