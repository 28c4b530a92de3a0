"""IAM Access Analyzer in the embedded backend, through boto3: ValidatePolicy's findings in AWS's shape,
CheckNoNewAccess and CheckAccessNotGranted decided by the backend's evaluator, errors as AWS gives them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from runbook_lib import analyzer, policies
from runbook_lib.embedded.server import EmbeddedBackend, start_backend

pytestmark = pytest.mark.xdist_group("access-analyzer")

VAULT, RECOVERY = "111111111111", "222222222222"
ROLE = f"arn:aws:iam::{VAULT}:role/s3-batch-replication-role"
RUN_ID = "drill"
BUCKET = "recovery-golden-copies"
REFERENCE = {"Version": "2012-10-17", "Statement": [{
    "Sid": "RunbookRecoveryAccountsAndRole", "Effect": "Allow", "Action": "*", "Resource": "*",
    "Principal": {"AWS": [f"arn:aws:iam::{VAULT}:root", f"arn:aws:iam::{RECOVERY}:root", ROLE]}}]}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    with start_backend(config_file=tmp_path_factory.mktemp("analyzer") / "aws-config") as running:
        yield running


@pytest.fixture(scope="module")
def client(backend: EmbeddedBackend) -> Any:
    return boto3.client("accessanalyzer", endpoint_url=backend.endpoint, region_name="us-east-1",
                        aws_access_key_id="analyzer-tests", aws_secret_access_key="analyzer-tests")


def validate(client: Any, document: Any, policy_type: str = "RESOURCE_POLICY", **extra: Any) -> list[dict[str, Any]]:
    text = document if isinstance(document, str) else json.dumps(document, indent=2)
    pages = client.get_paginator("validate_policy").paginate(policyDocument=text, policyType=policy_type, **extra)
    return [finding for page in pages for finding in page["findings"]]


def bucket_policy() -> dict[str, Any]:
    return policies.recovery_bucket_policy(recovery_bucket=BUCKET, batch_role_arn=ROLE, run_id=RUN_ID, partition="aws")


GENERATED: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "role policy": (policies.batch_role_policy(
        vault_bucket="vault-golden-copies", recovery_bucket=BUCKET, report_bucket="vault-batch-reports",
        vault_key_arn=f"arn:aws:kms:us-east-1:{VAULT}:key/6f1c0f4e-7d1a-4c55-9b0e-0c5a11d5eed1",
        recovery_key_arn=f"arn:aws:kms:us-east-1:{RECOVERY}:key/known-after-phase-01", region="us-east-1"),
        "IDENTITY_POLICY", None),
    "trust policy": (policies.batch_role_trust_policy(
        vault_account_id=VAULT, vault_bucket="vault-golden-copies", region="us-east-1"),
        "RESOURCE_POLICY", "AWS::IAM::AssumeRolePolicyDocument"),
    "recovery key policy": (policies.recovery_key_policy(recovery_account_id=RECOVERY, partition="aws"),
                            "RESOURCE_POLICY", None),
    "vault key policy with the run's statement": (policies.merge_statements(
        {"Version": "2012-10-17", "Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                                                 "Principal": {"AWS": f"arn:aws:iam::{VAULT}:root"},
                                                 "Action": "kms:*", "Resource": "*"}]},
        policies.vault_key_policy_statements(batch_role_arn=ROLE, vault_bucket="vault-golden-copies",
                                             region="us-east-1", run_id=RUN_ID), run_id=RUN_ID),
        "RESOURCE_POLICY", None),
    "recovery bucket policy": (bucket_policy(), "RESOURCE_POLICY", "AWS::S3::Bucket"),
    "topic policy": (policies.sns_topic_policy(
        topic_arn=f"arn:aws:sns:us-east-1:{VAULT}:status", event_rule_arn=f"arn:aws:events:us-east-1:{VAULT}:rule/r",
        account_id=VAULT), "RESOURCE_POLICY", None),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_every_policy_the_runbook_generates_validates_without_findings(client: Any, name: str) -> None:
    document, policy_type, resource_type = GENERATED[name]
    extra = {"validatePolicyResourceType": resource_type} if resource_type else {}
    assert validate(client, document, policy_type, **extra) == []


def test_a_misspelt_action_is_an_error_located_where_it_stands(client: Any) -> None:
    document = bucket_policy()
    document["Statement"][0]["Action"] = ["s3:ReplicateObject", "s3:ReplicateTagz"]
    text = json.dumps(document, indent=2)

    (finding,) = validate(client, text, validatePolicyResourceType="AWS::S3::Bucket")

    assert (finding["findingType"], finding["issueCode"]) == ("ERROR", "INVALID_ACTION")
    assert "s3:ReplicateTagz" in finding["findingDetails"]
    assert finding["learnMoreLink"].endswith("#access-analyzer-reference-policy-checks-error-invalid-action")
    (location,) = finding["locations"]
    assert location["path"] == [{"value": "Statement"}, {"index": 0}, {"value": "Action"}, {"index": 1}]
    start, end = location["span"]["start"], location["span"]["end"]
    assert text[start["offset"]:end["offset"]] == '"s3:ReplicateTagz"'
    assert text.splitlines()[start["line"] - 1][start["column"]:].startswith('"s3:ReplicateTagz"')


@pytest.mark.parametrize(("change", "policy_type", "expected"), [
    (lambda d: d.pop("Version"), "RESOURCE_POLICY", ("WARNING", "MISSING_VERSION")),
    (lambda d: d["Statement"][0].pop("Principal"), "RESOURCE_POLICY", ("ERROR", "MISSING_PRINCIPAL")),
    (lambda d: d["Statement"][0].pop("Effect"), "RESOURCE_POLICY", ("ERROR", "MISSING_EFFECT")),
    (lambda d: None, "IDENTITY_POLICY", ("ERROR", "UNSUPPORTED_PRINCIPAL")),
    (lambda d: d["Statement"][0].update(NotPrincipal=d["Statement"][0].pop("Principal")), "RESOURCE_POLICY",
     ("SECURITY_WARNING", "ALLOW_WITH_NOT_PRINCIPAL")),
    (lambda d: d["Statement"][0].update(Principal={"Service": "events.amazonaws.com"}), "RESOURCE_POLICY",
     ("SECURITY_WARNING", "RESTRICT_ACCESS_TO_SERVICE_PRINCIPAL")),
    (lambda d: d["Statement"][0].update(Principal={"AWS": f"arn:aws:iam::{VAULT}:role/*"}), "RESOURCE_POLICY",
     ("ERROR", "UNSUPPORTED_WILDCARD_IN_PRINCIPAL")),
    (lambda d: d["Statement"][1].update(Sid=d["Statement"][0]["Sid"]), "RESOURCE_POLICY",
     ("WARNING", "UNIQUE_SIDS_RECOMMENDED")),
], ids=["missing-version", "missing-principal", "missing-effect", "principal-in-identity-policy",
        "allow-not-principal", "service-principal-without-source", "wildcard-in-principal-arn", "duplicate-sid"])
def test_each_check_reports_its_finding_type_and_issue_code(
    client: Any, change: Any, policy_type: str, expected: tuple[str, str],
) -> None:
    document = bucket_policy()
    change(document)
    found = {(f["findingType"], f["issueCode"]) for f in validate(client, document, policy_type)}
    assert expected in found


def test_a_wildcard_principal_is_no_validation_finding_but_new_access(client: Any) -> None:
    document = bucket_policy()
    document["Statement"].append({"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                  "Resource": f"arn:aws:s3:::{BUCKET}/*"})

    assert validate(client, document) == []
    answer = client.check_no_new_access(newPolicyDocument=json.dumps(document),
                                        existingPolicyDocument=json.dumps(REFERENCE), policyType="RESOURCE_POLICY")

    assert answer["result"] == "FAIL"
    (reason,) = answer["reasons"]
    assert (reason["statementIndex"], reason["statementId"]) == (2, "Anyone")
    assert "s3:GetObject" in reason["description"]


@pytest.mark.parametrize(("principal", "result"), [
    ({"AWS": ROLE}, "PASS"),
    ({"AWS": f"arn:aws:iam::{RECOVERY}:root"}, "PASS"),
    ({"AWS": "333333333333"}, "FAIL"),
    ({"AWS": "arn:aws:iam::333333333333:role/elsewhere"}, "FAIL"),
    ({"Service": "s3.amazonaws.com"}, "FAIL"),
    ("*", "FAIL"),
], ids=["the-role", "the-recovery-account", "a-third-account", "a-role-of-a-third-account", "a-service", "anyone"])
def test_no_new_access_passes_only_principals_of_the_two_accounts(client: Any, principal: Any, result: str) -> None:
    document = {"Version": "2012-10-17", "Statement": [{"Sid": "Grant", "Effect": "Allow", "Principal": principal,
                                                        "Action": "kms:Decrypt", "Resource": "*"}]}
    answer = client.check_no_new_access(newPolicyDocument=json.dumps(document),
                                        existingPolicyDocument=json.dumps(REFERENCE), policyType="RESOURCE_POLICY")
    assert answer["result"] == result


def test_no_new_access_compares_with_the_existing_policy_conditions_included(client: Any) -> None:
    existing = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Partner", "Effect": "Allow", "Principal": {"AWS": "333333333333"}, "Action": "kms:Decrypt",
        "Resource": "*", "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}}]}
    narrower = copy_with(existing, Action="kms:Decrypt")
    wider = copy_with(existing, Action=["kms:Decrypt", "kms:ReEncryptFrom"])
    unconditioned = copy_with(existing, Condition=None)

    def result(new: dict[str, Any]) -> str:
        return str(client.check_no_new_access(newPolicyDocument=json.dumps(new),
                                              existingPolicyDocument=json.dumps(existing),
                                              policyType="RESOURCE_POLICY")["result"])

    assert [result(narrower), result(wider), result(unconditioned)] == ["PASS", "FAIL", "FAIL"]


def copy_with(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = json.loads(json.dumps(document))
    for name, value in changes.items():
        if value is None:
            changed["Statement"][0].pop(name)
        else:
            changed["Statement"][0][name] = value
    return changed


def test_access_not_granted_names_the_statement_that_grants_it(client: Any) -> None:
    document = bucket_policy()
    forbidden = list(analyzer.FORBIDDEN_ACTIONS["s3"])

    def check(policy: dict[str, Any]) -> dict[str, Any]:
        return dict(client.check_access_not_granted(policyDocument=json.dumps(policy),
                                                    access=[{"actions": forbidden}], policyType="RESOURCE_POLICY"))

    assert check(document)["result"] == "PASS"
    document["Statement"][0]["Action"].append("s3:DeleteObjectVersion")
    answer = check(document)
    assert answer["result"] == "FAIL"
    assert [r["statementIndex"] for r in answer["reasons"]] == [0]
    assert "s3:DeleteObjectVersion" in answer["reasons"][0]["description"]


def test_findings_are_paged_like_aws(client: Any) -> None:
    document = bucket_policy()
    document.pop("Version")
    document["Statement"][0]["Action"] = ["s3:ReplicateObjectz", "s3:ReplicateTagz"]

    first = client.validate_policy(policyDocument=json.dumps(document), policyType="RESOURCE_POLICY", maxResults=1)
    assert len(first["findings"]) == 1 and first["nextToken"]
    assert len(validate(client, document)) == 3


def test_requests_aws_would_refuse_are_refused_with_its_errors(client: Any, backend: EmbeddedBackend) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.validate_policy(policyDocument="{}", policyType="BUCKET_POLICY")
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "policyType must be one of" in refused.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.check_no_new_access(newPolicyDocument="not json", existingPolicyDocument="{}",
                                   policyType="RESOURCE_POLICY")
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    assert validate(client, "{not json")[0]["issueCode"] == "JSON_SYNTAX_ERROR"


@pytest.mark.cli
def test_the_aws_cli_reaches_it_through_the_backend_s_config_file(backend: EmbeddedBackend, tmp_path: Path) -> None:
    import subprocess
    import sys

    aws = Path(sys.executable).parent / "aws"
    result = subprocess.run(
        [str(aws), "--profile", "drill-vault", "accessanalyzer", "validate-policy", "--policy-type",
         "IDENTITY_POLICY", "--policy-document", json.dumps({"Statement": [
             {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}), "--output", "json"],
        env={"PATH": "/usr/bin:/bin", **backend.environ()}, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert [f["issueCode"] for f in json.loads(result.stdout)["findings"]] == ["MISSING_VERSION"]
