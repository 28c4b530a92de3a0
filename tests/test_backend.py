"""The embedded backend: where it listens, the AWS config file it writes, and the faults it injects."""

from __future__ import annotations

import configparser
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.server import (
    BASE_PROFILE,
    OPERATOR_ACCOUNT,
    RECOVERY_ACCOUNT,
    RECOVERY_PROFILE,
    VAULT_ACCOUNT,
    VAULT_PROFILE,
    EmbeddedBackend,
    start_backend,
)
from runbook_lib.errors import BackendError


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    """One backend for the tests that only talk to it."""
    with start_backend(config_file=tmp_path_factory.mktemp("backend") / "aws-config") as running:
        yield running


def use_config(monkeypatch: pytest.MonkeyPatch, running: EmbeddedBackend) -> None:
    """Point boto3 at the backend's config file, as a drill's environment does."""
    for name, value in running.environ().items():
        monkeypatch.setenv(name, value)


def plain_s3(running: EmbeddedBackend, attempts: int = 1) -> Any:
    """Return an S3 client with static keys (the operator's account) making `attempts` tries at most."""
    return boto3.client(
        "s3", endpoint_url=running.endpoint, region_name="us-east-1",
        aws_access_key_id="backend-tests", aws_secret_access_key="backend-tests",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )


def http10_request(port: int) -> None:
    """Send one HTTP/1.0 request and read to the end, so the server closes the connection first."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        while connection.recv(65536):
            pass


def is_listening(host: str, port: int) -> bool:
    """Return whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------- listening


def test_stop_releases_the_port_for_a_new_backend(tmp_path: Path) -> None:
    first = start_backend(config_file=tmp_path / "first")
    port = first.port
    # Connections the server closed itself linger in TIME_WAIT; they must not block a restart.
    for _ in range(3):
        http10_request(port)
    first.stop()
    assert not is_listening("127.0.0.1", port)

    with start_backend(port=port, config_file=tmp_path / "second") as second:
        assert second.port == port
        assert "Buckets" in plain_s3(second).list_buckets()


def test_a_port_in_use_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        with pytest.raises(BackendError) as raised:
            start_backend(port=port, config_file=tmp_path / "aws-config")
    message = str(raised.value)
    assert f"port {port}" in message
    assert "--port 0" in message
    assert not (tmp_path / "aws-config").exists()


def test_port_zero_picks_a_free_port_each_time(tmp_path: Path) -> None:
    with start_backend(port=0, config_file=tmp_path / "a") as first, \
            start_backend(port=0, config_file=tmp_path / "b") as second:
        assert first.port != 0 and second.port != 0
        assert first.port != second.port
        assert first.endpoint == f"http://127.0.0.1:{first.port}"
        assert is_listening("127.0.0.1", first.port) and is_listening("127.0.0.1", second.port)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.10.20", "example.com"])
def test_other_hosts_are_refused(host: str, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"127\.0\.0\.1 only"):
        start_backend(host=host, config_file=tmp_path / "aws-config")


def test_listens_on_the_loopback_address_only(backend: EmbeddedBackend) -> None:
    assert backend.host == "127.0.0.1"
    assert is_listening("127.0.0.1", backend.port)
    # 127.0.0.2 is loopback too: a server bound to every address would accept there.
    assert not is_listening("127.0.0.2", backend.port)


# ------------------------------------------------------------------------- the config file


def test_config_file_defines_the_drill_profiles(backend: EmbeddedBackend) -> None:
    config = configparser.ConfigParser()
    config.read(backend.config_file)
    profiles = [f"profile {name}" for name in (BASE_PROFILE, VAULT_PROFILE, RECOVERY_PROFILE)]
    assert [section for section in config.sections() if section.startswith("profile ")] == profiles
    for section in profiles:
        assert config[section]["endpoint_url"] == backend.endpoint
        assert config[section]["region"] == "us-east-1"
    for profile, account in ((VAULT_PROFILE, VAULT_ACCOUNT), (RECOVERY_PROFILE, RECOVERY_ACCOUNT)):
        section = config[f"profile {profile}"]
        assert section["role_arn"].startswith(f"arn:aws:iam::{account}:role/")
        assert section["source_profile"] == BASE_PROFILE
        assert "aws_access_key_id" not in section
    assert backend.environ()["AWS_CONFIG_FILE"] == str(backend.config_file)


