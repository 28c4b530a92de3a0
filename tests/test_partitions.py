"""China and GovCloud runs: every document the run applies names its own partition, never `aws`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_lib import aws_facts, policies, provision
from runbook_lib.context import RunContext
from runbook_lib.ledger import Ledger
from runbook_lib.params import RunbookParams, load_params

EXAMPLE = Path(__file__).resolve().parents[1] / "parameters" / "aws.example.yaml"
ARN = re.compile(r"arn:([a-z-]+):")


def _params(region: str, tmp_path: Path) -> RunbookParams:
    """The example parameter set moved to another region (and so another partition)."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["region"] = region
    data["vault"]["kms_key_arn"] = aws_facts.kms_key_arn(
        region, data["vault"]["account_id"], "0b6d7c1e-2f0e-4e55-9d7e-3f1b1c2d3e4f")
    path = tmp_path / f"{region}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_params(path)


def _arn_partitions(document: Any) -> set[str]:
    return set(ARN.findall(json.dumps(document)))


@pytest.mark.parametrize(("region", "partition", "domain"), [
    ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
    ("us-gov-west-1", "aws-us-gov", "amazonaws.com"),
])
def test_every_document_uses_the_partition_of_its_region(
    region: str, partition: str, domain: str, tmp_path: Path
) -> None:
    params = _params(region, tmp_path)
    recovery_key = aws_facts.kms_key_arn(region, params.recovery.account_id, "1234abcd-12ab-34cd-56ef-1234567890ab")
    ledger = Ledger(tmp_path)  # what phase 01 left: the recovery key's ARN
    ledger.set_resource("recovery_key_arn", recovery_key)
    ctx: Any = RunContext(params=params, ledger=ledger, sessions=None)  # type: ignore[arg-type]  # no AWS call
    built = provision.documents(ctx)
    topic = aws_facts.sns_topic_arn(region, params.vault.account_id, params.notification_topic_name)
    built["sns_topic_policy"] = policies.sns_topic_policy(
        topic_arn=topic, event_rule_arn=f"arn:{partition}:events:{region}:{params.vault.account_id}:rule/r",
        account_id=params.vault.account_id)
    built["params_arns"] = [params.vault_bucket_arn, params.recovery_bucket_arn, params.report_bucket_arn,
                            params.batch_role_arn, params.batch_policy_arn]

    assert {"batch_role_policy", "replication_configuration", "recovery_key_statements"} <= set(built)
    for name, document in built.items():
        assert _arn_partitions(document) <= {partition}, name
    assert _arn_partitions(built["replication_configuration"]) == {partition}
    assert _arn_partitions(built["recovery_bucket_policy"]) == {partition}
    assert _arn_partitions(built["recovery_key_policy"]) == {partition}
    via = {statement["Condition"]["StringEquals"]["kms:ViaService"]
           for document in (built["batch_role_policy"]["Statement"], built["vault_key_policy_statements"],
                            built["recovery_key_statements"])
           for statement in document if "Condition" in statement}
    assert via == {f"s3.{region}.{domain}"}
