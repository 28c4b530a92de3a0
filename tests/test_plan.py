"""The plan before the changes: in a fresh world every phase's creations, after a run nothing to change,
after an administrator's change exactly that drift, and never a write.

No write reaching AWS is shown two ways: with botocore's Stubber, where every call the plan makes
must have been queued (reads only), and with the embedded backend's own record of the requests
it served while `runbook plan` ran.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber
from runbook_fixtures import DRILL_PARAMS, PROVISION_ORDER, CtxFactory, Drill, write_requests

from runbook_lib import analyzer, cli, commitment, guide, inventory_proof, plan, policies
from runbook_lib.accounts import APP_ID, AccountSessions, Identity
from runbook_lib.context import RunContext
from runbook_lib.drill import NOTEBOOKS_DIR, phase_names
from runbook_lib.embedded.access_analyzer import urls as analyzer_urls
from runbook_lib.embedded.request_ids import RequestLog
from runbook_lib.errors import PlanError, PolicyCheckError
from runbook_lib.ledger import Ledger
from runbook_lib.params import load_params
from runbook_lib.planning import Plan, PlannedWrite
from runbook_lib.run_state import RunState

pytestmark = pytest.mark.xdist_group("runbook-plan")

def steps_of(document: dict[str, Any], phase: str) -> list[tuple[str, str]]:
    """Return (action, resource) of each step of one phase of a plan document."""
    entry = next(p for p in document["phases"] if p["phase"].startswith(phase))
    return [(step["action"], step["resource"]) for step in entry["steps"]]


def writes_of(document: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    return next(p for p in document["phases"] if p["phase"].startswith(phase))["writes"]


# ------------------------------------------------------------------------------ a fresh world


def test_a_plan_of_a_fresh_world_lists_every_phase_s_creations_and_writes_nothing(
    aws_env: Drill, make_ctx: CtxFactory, served: RequestLog, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    params_file = make_ctx.params_file()
    names = make_ctx.names
    out = tmp_path / "fresh"

    status = cli.main(["plan", "--params", str(params_file), "--out", str(out)])

    assert status == 0, capsys.readouterr().err
    document = json.loads((out / plan.PLAN_FILE).read_text())
    assert [p["phase"] for p in document["phases"]] == phase_names()
    assert steps_of(document, "00") == [] and steps_of(document, "07") == []
    assert ("create", "recovery KMS key") in steps_of(document, "01")
    assert ("create", "recovery bucket") in steps_of(document, "01")
    assert {("create", "report bucket"), ("create", "IAM policy"), ("create", "IAM role")} <= set(
        steps_of(document, "02"))
    assert steps_of(document, "03") == [("change", "vault KMS key policy"), ("change", "recovery KMS key policy"),
                                        ("create", "recovery bucket policy")]
    assert ("create", "vault replication configuration") in steps_of(document, "04")
    assert {("create", "SNS topic"), ("create", "audit queue"), ("create", "EventBridge rule")} == set(
        steps_of(document, "05"))
    assert ("create", "Batch Replication job") in steps_of(document, "06")
    assert {action for action, _ in steps_of(document, "08")} == {"remove", "restore", "keep"}
    # Later phases are planned on what earlier ones would create: the key ARN phase 01 will learn.
    role_policy = next(w for w in writes_of(document, "02") if w["operation"] == "CreatePolicy")["document"]
    unknown_key = next(s for s in role_policy["Statement"] if s["Sid"] == "EncryptReplicas")["Resource"]
    assert unknown_key.endswith(":key/known-after-phase-01")
    bucket_policy = next(w for w in writes_of(document, "03") if w["operation"] == "PutBucketPolicy")
    assert bucket_policy["found"] is None and bucket_policy["document"]["Statement"]
    job = next(w for w in writes_of(document, "06") if w["operation"] == "CreateJob")["document"]
    assert job["RoleArn"].endswith(f"role/{names['batch_role_name']}")
    # Every policy it would write was checked by Access Analyzer, and none stops the run.
    checks = document["policy_checks"]
    assert {c["check"] for c in checks} == {"ValidatePolicy", "CheckNoNewAccess", "CheckAccessNotGranted"}
    assert not [c for c in checks if c["severity"] in ("ERROR", "SECURITY_WARNING", "FAIL")]
    assert "Phase 06_batch_replication" in (out / plan.PLAN_TEXT).read_text()
    # The locked-copy commitment, before anything is created: the figures phase 00 shows.
    shown = commitment.locked_copy_commitment(make_ctx("phase-00")).as_record()["scope"]
    planned = document["commitment"]["scope"]
    assert planned["versions"] > 0 and (planned["versions"], planned["bytes"]) == (shown["versions"], shown["bytes"])
    assert [(m["mode"], m["versions"], m["bytes"]) for m in planned["modes"]] == [
        (m["mode"], m["versions"], m["bytes"]) for m in shown["modes"]]
    assert "would commit the recovery account to" in (out / plan.PLAN_TEXT).read_text()
    # Nothing was created, and nothing but reads (and Access Analyzer's checks) reached the backend.
    runbook = [r for r in served.served() if f"app/{APP_ID}" in r.user_agent]
    assert runbook and write_requests(runbook) == []
    assert any(r.service == analyzer_urls.SIGNING_NAME for r in runbook)
    assert names["recovery"]["bucket"] not in {b["Name"] for b in aws_env.client("s3", "recovery").list_buckets()[
        "Buckets"]}
    assert not (out / "ledger.json").exists()


def _stubbed_context(tmp_path: Path) -> tuple[RunContext, dict[tuple[str, str], Stubber]]:
    """Return a planning context whose every client is wrapped in Stubber, and the stubs by (side, service)."""
    params = load_params(DRILL_PARAMS)
    vault_session, recovery_session = object(), object()
    stubs: dict[tuple[str, str], Stubber] = {}

    def factory(session: Any, service: str, region: str) -> Any:
        client = botocore.session.get_session().create_client(
            service, region_name=region, aws_access_key_id="stub", aws_secret_access_key="stub")
        side = "vault" if session is vault_session else "recovery"
        stubs[(side, service)] = Stubber(client)
        stubs[(side, service)].activate()
        return client

    sessions = AccountSessions(
        vault=vault_session, recovery=recovery_session,  # type: ignore[arg-type]  # only the factory sees them
        vault_identity=Identity(params.vault.account_id, "arn:aws:iam::111111111111:role/v", "v"),
        recovery_identity=Identity(params.recovery.account_id, "arn:aws:iam::222222222222:role/r", "r"))
    ledger = Ledger(tmp_path, RunState(run_id=params.run_id), in_memory=True)
    ctx = RunContext(params=params, ledger=ledger, sessions=sessions, client_factory=factory, plan=Plan())
    for service in ("s3", "kms"):
        ctx.recovery(service)
    for service in ("s3", "kms", "iam", "sns", "sqs", "events", "s3control"):
        ctx.vault(service)
    return ctx, stubs


def test_a_plan_of_a_fresh_world_calls_nothing_but_the_reads_queued_in_stubber(tmp_path: Path) -> None:
    ctx, stubs = _stubbed_context(tmp_path)
    params = ctx.params
    vault_key_policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow", "Action": "kms:*", "Resource": "*",
        "Principal": {"AWS": f"arn:aws:iam::{params.vault.account_id}:root"}}]}
    # Every call the plan may make, in order; a write would find nothing queued and fail the test.
    stubs[("recovery", "kms")].add_client_error(
        "describe_key", "NotFoundException", expected_params={"KeyId": params.recovery.kms_key_alias})
    stubs[("recovery", "s3")].add_response("list_buckets", {"Buckets": []}, {})
    stubs[("vault", "s3")].add_response("list_buckets", {"Buckets": []}, {})
    stubs[("vault", "iam")].add_client_error("get_policy", "NoSuchEntity", http_status_code=404,
                                             expected_params={"PolicyArn": params.batch_policy_arn})
    stubs[("vault", "iam")].add_client_error("get_role", "NoSuchEntity", http_status_code=404,
                                             expected_params={"RoleName": params.batch_role_name})
    stubs[("vault", "kms")].add_response(
        "get_key_policy", {"Policy": json.dumps(vault_key_policy)},
        {"KeyId": params.vault.kms_key_arn, "PolicyName": "default"})
    stubs[("vault", "s3")].add_client_error("get_bucket_replication", "ReplicationConfigurationNotFoundError",
                                            http_status_code=404, expected_params={"Bucket": params.vault.bucket})
    stubs[("vault", "s3")].add_response("get_bucket_notification_configuration", {}, {"Bucket": params.vault.bucket})
    stubs[("vault", "sns")].add_client_error("get_topic_attributes", "NotFound", http_status_code=404)
    stubs[("vault", "sqs")].add_client_error("get_queue_url", "AWS.SimpleQueueService.NonExistentQueue",
                                             http_status_code=400)
    stubs[("vault", "events")].add_client_error(
        "describe_rule", "ResourceNotFoundException", expected_params={"Name": params.event_rule_name})

    run_plan = plan.plan_phases(ctx, phase_names())

    for stub in stubs.values():
        stub.assert_no_pending_responses()
    assert not run_plan.stops(), run_plan.render()
    planned = [(w.service, w.operation) for w in run_plan.writes()]
    for call in [("kms", "CreateKey"), ("s3", "CreateBucket"), ("iam", "CreatePolicy"), ("iam", "CreateRole"),
                 ("kms", "PutKeyPolicy"), ("s3", "PutBucketPolicy"), ("s3", "PutBucketReplication"),
                 ("sns", "CreateTopic"), ("sqs", "CreateQueue"), ("events", "PutRule"), ("s3control", "CreateJob")]:
        assert call in planned
    vault_key = next(w for w in run_plan.writes() if w.identifier == params.vault.kms_key_arn)
    assert vault_key.found == vault_key_policy
    assert vault_key.document["Statement"][0] == vault_key_policy["Statement"][0]
    assert len(vault_key.document["Statement"]) == 2
    # The token of an Object Lock replication is never part of a plan.
    replication = next(w for w in run_plan.writes() if w.operation == "PutBucketReplication")
    assert "Token" not in json.dumps(replication.document)


# ------------------------------------------------------------------------------ after a run


def _edit_out_of_band(aws_env: Drill, bucket: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An administrator drops one of the run's statements from the recovery bucket policy; return before and after."""
    s3 = aws_env.client("s3", "recovery")
    before = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    after = copy.deepcopy(before)
    after["Statement"] = [s for s in after["Statement"] if "RoleReadsVersioning" not in s["Sid"]]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(after))
    return before, after