@pytest.mark.parametrize(
    ("profile", "account"),
    [(VAULT_PROFILE, VAULT_ACCOUNT), (RECOVERY_PROFILE, RECOVERY_ACCOUNT), (BASE_PROFILE, OPERATOR_ACCOUNT)],
)
def test_each_profile_reaches_its_account(
    profile: str, account: str, backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(monkeypatch, backend)
    identity = boto3.Session(profile_name=profile).client("sts").get_caller_identity()
    assert identity["Account"] == account
    if profile != BASE_PROFILE:
        assert identity["Arn"].startswith(f"arn:aws:sts::{account}:assumed-role/")


def test_the_two_accounts_see_only_their_own_buckets(
    backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(monkeypatch, backend)
    vault = boto3.Session(profile_name=VAULT_PROFILE).client("s3")
    recovery = boto3.Session(profile_name=RECOVERY_PROFILE).client("s3")
    bucket = f"isolation-{uuid.uuid4().hex[:12]}"
    vault.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in vault.list_buckets()["Buckets"]]
    assert bucket not in [b["Name"] for b in recovery.list_buckets()["Buckets"]]


# ----------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("attempts", [1, 2])
def test_throttling_answers_s3_with_slow_down(attempts: int, tmp_path: Path) -> None:
    with start_backend(config_file=tmp_path / "aws-config", faults=Faults(throttle_rate=1.0)) as throttled:
        with pytest.raises(ClientError) as raised:
            plain_s3(throttled, attempts=attempts).list_buckets()
        sts = boto3.client(
            "sts", endpoint_url=throttled.endpoint, region_name="us-east-1",
            aws_access_key_id="backend-tests", aws_secret_access_key="backend-tests",
        )
        # Only S3 is throttled, as on AWS: the identity check still answers.
        assert sts.get_caller_identity()["Account"] == OPERATOR_ACCOUNT
    error = raised.value.response
    assert error["Error"]["Code"] == "SlowDown"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error["ResponseMetadata"]["RetryAttempts"] == attempts - 1


def fastest_call_seconds(s3: Any, calls: int = 3) -> float:
    """Return the fastest of a few list_buckets round trips, which is robust to a busy machine."""
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        s3.list_buckets()
        timings.append(time.perf_counter() - started)
    return min(timings)


def test_latency_is_added_to_every_request(backend: EmbeddedBackend, tmp_path: Path) -> None:
    plain = fastest_call_seconds(plain_s3(backend))
    with start_backend(config_file=tmp_path / "aws-config", faults=Faults(latency_ms=150)) as slow:
        delayed = fastest_call_seconds(plain_s3(slow))
    assert delayed >= 0.150
    assert delayed / plain > 3


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"task_failure_rate": -0.1}, "task_failure_rate"),
        ({"task_failure_rate": 1.5}, "task_failure_rate"),
        ({"throttle_rate": 2.0}, "throttle_rate"),
        ({"throttle_rate": -1.0}, "throttle_rate"),
        ({"latency_ms": -5.0}, "latency_ms"),
    ],
)
def test_invalid_faults_name_the_field(arguments: dict[str, float], field: str) -> None:
    with pytest.raises(BackendError, match=field):
        Faults(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "arguments",
    [{}, {"task_failure_rate": 0.0, "throttle_rate": 1.0}, {"task_failure_rate": 1.0, "latency_ms": 0.0}],
)
def test_valid_faults_are_accepted(arguments: dict[str, float]) -> None:
    faults = Faults(**arguments)  # type: ignore[arg-type]
    for name, value in arguments.items():
        assert getattr(faults, name) == value


