"""The run folder's call log: every AWS call a run makes, with the request id the backend gave it, and no secret."""

from __future__ import annotations

import base64
import json
import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from runbook_fixtures import CtxFactory, Drill, backend_secrets

from runbook_lib import call_log, provision, snapshot
from runbook_lib.accounts import APP_ID
from runbook_lib.call_log import CALL_LOG_FILE, FIELDS, RESOURCE_PARAMETERS, CallLog, read_calls
from runbook_lib.context import RunContext
from runbook_lib.embedded import moto_state
from runbook_lib.embedded.request_ids import RequestLog, ServedRequest
from runbook_lib.embedded.server import RECOVERY_ACCOUNT, VAULT_ACCOUNT
from runbook_lib.errors import CallLogError

pytestmark = pytest.mark.xdist_group("call-log")


def _runbook_requests(log: RequestLog) -> list[ServedRequest]:
    """Return the requests that came from the runbook's sessions (their User-Agent carries its app id)."""
    return [request for request in log.served() if f"app/{APP_ID}" in request.user_agent]


def _a_phase(ctx: RunContext) -> None:
    """Make calls of several services, sides and outcomes: reads, writes, 404 answers and many threads."""
    provision.ensure_recovery_key(ctx)
    provision.ensure_recovery_bucket(ctx)
    snapshot.snapshot_bucket(ctx.vault("s3"), ctx.params.vault.bucket, workers=8)


def _vault_objects(ctx: RunContext) -> list[Any]:
    """Return the vault's object versions (delete markers left out), from the backend's own state."""
    bucket = moto_state.find_bucket(ctx.params.vault.bucket)
    versions = [v for name in bucket.keys for v in moto_state.versions_of(bucket, name)]
    return [v for v in versions if not moto_state.is_delete_marker(v)]


def test_every_request_of_a_run_is_in_its_call_log_with_the_request_id_aws_gave_it(
    make_ctx: CtxFactory, served: RequestLog
) -> None:
    ctx = make_ctx()
    _a_phase(ctx)

    calls = read_calls(ctx.ledger.run_dir)
    requests = _runbook_requests(served)
    assert len(calls) == len(requests) > 50
    assert Counter(c["request_id"] for c in calls) == Counter(r.request_id for r in requests)
    assert all(c["request_id"] for c in calls)
    by_id = {r.request_id: r for r in requests}
    for call in calls:
        request = by_id[call["request_id"]]
        assert call["http_status"] == request.status
        assert call["extended_request_id"] == (request.extended_request_id or None)
        assert call["region"] == request.region
    # Identity checks and the SDK's own AssumeRole are recorded too, on both sides.
    operations = Counter((c["side"], c["service"], c["operation"]) for c in calls)
    for side in ("vault", "recovery"):
        assert operations[(side, "sts", "AssumeRole")] == 1
        assert operations[(side, "sts", "GetCallerIdentity")] == 1
    assert operations[("recovery", "kms", "CreateKey")] == 1
    assert operations[("vault", "s3", "HeadObject")] == len(_vault_objects(ctx))


def test_each_line_names_account_operation_resource_and_outcome(make_ctx: CtxFactory, served: RequestLog) -> None:
    ctx = make_ctx()
    _a_phase(ctx)

    calls = read_calls(ctx.ledger.run_dir / CALL_LOG_FILE)
    assert all(tuple(call) == FIELDS for call in calls)
    assert {c["run_id"] for c in calls} == {ctx.params.run_id}
    assert {(c["side"], c["account"]) for c in calls} == {("vault", VAULT_ACCOUNT), ("recovery", RECOVERY_ACCOUNT)}
    assert all(set(c["resource"]) <= set(RESOURCE_PARAMETERS) for c in calls)
    created = next(c for c in calls if c["operation"] == "CreateBucket")
    assert created["resource"] == {"Bucket": ctx.params.recovery.bucket}
    assert (created["http_status"], created["error_code"]) == (200, None)
    assert len(created["request_id"]) == 16 and created["extended_request_id"]
    # A version without a legal hold: S3 answers 404 with its code, and the line says so.
    absent = next(c for c in calls if c["operation"] == "GetObjectLegalHold")
    assert (absent["http_status"], absent["error_code"]) == (404, "NoSuchObjectLockConfiguration")
    assert set(absent["resource"]) == {"Bucket", "Key", "VersionId"}
    assert all(c["time"].endswith("Z") and c["attempt"] >= 1 and c["duration_ms"] >= 0 for c in calls)


def test_the_call_log_holds_no_credential_no_object_data_and_no_policy(
    aws_env: Drill, make_ctx: CtxFactory, served: RequestLog
) -> None:
    ctx = make_ctx()
    _a_phase(ctx)
    bucket = ctx.params.vault.bucket
    version = next(v for v in _vault_objects(ctx) if v.size >= 64)
    body = ctx.vault("s3").get_object(Bucket=bucket, Key=version.name, VersionId=version.version_id)["Body"].read()

    text = (ctx.ledger.run_dir / CALL_LOG_FILE).read_text(encoding="utf-8")
    secrets = backend_secrets(aws_env.backend.config_file)
    assert len(secrets) > 4  # the operator's keys and the temporary credentials of both sessions
    assert [secret for secret in secrets if secret in text] == []
    sample = body[:48]
    forms = (base64.b64encode(sample).decode(), sample.hex(), sample.decode("latin-1"),
             json.dumps(sample.decode("latin-1")))
    assert body and all(form not in text for form in forms)
    assert '"Statement"' not in text and "Authorization" not in text and "Credential=" not in text
    get = next(c for c in read_calls(ctx.ledger.run_dir) if c["operation"] == "GetObject")
    assert get["resource"] == {"Bucket": bucket, "Key": version.name, "VersionId": version.version_id}


def test_the_evidence_sentence_points_at_the_call_log(make_ctx: CtxFactory, served: RequestLog) -> None:
    ctx = make_ctx()
    assert "made no AWS call" not in call_log.describe(ctx.ledger.run_dir)
    _a_phase(ctx)

    sentence = call_log.describe(ctx.ledger.run_dir)

    count = len(read_calls(ctx.ledger.run_dir))
    assert f"[{CALL_LOG_FILE}]({CALL_LOG_FILE})" in sentence and f"{count:,} requests" in sentence
    nothing = call_log.describe(ctx.ledger.run_dir / "elsewhere")
    assert nothing == f"The run made no AWS call recorded in {CALL_LOG_FILE}."


def _append_lines(path: str, writer: int, lines: int) -> None:
    log = CallLog(Path(path), "concurrency", f"writer-{writer}")
    for index in range(lines):
        # Lines far longer than a real one, so that a torn write could not go unseen.
        log.append({"writer": writer, "index": index, "padding": "x" * 3000})


def test_lines_from_many_processes_stay_whole(tmp_path: Path) -> None:
    path = tmp_path / "run" / CALL_LOG_FILE
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_lines, args=(str(path), writer, 200)) for writer in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    lines = read_calls(path)

    assert len(lines) == 800
    assert Counter(line["writer"] for line in lines) == {0: 200, 1: 200, 2: 200, 3: 200}
    for writer in range(4):
        assert [line["index"] for line in lines if line["writer"] == writer] == list(range(200))


def test_a_call_log_that_cannot_be_written_says_where_and_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the run folder should be")
    log = CallLog(blocker / CALL_LOG_FILE, "blocked")

    with pytest.raises(CallLogError) as raised:
        log.append({"operation": "HeadObject"})

    assert raised.value.path == str(blocker / CALL_LOG_FILE)
    assert "run the phase again" in str(raised.value)
