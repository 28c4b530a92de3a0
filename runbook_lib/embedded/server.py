"""The embedded AWS: moto's server app behind our middleware, on 127.0.0.1, in a background thread.

The middleware sends S3 Batch Operations job calls to `s3control` and IAM Access Analyzer's
policy checks to `access_analyzer`, which moto does not serve, and everything else to moto.

It is reached exactly like AWS: `start_backend()` writes an AWS config file whose profiles point
their `endpoint_url` at it, and the vault and recovery profiles assume roles in two accounts.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_lib import aws_facts
from runbook_lib.embedded import heap, state_changes
from runbook_lib.embedded.access_analyzer import urls as analyzer_urls
from runbook_lib.embedded.athena import urls as athena_urls
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.moto_state import PARTITION
from runbook_lib.embedded.request_ids import RequestLog, ServedRequest, with_request_ids
from runbook_lib.embedded.s3control import urls
from runbook_lib.errors import BackendError

__all__ = [
    "BASE_PROFILE",
    "OPERATOR_ACCOUNT",
    "RECOVERY_ACCOUNT",
    "RECOVERY_PROFILE",
    "VAULT_ACCOUNT",
    "VAULT_PROFILE",
    "EmbeddedBackend",
    "Faults",  # re-exported: its home is runbook_lib.embedded.faults
    "start_backend",
    "write_aws_config",
]

VAULT_ACCOUNT = "111111111111"
RECOVERY_ACCOUNT = "222222222222"
# moto maps unknown access keys to this account: the operator's own identity before assuming roles.
OPERATOR_ACCOUNT = "123456789012"
BASE_PROFILE = "drill-operator"
VAULT_PROFILE = "drill-vault"
RECOVERY_PROFILE = "drill-recovery"
OPERATOR_ROLE = "drill-operator"
REGION = "us-east-1"

log = logging.getLogger(__name__)


_READ_METHODS = frozenset({"GET", "HEAD"})

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>embedded</RequestId></Error>"
)


class BackendApp:
    """WSGI middleware: Batch Operations jobs, Athena queries and Access Analyzer to our emulators, the rest to moto."""

    def __init__(
        self, moto_app: Callable[..., Any], faults: Faults, jobs_app: Callable[..., Any] | None,
        athena_app: Callable[..., Any] | None = None, analyzer_app: Callable[..., Any] | None = None,
    ) -> None:
        self.moto_app = moto_app
        self.jobs_app = jobs_app
        self.athena_app = athena_app
        self.analyzer_app = analyzer_app
        self.faults = faults
        self._random = random.Random(faults.seed)
        self._random_lock = threading.Lock()
        # Every request answered, when someone asked for the record (start_backend(record_requests=True)).
        self.request_log: RequestLog | None = None

    def _draw(self) -> float:
        with self._random_lock:
            return self._random.random()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # A request that may change state is counted before and after it is served, so a job that read
        # state meanwhile reads it again (see state_changes).
        changes = environ.get("REQUEST_METHOD") not in _READ_METHODS
        if changes:
            state_changes.note_change()
        try:
            # Every answer, a throttled one included, carries the request ids AWS would send.
            return with_request_ids(self._answer, environ, start_response, self.request_log)
        finally:
            if changes:
                state_changes.note_change()

    def _answer(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000.0)
        path = environ.get("PATH_INFO", "")
        throttled = self.faults.throttle_rate and not path.startswith("/moto-api") and self._is_s3(environ)
        if throttled and self._draw() < self.faults.throttle_rate:
            start_response("503 Slow Down", [("Content-Type", "application/xml")])
            return [_SLOW_DOWN]
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            self.reset_jobs()
        target = self.jobs_app if urls.is_jobs_path(path) and self.jobs_app is not None else self.moto_app
        if self.athena_app is not None and athena_urls.is_athena_query_call(environ):
            target = self.athena_app
        if self.analyzer_app is not None and analyzer_urls.is_access_analyzer_request(environ):
            target = self.analyzer_app
        answer: Iterable[bytes] = target(environ, start_response)
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            heap.release()  # moto dropped every account's state: let the collector have it
        return answer

    def reset_jobs(self) -> None:
        """Forget every Batch Operations job, as moto forgets everything else on a reset."""
        store = getattr(self.jobs_app, "store", None)
        if store is not None:
            store.forget_all()
        forget = getattr(self.athena_app, "forget_all", None)
        if forget is not None:
            forget()

    @staticmethod
    def _is_s3(environ: dict[str, Any]) -> bool:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        return "/s3/aws4_request" in auth


@dataclass
class EmbeddedBackend:
    """A running embedded backend: where it listens, its AWS config file, and how to stop it."""

    host: str
    port: int
    config_file: Path
    faults: Faults
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    app: BackendApp = field(repr=False)
    _own_config_dir: Path | None = field(default=None, repr=False)
    inventory: Any = field(default=None, repr=False)  # the InventoryScheduler delivering S3 Inventory reports

    @property
    def endpoint(self) -> str:
        """Return the URL clients use as endpoint_url."""
        return f"http://{self.host}:{self.port}"

    def served_requests(self) -> list[ServedRequest]:
        """Return every request answered so far (started with record_requests=True; else none)."""
        return self.app.request_log.served() if self.app.request_log is not None else []

    def environ(self) -> dict[str, str]:
        """Return the environment a client process needs to reach this backend."""
        return {
            "AWS_CONFIG_FILE": str(self.config_file),
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def reset(self) -> None:
        """Forget every account's state and every job: a fresh, empty AWS (moto keeps its state per process)."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def deliver_inventory(self, bucket: str, config_id: str) -> Any:
        """Deliver one S3 Inventory report of `bucket` for that configuration now, as S3 does daily."""
        from runbook_lib.embedded import inventory

        return inventory.deliver(bucket, config_id)

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self.inventory is not None:
            self.inventory.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        if self._own_config_dir is not None:
            shutil.rmtree(self._own_config_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


SERVICES_SECTION = "runbook-embedded"
# botocore's S3 Control endpoint rules put the account id in front of every endpoint's authority,
# a custom one included: `http://127.0.0.1:PORT` would become the unresolvable host
# `111111111111.127.0.0.1`. Giving S3 Control an endpoint with a user-info part makes that label
# land in the user-info instead (`111111111111.s3control@127.0.0.1:PORT`), which HTTP clients send
# nowhere, so every AWS CLI and SDK that reads `[services]` sections reaches the backend unchanged.
S3_CONTROL_USERINFO = "s3control"


def write_aws_config(path: Path, endpoint: str, region: str = REGION) -> Path:
    """Write an AWS config file whose profiles reach the backend at `endpoint` as two accounts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The AWS CLI caches assumed-role credentials on disk by role and session name; a restarted
    # backend does not know them and moto would treat their caller as its default account.
    session_name = f"vault-recovery-{secrets.token_hex(4)}"
    scheme, _, authority = endpoint.partition("://")
    common = (
        f"region = {region}\n"
        f"endpoint_url = {endpoint}\n"
        f"services = {SERVICES_SECTION}\n"
        "s3 =\n    addressing_style = path\n"
        "retry_mode = standard\n"
    )
    text = (
        "# Written by the runbook's embedded backend. Profiles reach it like AWS accounts:\n"
        f"# {VAULT_PROFILE} is account {VAULT_ACCOUNT}, {RECOVERY_PROFILE} is account {RECOVERY_ACCOUNT}.\n"
        f"[profile {BASE_PROFILE}]\n"
        "aws_access_key_id = embedded-operator\n"
        "aws_secret_access_key = embedded-operator-secret\n"
        f"{common}\n"
        f"[profile {VAULT_PROFILE}]\n"
        f"role_arn = {aws_facts.iam_role_arn(VAULT_ACCOUNT, OPERATOR_ROLE, PARTITION)}\n"
        f"source_profile = {BASE_PROFILE}\n"
        f"role_session_name = {session_name}\n"
        f"{common}\n"
        f"[profile {RECOVERY_PROFILE}]\n"
        f"role_arn = {aws_facts.iam_role_arn(RECOVERY_ACCOUNT, OPERATOR_ROLE, PARTITION)}\n"
        f"source_profile = {BASE_PROFILE}\n"
        f"role_session_name = {session_name}\n"
        f"{common}\n"
        "# S3 Control's endpoint carries a user-info part: the account id the AWS SDKs put in front\n"
        "# of its host lands there, and the request still reaches this backend.\n"
        f"[services {SERVICES_SECTION}]\n"
        "s3_control =\n"
        f"    endpoint_url = {scheme}://{S3_CONTROL_USERINFO}@{authority}\n"
    )
    path.write_text(text)
    return path


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server itself does: connections of a stopped backend lingering in TIME_WAIT
        # must not block a restart, while a live listener still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def start_backend(
    port: int = 0,
    config_file: Path | str | None = None,
    faults: Faults | None = None,
    host: str = "127.0.0.1",
    inventory_every: float | None = None,
    record_requests: bool = False,
    restore_seconds: float | None = None,
) -> EmbeddedBackend:
    """Start the embedded backend in a background thread and return a handle to it.

    S3 Inventory reports are delivered for each enabled configuration when it is put or changed,
    and again every `inventory_every` seconds when that is given (AWS: daily or weekly).
    With `record_requests`, it keeps a log of every request it answers (`served_requests`).
    `restore_seconds` sets how long restoring an archived version takes (default 1 s, see `restore`).
    """
    if host not in ("127.0.0.1", "localhost"):
        raise BackendError(f"the embedded backend listens on 127.0.0.1 only, not {host!r}")
    if port and not _port_is_free(host, port):
        raise BackendError(
            f"port {port} on {host} is in use; stop what listens there or choose another port "
            "(--port 0 picks a free one)"
        )
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """Keep per-request lines out of drills' output."""

    from runbook_lib.embedded import patches

    patches.apply_all()
    if restore_seconds is not None:
        from runbook_lib.embedded import restore

        restore.configure(restore_seconds)
    from runbook_lib.embedded.access_analyzer.responses import AccessAnalyzerApp
    from runbook_lib.embedded.athena.responses import AthenaApp
    from runbook_lib.embedded.s3control.responses import BatchOperationsApp

    faults = faults or Faults()
    app = BackendApp(_dispatcher(DomainDispatcherApplication)(create_backend_app), faults,
                     BatchOperationsApp(faults), AthenaApp(), AccessAnalyzerApp())
    app.request_log = RequestLog() if record_requests else None
    try:
        server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
    except OSError as error:
        raise BackendError(f"cannot listen on {host}:{port}: {error}") from error
    thread = threading.Thread(target=server.serve_forever, name="embedded-aws", daemon=True)
    thread.start()
    actual_port = server.server_port
    # Absolute, because clients (kernels, the AWS CLI) may run in another working directory.
    config_path = (Path(config_file) if config_file else _default_config_path(actual_port)).resolve()
    write_aws_config(config_path, f"http://{host}:{actual_port}")
    from runbook_lib.embedded.inventory import InventoryScheduler

    scheduler = InventoryScheduler(every=inventory_every)
    scheduler.start()
    own_dir = None if config_file else config_path.parent
    backend = EmbeddedBackend(host, actual_port, config_path, faults, server, thread, app, own_dir, scheduler)
    log.info("embedded AWS listening on %s (config %s)", backend.endpoint, config_path)
    return backend


def _dispatcher(base: type[Any]) -> type[Any]:
    """Return moto's host dispatcher with each host's service remembered once found.

    moto finds a request's service by listing its own package folder on disk, under a lock every
    request waits for; at a few hundred requests a second that listing was most of the server's time.
    Which service a host name belongs to never changes while the server runs, so it is looked up once.
    """

    class RememberingDispatcher(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._services: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            if host not in self._services:
                self._services[host] = super().get_backend_for_host(host)
            return self._services[host]

    return RememberingDispatcher


def _default_config_path(port: int) -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / f"runbook-embedded-{port}" / "aws-config"