def test_a_moto_reset_also_forgets_the_batch_jobs() -> None:
    from runbook_lib.embedded.server import BackendApp

    forgotten: list[bool] = []

    class Store:
        def forget_all(self) -> None:
            forgotten.append(True)

    class Jobs:
        store = Store()

        def __call__(self, environ: object, start_response: object) -> list[bytes]:
            return [b""]

    app = BackendApp(lambda environ, start_response: [b"moto"], Faults(), Jobs())
    answer = app({"PATH_INFO": "/moto-api/reset", "REQUEST_METHOD": "POST"}, lambda *args: None)

    assert forgotten == [True]
    assert list(answer) == [b"moto"]  # the reset itself still reaches moto


def test_a_relative_config_file_is_written_and_announced_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runbook_lib.embedded.server import start_backend

    monkeypatch.chdir(tmp_path)
    with start_backend(config_file="relative/aws-config") as backend:
        assert backend.config_file == tmp_path / "relative" / "aws-config"
        assert Path(backend.environ()["AWS_CONFIG_FILE"]).is_absolute()
        assert backend.config_file.exists()


# ------------------------------------------------------------------------------ request ids


def _headers(answer: dict[str, Any]) -> dict[str, str]:
    return {name.lower(): value for name, value in answer["ResponseMetadata"]["HTTPHeaders"].items()}


def test_s3_answers_carry_s3s_request_ids_and_errors_name_the_same_ones(backend: EmbeddedBackend) -> None:
    s3 = plain_s3(backend)
    bucket = f"request-ids-{uuid.uuid4().hex[:10]}"
    answer = s3.create_bucket(Bucket=bucket)

    headers = _headers(answer)
    assert len(headers["x-amz-request-id"]) == 16 and headers["x-amz-request-id"].isupper()
    assert len(headers["x-amz-id-2"]) == 64
    assert "x-amzn-requestid" not in headers  # S3 does not send it, and botocore would prefer it
    assert answer["ResponseMetadata"]["RequestId"] == headers["x-amz-request-id"]
    assert answer["ResponseMetadata"]["HostId"] == headers["x-amz-id-2"]
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="absent")
    error = missing.value.response
    # The error document repeats the headers' ids, as S3's do.
    assert error["ResponseMetadata"]["RequestId"] == _headers(error)["x-amz-request-id"]
    assert error["Error"]["Code"] == "NoSuchKey"


def test_other_services_answer_with_a_uuid_request_id_in_header_and_document(backend: EmbeddedBackend) -> None:
    sts = boto3.client("sts", endpoint_url=backend.endpoint, region_name="us-east-1",
                       aws_access_key_id="backend-tests", aws_secret_access_key="backend-tests")

    answer = sts.get_caller_identity()

    request_id = _headers(answer)["x-amzn-requestid"]
    assert str(uuid.UUID(request_id)) == request_id
    assert answer["ResponseMetadata"]["RequestId"] == request_id


def test_a_backend_that_records_requests_lists_each_with_the_ids_it_sent(tmp_path: Path) -> None:
    with start_backend(config_file=tmp_path / "aws-config", record_requests=True) as running:
        s3 = plain_s3(running)
        answers = [s3.list_buckets(), s3.list_buckets()]
        served = running.served_requests()

    assert [r.request_id for r in served[-2:]] == [a["ResponseMetadata"]["RequestId"] for a in answers]
    last = served[-1]
    assert (last.method, last.path, last.service, last.region, last.status) == ("GET", "/", "s3", "us-east-1", 200)
    assert last.extended_request_id == answers[-1]["ResponseMetadata"]["HostId"]
    assert "Boto3" in last.user_agent or "botocore" in last.user_agent


def test_a_backend_keeps_no_request_log_unless_asked(backend: EmbeddedBackend) -> None:
    plain_s3(backend).list_buckets()
    assert backend.served_requests() == []