def test_after_the_run_the_plan_lists_nothing_to_change_then_exactly_the_drift(
    aws_env: Drill, make_ctx: CtxFactory, served: RequestLog, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = make_ctx(**aws_env.fresh_vault(f"vault-{make_ctx.suffix}"))
    for step in PROVISION_ORDER:
        step(ctx)
    run_dir = ctx.ledger.run_dir
    params_file = make_ctx.params_file()
    served.clear()

    assert cli.main(["plan", "--params", str(params_file), "--out", str(run_dir), "--to", "05"]) == 0
    reviewed = json.loads((run_dir / plan.PLAN_FILE).read_text())
    assert set(reviewed["counts"]) == {"leave"}
    assert [w for p in reviewed["phases"] for w in p["writes"]] == []
    assert "nothing to change" in (run_dir / plan.PLAN_TEXT).read_text()

    reviewed_file = tmp_path / "reviewed-plan.json"
    shutil.copyfile(run_dir / plan.PLAN_FILE, reviewed_file)

    assert write_requests([r for r in served.served() if f"app/{APP_ID}" in r.user_agent]) == []

    before, after = _edit_out_of_band(aws_env, ctx.params.recovery.bucket)
    served.clear()
    assert cli.main(["plan", "--params", str(params_file), "--out", str(run_dir), "--to", "05"]) == 0
    drifted = json.loads((run_dir / plan.PLAN_FILE).read_text())
    changed = [(p["phase"], s["action"], s["resource"]) for p in drifted["phases"] for s in p["steps"]
               if s["action"] != "leave"]
    assert changed == [("03_grants", "change", "recovery bucket policy")]
    (write,) = [w for p in drifted["phases"] for w in p["writes"]]
    assert (write["service"], write["operation"], write["identifier"]) == (
        "s3", "PutBucketPolicy", ctx.params.recovery.bucket)
    assert write["found"] == after
    assert policies.own_statement_sids(write["document"], ctx.params.run_id) == policies.own_statement_sids(
        before, ctx.params.run_id)
    # The reviewed plan no longer matches the world: the run refuses to start, and says what changed.
    with pytest.raises(PlanError) as refused:
        plan.check_plan(params_file, run_dir, phase_names()[:6], reviewed_file)
    assert any("recovery bucket policy" in line for line in refused.value.differences)
    capsys.readouterr()
    status = cli.main(["run", "--params", str(params_file), "--out", str(run_dir), "--to", "05",
                       "--plan", str(reviewed_file)])
    error = capsys.readouterr().err
    assert status == 2 and "the world changed since the plan" in error and "Nothing was changed" in error
    assert write_requests([r for r in served.served() if f"app/{APP_ID}" in r.user_agent]) == []


def test_a_plan_made_now_is_accepted_and_kept_in_the_run_folder(
    aws_env: Drill, make_ctx: CtxFactory, tmp_path: Path,
) -> None:
    params_file = make_ctx.params_file()
    reviewed_dir, run_dir = tmp_path / "review", tmp_path / "run"
    assert cli.main(["plan", "--params", str(params_file), "--out", str(reviewed_dir), "--to", "02"]) == 0

    checked = plan.check_plan(params_file, run_dir, phase_names()[:3], reviewed_dir / plan.PLAN_FILE)

    assert checked.digest == json.loads((reviewed_dir / plan.PLAN_FILE).read_text())["digest"]
    assert (run_dir / plan.PLAN_FILE).read_text() == (reviewed_dir / plan.PLAN_FILE).read_text()
    assert checked.digest in (run_dir / plan.PLAN_TEXT).read_text()


def test_a_plan_of_another_run_or_other_phases_is_refused_before_any_aws_call(tmp_path: Path) -> None:
    params = load_params(DRILL_PARAMS)
    document = {"version": 1, "run_id": "another-run", "digest": "sha256:0", "phases": [{"phase": "00_preflight"}]}
    other_run = tmp_path / "other-run.json"
    other_run.write_text(json.dumps(document))
    other_phases = tmp_path / "other-phases.json"
    other_phases.write_text(json.dumps({**document, "run_id": params.run_id}))

    with pytest.raises(PlanError, match="is the plan of run 'another-run'"):
        plan.check_plan(DRILL_PARAMS, tmp_path / "run", phase_names(), other_run)
    with pytest.raises(PlanError, match="covers phases 00_preflight, but this run would run"):
        plan.check_plan(DRILL_PARAMS, tmp_path / "run", phase_names(), other_phases)
    with pytest.raises(PlanError, match="is not valid JSON"):
        plan.read_plan(DRILL_PARAMS)
    not_a_plan = tmp_path / "summary.json"
    not_a_plan.write_text(json.dumps({"verdict": "PASS"}))
    with pytest.raises(PlanError, match="not a plan written by runbook plan"):
        plan.read_plan(not_a_plan)


# ------------------------------------------------------------------------------ Access Analyzer in phase 00


def _with_wildcard_reader(original: Any) -> Any:
    def bucket_policy(**arguments: Any) -> dict[str, Any]:
        document = original(**arguments)
        document["Statement"].append({
            "Sid": "AnyoneReadsReplicas", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": policies.objects_arn(arguments["recovery_bucket"], arguments["partition"])})
        return document
    return bucket_policy


def _with_misspelt_action(original: Any) -> Any:
    def role_policy(**arguments: Any) -> dict[str, Any]:
        document = original(**arguments)
        document["Statement"][2]["Action"] = [*document["Statement"][2]["Action"], "s3:GetObjectVersionForReplicaton"]
        return document
    return role_policy


@pytest.mark.parametrize(("builder", "change", "policy", "check", "code", "named"), [
    ("recovery_bucket_policy", _with_wildcard_reader, "recovery bucket policy", "CheckNoNewAccess", "FAIL",
     "AnyoneReadsReplicas"),
    ("batch_role_policy", _with_misspelt_action, "Batch Replication role policy", "ValidatePolicy", "INVALID_ACTION",
     "s3:GetObjectVersionForReplicaton"),
], ids=["wildcard-principal", "misspelt-action"])
def test_a_policy_access_analyzer_refuses_stops_phase_00_before_any_change(
    builder: str, change: Any, policy: str, check: str, code: str, named: str,
    aws_env: Drill, make_ctx: CtxFactory, served: RequestLog, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(policies, builder, change(getattr(policies, builder)))
    ctx = make_ctx()
    ctx.phase = "00_preflight"

    with pytest.raises(PolicyCheckError) as stopped:
        guide.show_plan(ctx)

    assert (stopped.value.policy, stopped.value.code) == (policy, code)
    assert check in str(stopped.value) and named in str(stopped.value)
    shown = capsys.readouterr().out
    assert "IAM Access Analyzer on the policies the plan would write" in shown and named in shown
    assert write_requests([r for r in served.served() if f"app/{APP_ID}" in r.user_agent]) == []
    assert ctx.params.recovery.bucket not in {
        b["Name"] for b in aws_env.client("s3", "recovery").list_buckets()["Buckets"]}


# ------------------------------------------------------------------------------ the notebooks


def _code_cells(phase: str) -> list[str]:
    notebook = json.loads((NOTEBOOKS_DIR / f"{phase}.ipynb").read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


@pytest.mark.parametrize("phase", phase_names())
def test_each_notebook_shows_its_plan_before_any_step_and_runs_the_steps_the_plan_runs(phase: str) -> None:
    cells = _code_cells(phase)
    start = next(i for i, cell in enumerate(cells) if "guide.start_phase(" in cell)
    assert cells[start + 1].splitlines()[-1] == "guide.show_plan(ctx)"
    called = [name for cell in cells for name in
              re.findall(r"(?:provision|notifications|batch_job|bucket_jobs)\.(ensure_\w+|create_replication_job|create_jobs)",
                                       cell)]
    before_plan = [name for cell in cells[: start + 1] for name in
                   re.findall(r"\.(ensure_\w+|create_replication_job|create_jobs|clean_up)\(", cell)]
    assert before_plan == []
    steps = plan.PHASE_STEPS.get(phase[:2], ())
    planned = [step.__name__ for step in steps if step.__name__.startswith("ensure_")]
    assert [name for name in called if name.startswith("ensure_")] == planned
    assert ("create_jobs" in called) == phase.startswith("06")


def test_a_finding_in_a_statement_kept_as_found_is_shown_and_stops_nothing(
    aws_env: Drill, make_ctx: CtxFactory,
) -> None:
    ctx = make_ctx()
    params = ctx.params
    # An administrator's statement in the vault key policy that Access Analyzer warns about.
    found = {"Version": "2012-10-17", "Statement": [{
        "Sid": "LogsEncryptWithTheVaultKey", "Effect": "Allow", "Principal": {"Service": "logs.amazonaws.com"},
        "Action": "kms:Encrypt", "Resource": "*"}]}
    merged = policies.merge_statements(found, policies.vault_key_policy_statements(
        batch_role_arn=params.batch_role_arn, vault_bucket=params.vault.bucket, region=params.region,
        run_id=params.run_id), run_id=params.run_id)

    kept = analyzer.check_writes(ctx, [PlannedWrite("vault", "kms", "PutKeyPolicy", params.vault.kms_key_arn,
                                                    merged, found)])
    brought = analyzer.check_writes(ctx, [PlannedWrite("vault", "kms", "PutKeyPolicy", params.vault.kms_key_arn,
                                                       merged, None)])

    warning = next(r for r in kept if r.code == "RESTRICT_ACCESS_TO_SERVICE_PRINCIPAL")
    assert (warning.severity, warning.location, warning.kept_as_found) == (
        "SECURITY_WARNING", "Statement[0].Principal.Service", True)
    assert not any(r.blocking for r in kept)
    analyzer.raise_on_blocking(kept)
    # Had the run brought that statement, the warning and the new access would stop it.
    assert {(r.check, r.severity) for r in brought if r.blocking} == {
        ("ValidatePolicy", "SECURITY_WARNING"), ("CheckNoNewAccess", "FAIL")}
    with pytest.raises(PolicyCheckError, match=re.escape("logs.amazonaws.com")):
        analyzer.raise_on_blocking(brought)


def test_drift_on_a_resource_not_the_run_s_ends_the_plan_there_and_exits_1(
    aws_env: Drill, make_ctx: CtxFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    params_file = make_ctx.params_file()
    # Someone else's role under the name the parameters give, trusting another service.
    aws_env.client("iam").create_role(RoleName=make_ctx.names["batch_role_name"], AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}))

    status = cli.main(["plan", "--params", str(params_file), "--out", str(tmp_path / "run")])

    assert status == 1
    assert "the run would stop" in capsys.readouterr().err
    document = json.loads((tmp_path / "run" / plan.PLAN_FILE).read_text())
    assert steps_of(document, "02")[-1] == ("drift", "IAM role")
    later = [p for p in document["phases"] if p["phase"][:2] > "02"]
    assert later and all(p["summary"] == "not planned: phase 02 stops first" and not p["steps"] for p in later)


def test_the_evidence_shows_the_plan_reviewed_for_the_run(tmp_path: Path) -> None:
    from runbook_lib import evidence

    step = plan.PlannedStep("recovery bucket", "recovery-golden-copies", "create", note="account 222222222222")
    write = PlannedWrite("recovery", "s3", "CreateBucket", "recovery-golden-copies",
                         {"ObjectLockEnabledForBucket": True})
    reviewed = plan.RunPlan("drill", "drill.yaml", [plan.PhasePlan("01_recovery_bucket", "recovery account",
                                                                   (step,), (write,))])
    plan.write_plan(tmp_path, reviewed)

    evidence.write_summary(tmp_path, "INCOMPLETE", {})
    html = evidence.export_html(tmp_path).read_text()

    assert "The plan reviewed before the changes" in html and reviewed.digest in html
    assert "1 to create" in html and "ObjectLockEnabledForBucket" in html
    assert 'href="plan.json"' in html
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["plan"] == {"file": "plan.json", "digest": reviewed.digest, "made": reviewed.made,
                               "counts": {"create": 1}}


def test_a_plan_of_a_sample_drill_shows_the_manifest_it_would_give_the_job_and_writes_nothing(
    aws_env: Drill, make_ctx: CtxFactory, served: RequestLog, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    params_file = make_ctx.params_file("sample", job={"sample": {"count": 20, "seed": 3}})
    out = tmp_path / "sample-plan"

    status = cli.main(["plan", "--params", str(params_file), "--out", str(out), "--from", "06", "--to", "06"])

    printed = capsys.readouterr()
    assert status == 0, printed.out + printed.err
    document = json.loads((out / plan.PLAN_FILE).read_text())
    job = next(w for w in writes_of(document, "06") if w["operation"] == "CreateJob")["document"]
    # Phase 00 has not drawn the sample yet: the job's manifest is named, its key and ETag known after 00.
    assert "ManifestGenerator" not in job
    assert job["Manifest"]["Spec"]["Fields"] == ["Bucket", "Key", "VersionId"]
    assert job["Manifest"]["Location"]["ETag"] == "known-after-phase-00"
    runbook = [r for r in served.served() if f"app/{APP_ID}" in r.user_agent]
    assert runbook and write_requests(runbook) == []


# ------------------------------------------------------------------------------ verification by inventory


def test_a_plan_verifying_by_inventory_on_athena_lists_its_set_up_and_writes_nothing(
    aws_env: Drill, make_ctx: CtxFactory, served: RequestLog, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    params_file = make_ctx.params_file(verification={"method": "inventory", "engine": "athena"})
    names = make_ctx.names
    out = tmp_path / "inventory"

    status = cli.main(["plan", "--params", str(params_file), "--out", str(out)])

    assert status == 0, capsys.readouterr().err
    document = json.loads((out / plan.PLAN_FILE).read_text())
    assert steps_of(document, "07") == [("create", "report bucket policy"), ("create", "vault bucket inventory"),
                                        ("create", "recovery bucket inventory"),
                                        ("create", "Athena database and tables")]
    writes = writes_of(document, "07")
    configurations = [w for w in writes if w["operation"] == "PutBucketInventoryConfiguration"]
    assert [(w["side"], w["identifier"].split("/")[0]) for w in configurations] == [
        ("vault", load_params(params_file).vault.bucket), ("recovery", names["recovery"]["bucket"])]
    assert {w["document"]["IncludedObjectVersions"] for w in configurations} == {"All"}
    delivery = next(w for w in writes if w["operation"] == "PutBucketPolicy")
    # The report bucket phase 02 would create gets the statement that lets S3 deliver the reports.
    assert any(s["Principal"] == {"Service": "s3.amazonaws.com"} for s in delivery["document"]["Statement"])
    assert [w["operation"] for w in writes if w["service"] == "athena"] == ["StartQueryExecution"] * 6
    # Cleanup would remove the two configurations the run would make.
    assert [step for step in steps_of(document, "08") if step[1] == "inventory configuration"] == [
        ("remove", "inventory configuration")] * 2
    runbook = [r for r in served.served() if f"app/{APP_ID}" in r.user_agent]
    assert runbook and write_requests(runbook) == []


def test_after_the_inventory_set_up_a_plan_leaves_it_and_an_administrator_s_change_shows(
    aws_env: Drill, make_ctx: CtxFactory,
) -> None:
    ctx = make_ctx(verification={"method": "inventory"})
    for ensure in PROVISION_ORDER:
        ensure(ctx)
    assert {o.status for o in inventory_proof.prepare(ctx)} <= {"created", "updated"}
    planned = plan.plan_phases(ctx, ["07_verify"]).as_dict()
    assert {step["action"] for step in planned["phases"][0]["steps"]} == {"leave"}
    assert planned["phases"][0]["writes"] == []
    # Someone disables the recovery bucket's configuration: the plan shows that change, and makes none.
    s3 = aws_env.client("s3", "recovery")
    config_id = f"{ctx.params.run_id}-verification"
    found = s3.get_bucket_inventory_configuration(Bucket=ctx.params.recovery.bucket, Id=config_id)
    s3.put_bucket_inventory_configuration(Bucket=ctx.params.recovery.bucket, Id=config_id,
                                          InventoryConfiguration={**found["InventoryConfiguration"],
                                                                  "IsEnabled": False})
    planned = plan.plan_phases(ctx, ["07_verify"]).as_dict()
    assert [(s["action"], s["resource"]) for s in planned["phases"][0]["steps"]] == [
        ("leave", "report bucket policy"), ("leave", "vault bucket inventory"), ("change", "recovery bucket inventory")]
    after = s3.get_bucket_inventory_configuration(Bucket=ctx.params.recovery.bucket, Id=config_id)
    assert after["InventoryConfiguration"]["IsEnabled"] is False
    # The vault bucket is shared by the module's tests: remove the run's configuration from it.
    aws_env.client("s3", "vault").delete_bucket_inventory_configuration(Bucket=ctx.params.vault.bucket, Id=config_id)
