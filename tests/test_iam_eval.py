"""The embedded IAM evaluator: each rule AWS applies, then the seed's policies end to end."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from runbook_lib.embedded.iam_eval import (
    Decision,
    PreparedCheck,
    Request,
    can_assume,
    evaluate,
    is_allowed,
)
from runbook_lib.embedded.task_caches import use_caches
from runbook_lib.errors import BackendError

VAULT = "111111111111"
RECOVERY = "222222222222"
ROLE = f"arn:aws:iam::{VAULT}:role/s3-batch-replication-role"
OTHER_ROLE = f"arn:aws:iam::{VAULT}:role/someone-else"
REGION = "us-east-1"
VAULT_BUCKET = "vault-golden-copies"
RECOVERY_BUCKET = "recovery-golden-copies"
REPORT_BUCKET = "vault-batch-reports"
VAULT_KEY = f"arn:aws:kms:{REGION}:{VAULT}:key/11111111-aaaa-bbbb-cccc-111111111111"
RECOVERY_KEY = f"arn:aws:kms:{REGION}:{RECOVERY}:key/22222222-aaaa-bbbb-cccc-222222222222"
BATCH_SERVICE = "batchoperations.s3.amazonaws.com"

Policy = dict[str, object]


def request(
    action: str = "s3:GetObject",
    resource: str = f"arn:aws:s3:::{VAULT_BUCKET}/key",
    *,
    context: Mapping[str, str | list[str]] | None = None,
    principal: str = ROLE,
    account: str = VAULT,
    resource_account: str = VAULT,
) -> Request:
    """A request by the batch role (unless told otherwise) in the vault account."""
    return Request(
        principal_arn=principal,
        principal_account=account,
        action=action,
        resource=resource,
        resource_account=resource_account,
        context=dict(context or {}),
    )


def policy(*statements: Mapping[str, object]) -> Policy:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: object = "*", resource: object = "*", **extra: object) -> Policy:
    """A one-statement Allow policy; extra keys (Condition, Principal, Sid...) are added as given."""
    return policy({"Effect": "Allow", "Action": action, "Resource": resource, **extra})


def condition_allows(condition: Mapping[str, object], context: Mapping[str, str | list[str]]) -> bool:
    """Whether an Allow-everything statement guarded by the condition applies to the request."""
    verdict = evaluate(allow(Condition=condition), request(context=context))
    assert verdict in ("Allow", "NotApplicable")
    return verdict == "Allow"


# --- condition operators ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "policy_value", "request_value", "expected"),
    [
        ("StringEquals", "us-east-1", "us-east-1", True),
        ("StringEquals", "us-east-1", "US-EAST-1", False),
        ("StringEquals", ["eu-west-1", "us-east-1"], "us-east-1", True),
        ("StringNotEquals", "us-east-1", "eu-west-1", True),
        ("StringNotEquals", "us-east-1", "us-east-1", False),
        ("StringNotEquals", ["eu-west-1", "us-east-1"], "us-east-1", False),
        ("StringEqualsIgnoreCase", "US-East-1", "us-east-1", True),
        ("StringEqualsIgnoreCase", "us-east-1", "us-east-2", False),
        ("StringNotEqualsIgnoreCase", "US-East-1", "us-east-1", False),
        ("StringNotEqualsIgnoreCase", "US-East-1", "eu-west-1", True),
        ("StringLike", "s3.*.amazonaws.com", "s3.us-east-1.amazonaws.com", True),
        ("StringLike", "s3.us-east-?.amazonaws.com", "s3.us-east-2.amazonaws.com", True),
        ("StringLike", "s3.us-east-?.amazonaws.com", "s3.us-east-12.amazonaws.com", False),
        ("StringLike", "s3.*.amazonaws.com", "S3.us-east-1.amazonaws.com", False),
        ("StringNotLike", "s3.*", "ec2.us-east-1.amazonaws.com", True),
        ("StringNotLike", "s3.*", "s3.us-east-1.amazonaws.com", False),
        ("ArnEquals", f"arn:aws:s3:::{VAULT_BUCKET}", f"arn:aws:s3:::{VAULT_BUCKET}", True),
        ("ArnEquals", f"arn:aws:s3:::{VAULT_BUCKET}", f"arn:aws:s3:::{RECOVERY_BUCKET}", False),
        ("ArnLike", f"arn:aws:iam::{VAULT}:role/*", ROLE, True),
        ("ArnLike", f"arn:aws:iam::{RECOVERY}:role/*", ROLE, False),
        ("ArnLike", "arn:aws:s3:::vault-*", f"arn:aws:s3:::{VAULT_BUCKET}", True),
        # ARN operators match part by part, so `*` cannot swallow a colon the way StringLike's can.
        (
            "ArnLike",
            "arn:aws:sns:*:111111111111:topic/*",
            "arn:aws:sns:us-east-1:999999999999:x:111111111111:topic/a",
            False,
        ),
        (
            "StringLike",
            "arn:aws:sns:*:111111111111:topic/*",
            "arn:aws:sns:us-east-1:999999999999:x:111111111111:topic/a",
            True,
        ),
        ("ArnLike", "arn:aws:s3:::*", "not-an-arn", False),
        ("ArnNotEquals", f"arn:aws:s3:::{VAULT_BUCKET}", f"arn:aws:s3:::{RECOVERY_BUCKET}", True),
        ("ArnNotEquals", f"arn:aws:s3:::{VAULT_BUCKET}", f"arn:aws:s3:::{VAULT_BUCKET}", False),
        ("ArnNotLike", f"arn:aws:iam::{VAULT}:role/*", ROLE, False),
        ("ArnNotLike", f"arn:aws:iam::{RECOVERY}:role/*", ROLE, True),
        ("Bool", "true", "true", True),
        ("Bool", "true", "false", False),
        ("Bool", True, "true", True),
        ("Bool", False, "true", False),
        ("Bool", "false", "FALSE", True),
        ("NumericEquals", "10", "10.0", True),
        ("NumericEquals", "10", "11", False),
        ("NumericNotEquals", "10", "11", True),
        ("NumericNotEquals", "10", "10", False),
        ("NumericLessThan", "10", "9", True),
        ("NumericLessThan", "10", "10", False),
        ("NumericLessThanEquals", "10", "10", True),
        ("NumericLessThanEquals", "10", "11", False),
        ("NumericGreaterThan", "10", "11", True),
        ("NumericGreaterThan", "10", "10", False),
        ("NumericGreaterThanEquals", "10", "10", True),
        ("NumericGreaterThanEquals", "10", "9", False),
        ("NumericGreaterThanEquals", 10, "12", True),
        ("NumericEquals", "10", "ten", False),
        ("Null", "false", "anything", True),
        ("Null", "true", "anything", False),
    ],
)
def test_condition_operator_matches_as_aws_does(
    operator: str, policy_value: object, request_value: str, expected: bool
) -> None:
    assert condition_allows({operator: {"test:Key": policy_value}}, {"test:Key": request_value}) is expected


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        # A positive operator cannot match a value that is not there...
        ("StringEquals", False),
        ("StringEqualsIgnoreCase", False),
        ("StringLike", False),
        ("ArnEquals", False),
        ("ArnLike", False),
        ("NumericLessThan", False),
        ("Bool", False),
        # ...a negated one is true when the key is missing...
        ("StringNotEquals", True),
        ("StringNotEqualsIgnoreCase", True),
        ("StringNotLike", True),
        ("ArnNotEquals", True),
        ("ArnNotLike", True),
        ("NumericNotEquals", True),
        # ...IfExists makes any operator true on a missing key...
        ("StringEqualsIfExists", True),
        ("StringNotEqualsIfExists", True),
        ("ArnLikeIfExists", True),
        ("BoolIfExists", True),
        # ...and the set qualifiers see an empty set: "all of nothing" holds, "any of nothing" not.
        ("ForAllValues:StringEquals", True),
        ("ForAllValues:StringNotLike", True),
        ("ForAnyValue:StringEquals", False),
        ("ForAnyValue:StringNotEquals", False),
        ("ForAnyValue:StringEqualsIfExists", True),
    ],
)
def test_missing_condition_key(operator: str, expected: bool) -> None:
    assert condition_allows({operator: {"aws:SourceAccount": VAULT}}, {}) is expected


@pytest.mark.parametrize(
    ("null_value", "context", "expected"),
    [
        ("true", {}, True),
        ("true", {"aws:SourceAccount": VAULT}, False),
        ("false", {}, False),
        ("false", {"aws:SourceAccount": VAULT}, True),
        (True, {}, True),
    ],
)
def test_null_checks_only_whether_the_key_is_there(
    null_value: object, context: dict[str, str], expected: bool
) -> None:
    assert condition_allows({"Null": {"aws:SourceAccount": null_value}}, context) is expected


@pytest.mark.parametrize(
    ("operator", "request_value", "expected"),
    [
        ("StringEqualsIfExists", "s3.us-east-1.amazonaws.com", True),
        ("StringEqualsIfExists", "ec2.us-east-1.amazonaws.com", False),
        ("StringNotEqualsIfExists", "ec2.us-east-1.amazonaws.com", True),
        ("StringNotEqualsIfExists", "s3.us-east-1.amazonaws.com", False),
    ],
)
def test_if_exists_checks_a_present_key_like_the_plain_operator(
    operator: str, request_value: str, expected: bool
) -> None:
    condition = {operator: {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    assert condition_allows(condition, {"kms:ViaService": request_value}) is expected


@pytest.mark.parametrize(
    ("operator", "policy_values", "request_values", "expected"),
    [
        ("ForAnyValue:StringEquals", ["b", "c"], ["a", "b"], True),
        ("ForAnyValue:StringEquals", ["b", "c"], ["a", "d"], False),
        ("ForAnyValue:StringLike", ["key1*"], ["key2", "key1:hr"], True),
        ("ForAnyValue:StringNotEquals", ["a"], ["a", "z"], True),
        ("ForAnyValue:StringNotEquals", ["a"], ["a"], False),
        ("ForAllValues:StringEquals", ["b", "c", "d"], ["b", "c"], True),
        ("ForAllValues:StringEquals", ["b", "c", "d"], ["b", "x"], False),
        ("ForAllValues:StringNotLike", ["key1*"], ["key2:audit"], True),
        ("ForAllValues:StringNotLike", ["key1*"], ["key1:legal"], False),
        ("ForAllValues:StringNotLike", ["key1*"], ["key2:audit", "key1:legal"], False),
        ("ForAllValues:StringEquals", ["b"], [], True),
        ("ForAnyValue:StringEquals", ["b"], [], False),
    ],
)
def test_set_qualifiers_over_multivalued_keys(
    operator: str, policy_values: list[str], request_values: list[str], expected: bool
) -> None:
    condition = {operator: {"aws:TagKeys": policy_values}}
    assert condition_allows(condition, {"aws:TagKeys": request_values}) is expected


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"kms:ViaService": "s3.us-east-1.amazonaws.com", "aws:SourceAccount": VAULT}, True),
        ({"kms:ViaService": "s3.us-east-1.amazonaws.com", "aws:SourceAccount": RECOVERY}, True),
        ({"kms:ViaService": "s3.us-east-1.amazonaws.com", "aws:SourceAccount": "333333333333"}, False),
        ({"kms:ViaService": "ec2.us-east-1.amazonaws.com", "aws:SourceAccount": VAULT}, False),
        ({"kms:ViaService": "s3.us-east-1.amazonaws.com"}, False),
    ],
)
def test_keys_and_operators_combine_with_and_values_with_or(context: dict[str, str], expected: bool) -> None:
    condition = {
        "StringEquals": {"aws:SourceAccount": [VAULT, RECOVERY]},
        "StringLike": {"kms:ViaService": "s3.*.amazonaws.com"},
    }
    assert condition_allows(condition, context) is expected


def test_two_keys_under_one_operator_must_both_hold() -> None:
    condition = {"StringEquals": {"aws:SourceAccount": VAULT, "kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    assert condition_allows(
        condition, {"aws:SourceAccount": VAULT, "kms:ViaService": "s3.us-east-1.amazonaws.com"}
    )
    assert not condition_allows(
        condition, {"aws:SourceAccount": VAULT, "kms:ViaService": "sqs.us-east-1.amazonaws.com"}
    )


@pytest.mark.parametrize(
    ("policy_key", "context_key"),
    [
        ("kms:ViaService", "kms:viaservice"),
        ("KMS:VIASERVICE", "kms:ViaService"),
        ("kms:EncryptionContext:aws:s3:arn", "kms:encryptioncontext:AWS:S3:ARN"),
    ],
)
def test_condition_keys_ignore_case(policy_key: str, context_key: str) -> None:
    condition = {"StringEquals": {policy_key: "s3.us-east-1.amazonaws.com"}}
    assert condition_allows(condition, {context_key: "s3.us-east-1.amazonaws.com"})


@pytest.mark.parametrize(
    "operator",
    [
        "DateLessThan",
        "IpAddress",
        "BinaryEquals",
        "NullIfExists",
        "ForSomeValues:StringEquals",
        "StringEqual",
    ],
)
def test_an_operator_the_backend_cannot_evaluate_is_refused_by_name(operator: str) -> None:
    with pytest.raises(BackendError, match=operator):
        condition_allows({operator: {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}, {"aws:CurrentTime": "x"})


# --- actions and resources -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("s3:ReplicateObject", "s3:ReplicateObject", True),
        ("s3:ReplicateObject", "s3:replicateobject", True),
        ("S3:REPLICATEOBJECT", "s3:ReplicateObject", True),
        ("s3:ReplicateObject", "s3:ReplicateDelete", False),
        ("s3:List*", "s3:ListBucket", True),
        ("s3:List*", "s3:listbucketversions", True),
        ("s3:List*", "s3:GetObject", False),
        ("s3:Get*", "s3:GetObjectVersionForReplication", True),
        ("s3:Get*Version", "s3:GetObjectVersion", True),
        ("s3:Get*Version", "s3:GetObjectVersionAcl", False),
        ("s3:?etObject", "s3:GetObject", True),
        ("s3:GetObject?cl", "s3:GetObjectAcl", True),
        ("s3:?etObject", "s3:DeleteObject", False),
        ("s3:*", "kms:Decrypt", False),
        ("kms:*", "kms:GenerateDataKey", True),
        ("*", "sts:AssumeRole", True),
    ],
)
def test_action_wildcards_ignore_case(pattern: str, action: str, expected: bool) -> None:
    verdict = evaluate(allow(action=pattern), request(action=action))
    assert (verdict == "Allow") is expected


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        (f"arn:aws:s3:::{RECOVERY_BUCKET}/*", f"arn:aws:s3:::{RECOVERY_BUCKET}/key", True),
        (f"arn:aws:s3:::{RECOVERY_BUCKET}/*", f"arn:aws:s3:::{RECOVERY_BUCKET}/a/b/c.txt", True),
        (f"arn:aws:s3:::{RECOVERY_BUCKET}/*", f"arn:aws:s3:::{RECOVERY_BUCKET}", False),
        (f"arn:aws:s3:::{RECOVERY_BUCKET}/*", f"arn:aws:s3:::{RECOVERY_BUCKET.upper()}/key", False),
        (f"arn:aws:s3:::{RECOVERY_BUCKET}/*", f"arn:aws:s3:::{RECOVERY_BUCKET}-2/key", False),
        (f"arn:aws:s3:::{RECOVERY_BUCKET}", f"arn:aws:s3:::{RECOVERY_BUCKET}/key", False),
        (f"arn:aws:s3:::{RECOVERY_BUCKET}/Reports/*", f"arn:aws:s3:::{RECOVERY_BUCKET}/reports/x", False),
        ("arn:aws:s3:::recovery-golden-copie?/*", f"arn:aws:s3:::{RECOVERY_BUCKET}/key", True),
        ("arn:aws:s3:::*", f"arn:aws:s3:::{RECOVERY_BUCKET}/key", True),
        ("*", VAULT_KEY, True),
        (f"arn:aws:kms:{REGION}:{VAULT}:key/*", VAULT_KEY, True),
        (f"arn:aws:kms:{REGION}:{VAULT}:key/*", RECOVERY_KEY, False),
        # a key "with a star in its name" must be matched literally where the pattern has none
        (f"arn:aws:s3:::{RECOVERY_BUCKET}/a.b", f"arn:aws:s3:::{RECOVERY_BUCKET}/aXb", False),
    ],
)
def test_resource_wildcards_respect_case(pattern: str, resource: str, expected: bool) -> None:
    verdict = evaluate(
        allow(action="s3:ReplicateObject", resource=pattern), request("s3:ReplicateObject", resource)
    )
    assert (verdict == "Allow") is expected


@pytest.mark.parametrize(
    ("statement", "action", "resource", "expected"),
    [
        ({"NotAction": "s3:Delete*", "Resource": "*"}, "s3:GetObject", "arn:aws:s3:::b/k", "Allow"),
        (
            {"NotAction": "s3:Delete*", "Resource": "*"},
            "s3:DeleteObjectVersion",
            "arn:aws:s3:::b/k",
            "NotApplicable",
        ),
        (
            {"NotAction": ["s3:Delete*", "s3:Put*"], "Resource": "*"},
            "s3:PutObject",
            "arn:aws:s3:::b/k",
            "NotApplicable",
        ),
        (
            {"Action": "s3:*", "NotResource": "arn:aws:s3:::b/secret/*"},
            "s3:GetObject",
            "arn:aws:s3:::b/k",
            "Allow",
        ),
        (
            {"Action": "s3:*", "NotResource": "arn:aws:s3:::b/secret/*"},
            "s3:GetObject",
            "arn:aws:s3:::b/secret/k",
            "NotApplicable",
        ),
        (
            {"NotAction": "kms:*", "NotResource": ["arn:aws:s3:::b"]},
            "s3:GetObject",
            "arn:aws:s3:::b/k",
            "Allow",
        ),
    ],
)
def test_not_action_and_not_resource_invert_the_match(
    statement: dict[str, object], action: str, resource: str, expected: str
) -> None:
    assert evaluate(policy({"Effect": "Allow", **statement}), request(action, resource)) == expected


def test_a_single_statement_object_and_string_forms_are_accepted() -> None:
    document = {"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}}
    assert evaluate(document, request("s3:GetObject", "arn:aws:s3:::b/k")) == "Allow"


def test_a_deny_and_an_allow_in_one_policy_deny() -> None:
    document = policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:DeleteObject*", "Resource": "*"},
    )
    assert evaluate(document, request("s3:DeleteObjectVersion")) == "Deny"
    assert evaluate(document, request("s3:GetObject")) == "Allow"


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": ["StringEquals"]},
    ],
)
def test_a_policy_aws_would_reject_is_refused(statement: dict[str, object]) -> None:
    with pytest.raises(BackendError):
        evaluate(policy(statement), request())


# --- principals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        ("*", "Allow"),
        ({"AWS": "*"}, "Allow"),
        ({"AWS": VAULT}, "Allow"),
        ({"AWS": f"arn:aws:iam::{VAULT}:root"}, "Allow"),
        ({"AWS": ROLE}, "Allow"),
        ({"AWS": [OTHER_ROLE, ROLE]}, "Allow"),
        ({"AWS": OTHER_ROLE}, "NotApplicable"),
        ({"AWS": RECOVERY}, "NotApplicable"),
        ({"AWS": f"arn:aws:iam::{RECOVERY}:root"}, "NotApplicable"),
        ({"Service": BATCH_SERVICE}, "NotApplicable"),
    ],
)
def test_resource_policy_principal_forms(principal: object, expected: str) -> None:
    bucket_policy = allow("s3:ReplicateObject", f"arn:aws:s3:::{RECOVERY_BUCKET}/*", Principal=principal)
    replicate = request("s3:ReplicateObject", f"arn:aws:s3:::{RECOVERY_BUCKET}/k", resource_account=RECOVERY)
    assert evaluate(bucket_policy, replicate) == expected


@pytest.mark.parametrize(
    ("not_principal", "denied"),
    [
        # the role escapes the deny only when its account is listed with it, as AWS checks both
        ({"AWS": [ROLE, f"arn:aws:iam::{VAULT}:root"]}, False),
        ({"AWS": [ROLE, VAULT]}, False),
        ({"AWS": ROLE}, True),
        ({"AWS": [OTHER_ROLE, f"arn:aws:iam::{VAULT}:root"]}, True),
        ({"AWS": f"arn:aws:iam::{RECOVERY}:root"}, True),
    ],
)
def test_not_principal_deny_spares_only_listed_principals(not_principal: object, denied: bool) -> None:
    bucket_policy = policy(
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "NotPrincipal": not_principal, "Action": "s3:*", "Resource": "*"},
    )
    decision = is_allowed(request("s3:GetObject"), resource_policy=bucket_policy)
    assert decision.allowed is not denied


# --- combining identity and resource policies -----------------------------------------------


REPLICATE = request("s3:ReplicateObject", f"arn:aws:s3:::{RECOVERY_BUCKET}/key", resource_account=RECOVERY)
ROLE_MAY_REPLICATE = allow(["s3:ReplicateObject", "s3:ReplicateDelete"], f"arn:aws:s3:::{RECOVERY_BUCKET}/*")
BUCKET_ALLOWS_ROLE = allow(
    "s3:Replicate*", f"arn:aws:s3:::{RECOVERY_BUCKET}/*", Principal={"AWS": ROLE}, Sid="Replicas"
)


@pytest.mark.parametrize(
    ("identity_policies", "resource_policy", "deny_sid_where"),
    [
        (
            [ROLE_MAY_REPLICATE],
            policy(
                BUCKET_ALLOWS_ROLE["Statement"][0],  # type: ignore[index]
                {
                    "Sid": "NoWrites",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:Replicate*",
                    "Resource": "*",
                },
            ),
            ('Sid "NoWrites"', "bucket policy"),
        ),
        (
            [
                ROLE_MAY_REPLICATE,
                policy({"Sid": "Freeze", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}),
            ],
            BUCKET_ALLOWS_ROLE,
            ('Sid "Freeze"', "identity policy"),
        ),
        (
            [ROLE_MAY_REPLICATE],
            policy(
                BUCKET_ALLOWS_ROLE["Statement"][0],  # type: ignore[index]
                {"Effect": "Deny", "Principal": {"AWS": VAULT}, "Action": "s3:*", "Resource": "*"},
            ),
            ("statement #2", "bucket policy"),
        ),
    ],
)
def test_an_explicit_deny_anywhere_wins_and_is_named(
    identity_policies: list[Policy], resource_policy: Policy, deny_sid_where: tuple[str, str]
) -> None:
    decision = is_allowed(REPLICATE, identity_policies=identity_policies, resource_policy=resource_policy)
    assert not decision.allowed
    label, where = deny_sid_where
    assert "Explicit deny" in decision.reason
    assert label in decision.reason
    assert where in decision.reason


@pytest.mark.parametrize(
    ("identity_policies", "resource_policy", "allowed"),
    [
        ([allow("s3:GetObject", f"arn:aws:s3:::{VAULT_BUCKET}/*")], None, True),
        ([], allow("s3:GetObject", f"arn:aws:s3:::{VAULT_BUCKET}/*", Principal={"AWS": ROLE}), True),
        ([], allow("s3:GetObject", f"arn:aws:s3:::{VAULT_BUCKET}/*", Principal="*"), True),
        # naming the account only lets identity policies grant: on its own it grants nothing
        ([], allow("s3:GetObject", f"arn:aws:s3:::{VAULT_BUCKET}/*", Principal={"AWS": VAULT}), False),
        ([], allow("s3:GetObject", f"arn:aws:s3:::{VAULT_BUCKET}/*", Principal={"AWS": OTHER_ROLE}), False),
        ([allow("s3:PutObject", f"arn:aws:s3:::{VAULT_BUCKET}/*")], None, False),
        ([], None, False),
    ],
)
def test_same_account_either_policy_is_enough(
    identity_policies: list[Policy], resource_policy: Policy | None, allowed: bool
) -> None:
    decision = is_allowed(
        request("s3:GetObject"), identity_policies=identity_policies, resource_policy=resource_policy
    )
    assert decision.allowed is allowed


def test_same_account_denial_says_what_to_add() -> None:
    decision = is_allowed(request("s3:GetObject"), identity_policies=[allow("s3:PutObject")])
    assert not decision.allowed
    assert "No identity policy allows s3:GetObject" in decision.reason
    assert f"arn:aws:s3:::{VAULT_BUCKET}/key" in decision.reason


@pytest.mark.parametrize(
    ("identity_policies", "resource_policy", "allowed", "reason_part"),
    [
        ([ROLE_MAY_REPLICATE], BUCKET_ALLOWS_ROLE, True, 'Sid "Replicas"'),
        (
            [ROLE_MAY_REPLICATE],
            allow(
                "s3:Replicate*",
                f"arn:aws:s3:::{RECOVERY_BUCKET}/*",
                Principal={"AWS": f"arn:aws:iam::{VAULT}:root"},
            ),
            True,
            "both allow",
        ),
        ([ROLE_MAY_REPLICATE], None, False, "there is no bucket policy"),
        (
            [ROLE_MAY_REPLICATE],
            allow("s3:Replicate*", f"arn:aws:s3:::{RECOVERY_BUCKET}/*", Principal={"AWS": OTHER_ROLE}),
            False,
            "it does not",
        ),
        ([], BUCKET_ALLOWS_ROLE, False, "no identity policy allows"),
        (
            [allow("s3:*", f"arn:aws:s3:::{VAULT_BUCKET}/*")],
            BUCKET_ALLOWS_ROLE,
            False,
            "no identity policy allows",
        ),
    ],
)
def test_cross_account_needs_both_policies(
    identity_policies: list[Policy], resource_policy: Policy | None, allowed: bool, reason_part: str
) -> None:
    decision = is_allowed(REPLICATE, identity_policies=identity_policies, resource_policy=resource_policy)
    assert decision.allowed is allowed
    assert reason_part in decision.reason
    if not allowed:
        assert decision.reason.startswith("Cross-account request denied")


# --- KMS key policies --------------------------------------------------------------------------


def key_policy(*principals: object, actions: object = "kms:*") -> Policy:
    return policy(
        *(
            {
                "Sid": f"grant-{i}",
                "Effect": "Allow",
                "Principal": {"AWS": p},
                "Action": actions,
                "Resource": "*",
            }
            for i, p in enumerate(principals, start=1)
        )
    )


DECRYPT = request("kms:Decrypt", VAULT_KEY)
ROLE_MAY_DECRYPT = allow("kms:Decrypt", VAULT_KEY)


@pytest.mark.parametrize(
    ("key", "identity_policies", "allowed", "reason_part"),
    [
        (key_policy(ROLE, actions=["kms:Decrypt", "kms:Encrypt"]), [], True, "key policy"),
        (key_policy(f"arn:aws:iam::{VAULT}:root"), [ROLE_MAY_DECRYPT], True, "lets IAM policies grant"),
        (key_policy(VAULT), [ROLE_MAY_DECRYPT], True, "lets IAM policies grant"),
        (key_policy(f"arn:aws:iam::{VAULT}:root"), [], False, "no identity policy allows"),
        (key_policy(OTHER_ROLE), [ROLE_MAY_DECRYPT], False, "neither names"),
        (
            key_policy(f"arn:aws:iam::{VAULT}:root", actions="kms:Encrypt"),
            [ROLE_MAY_DECRYPT],
            False,
            "neither names",
        ),
        (key_policy(f"arn:aws:iam::{RECOVERY}:root"), [ROLE_MAY_DECRYPT], False, "neither names"),
    ],
)
def test_kms_key_in_its_own_account_counts_identity_policies_only_when_delegated(
    key: Policy, identity_policies: list[Policy], allowed: bool, reason_part: str
) -> None:
    decision = is_allowed(
        DECRYPT, identity_policies=identity_policies, resource_policy=key, resource_is_kms_key=True
    )
    assert decision.allowed is allowed
    assert reason_part in decision.reason


def test_the_same_policies_on_a_bucket_need_no_delegation() -> None:
    """What sets KMS apart: on S3, a same-account identity policy suffices without the root grant."""
    bucket = key_policy(OTHER_ROLE)
    read = request("s3:GetObject")
    assert is_allowed(read, identity_policies=[allow("s3:GetObject")], resource_policy=bucket).allowed
    assert not is_allowed(
        DECRYPT, identity_policies=[ROLE_MAY_DECRYPT], resource_policy=bucket, resource_is_kms_key=True
    ).allowed


ENCRYPT_REMOTE = request("kms:Encrypt", RECOVERY_KEY, resource_account=RECOVERY)
ROLE_MAY_ENCRYPT = allow("kms:Encrypt", RECOVERY_KEY)


@pytest.mark.parametrize(
    ("key", "identity_policies", "allowed"),
    [
        (key_policy(f"arn:aws:iam::{RECOVERY}:root", f"arn:aws:iam::{VAULT}:root"), [ROLE_MAY_ENCRYPT], True),
        (key_policy(f"arn:aws:iam::{RECOVERY}:root", ROLE), [ROLE_MAY_ENCRYPT], True),
        (key_policy(f"arn:aws:iam::{RECOVERY}:root", VAULT), [ROLE_MAY_ENCRYPT], True),
        (key_policy(f"arn:aws:iam::{RECOVERY}:root", f"arn:aws:iam::{VAULT}:root"), [], False),
        (key_policy(f"arn:aws:iam::{RECOVERY}:root", ROLE), [], False),
        (key_policy(f"arn:aws:iam::{RECOVERY}:root"), [ROLE_MAY_ENCRYPT], False),
        (
            key_policy(f"arn:aws:iam::{RECOVERY}:root", f"arn:aws:iam::{VAULT}:root", actions="kms:Decrypt"),
            [ROLE_MAY_ENCRYPT],
            False,
        ),
    ],
)
def test_kms_key_of_another_account_needs_its_key_policy_and_the_identity_policy(
    key: Policy, identity_policies: list[Policy], allowed: bool
) -> None:
    decision = is_allowed(
        ENCRYPT_REMOTE, identity_policies=identity_policies, resource_policy=key, resource_is_kms_key=True
    )
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason.startswith("Cross-account request denied")


# --- trust policies ----------------------------------------------------------------------------


def trust(principal: object, condition: Mapping[str, object] | None = None, effect: str = "Allow") -> Policy:
    statement: dict[str, object] = {"Effect": effect, "Principal": principal, "Action": "sts:AssumeRole"}
    if condition is not None:
        statement["Condition"] = condition
    return policy(statement)


SEED_TRUST = trust({"Service": [BATCH_SERVICE, "s3.amazonaws.com"]})


@pytest.mark.parametrize(
    ("trust_policy", "service", "expected"),
    [
        (SEED_TRUST, BATCH_SERVICE, True),
        (SEED_TRUST, "s3.amazonaws.com", True),
        (SEED_TRUST, "lambda.amazonaws.com", False),
        (trust({"Service": BATCH_SERVICE}), BATCH_SERVICE, True),
        (trust({"Service": "s3.amazonaws.com"}), BATCH_SERVICE, False),
        (trust({"AWS": ROLE}), BATCH_SERVICE, False),
        (trust({"AWS": "*"}), BATCH_SERVICE, False),
        (
            policy({"Effect": "Allow", "Principal": {"Service": BATCH_SERVICE},
                    "Action": "sts:AssumeRoleWithWebIdentity"}),
            BATCH_SERVICE,
            False,
        ),
        (
            policy(
                SEED_TRUST["Statement"][0],  # type: ignore[index]
                {"Effect": "Deny", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:*"},
            ),
            "s3.amazonaws.com",
            False,
        ),
    ],
)
def test_trust_policy_names_the_service(trust_policy: Policy, service: str, expected: bool) -> None:
    assert can_assume(trust_policy, service) is expected


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"aws:SourceAccount": VAULT}, True),
        ({"aws:sourceaccount": VAULT}, True),
        ({"aws:SourceAccount": RECOVERY}, False),
        (None, False),
    ],
)
def test_trust_policy_source_account_condition(context: dict[str, str] | None, expected: bool) -> None:
    confused_deputy_guard = trust({"Service": BATCH_SERVICE}, {"StringEquals": {"aws:SourceAccount": VAULT}})
    assert can_assume(confused_deputy_guard, BATCH_SERVICE, context=context) is expected


# --- the seed's policies, end to end -------------------------------------------------------------


def seed_role_policy() -> Policy:
    """The seed's step-2 role policy with its JSON typos and stray spaces fixed."""
    return policy(
        {
            "Sid": "1",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": VAULT_KEY,
            "Condition": {
                "StringLike": {
                    "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{VAULT_BUCKET}",
                    "kms:ViaService": f"s3.{REGION}.amazonaws.com",
                }
            },
        },
        {
            "Sid": "2",
            "Effect": "Allow",
            "Action": "kms:Encrypt",
            "Resource": RECOVERY_KEY,
            "Condition": {
                "StringLike": {
                    "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{RECOVERY_BUCKET}",
                    "kms:ViaService": f"s3.{REGION}.amazonaws.com",
                }
            },
        },
        {
            "Sid": "3",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetReplicationConfiguration", "s3:PutInventoryConfiguration"],
            "Resource": f"arn:aws:s3:::{VAULT_BUCKET}",
        },
        {
            "Sid": "4",
            "Effect": "Allow",
            "Action": [
                "s3:GetObjectRetention",
                "s3:GetObjectVersionAcl",
                "s3:GetObjectTagging",
                "s3:GetObjectVersionForReplication",
                "s3:GetObjectLegalHold",
                "s3:InitiateReplication",
            ],
            "Resource": [f"arn:aws:s3:::{VAULT_BUCKET}", f"arn:aws:s3:::{VAULT_BUCKET}/*"],
        },
        {
            "Sid": "5",
            "Effect": "Allow",
            "Action": ["s3:ReplicateObject", "s3:ReplicateDelete"],
            "Resource": f"arn:aws:s3:::{RECOVERY_BUCKET}/*",
        },
        {
            "Sid": "6",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"arn:aws:s3:::{REPORT_BUCKET}/*",
        },
        {
            "Sid": "7",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{REPORT_BUCKET}/*",
        },
    )


def seed_bucket_policy() -> Policy:
    """The seed's step-5 destination bucket policy."""
    return {
        "Version": "2012-10-17",
        "Id": "PolicyForDestinationBucket",
        "Statement": [
            {
                "Sid": "Permissions on objects",
                "Effect": "Allow",
                "Principal": {"AWS": ROLE},
                "Action": ["s3:ReplicateDelete", "s3:ReplicateObject"],
                "Resource": f"arn:aws:s3:::{RECOVERY_BUCKET}/*",
            },
            {
                "Sid": "Permissions on bucket",
                "Effect": "Allow",
                "Principal": {"AWS": ROLE},
                "Action": ["s3:List*", "s3:GetBucketVersioning", "s3:PutBucketVersioning"],
                "Resource": f"arn:aws:s3:::{RECOVERY_BUCKET}",
            },
        ],
    }


def seed_vault_key_policy() -> Policy:
    """Step 4: the role as a key user, the recovery account as another account, root delegation kept."""
    usage = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    return policy(
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{VAULT}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "Allow use of the key",
            "Effect": "Allow",
            "Principal": {"AWS": [ROLE, f"arn:aws:iam::{RECOVERY}:root"]},
            "Action": usage,
            "Resource": "*",
        },
    )


def seed_recovery_key_policy(*, other_accounts: bool = True) -> Policy:
    """Step 1a: the recovery key, with the vault account under "Other AWS accounts" unless told not."""
    usage = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    statements: list[dict[str, object]] = [
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{RECOVERY}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
    ]
    if other_accounts:
        statements.append(
            {
                "Sid": "Allow use of the key",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{VAULT}:root"},
                "Action": usage,
                "Resource": "*",
            }
        )
    return policy(*statements)


def test_seed_policies_let_the_role_replicate_into_the_recovery_account() -> None:
    decision = is_allowed(
        REPLICATE, identity_policies=[seed_role_policy()], resource_policy=seed_bucket_policy()
    )
    assert decision.allowed, decision.reason
    assert 'Sid "5"' in decision.reason and 'Sid "Permissions on objects"' in decision.reason


def test_seed_replication_without_the_bucket_policy_fails_with_an_actionable_reason() -> None:
    decision = is_allowed(REPLICATE, identity_policies=[seed_role_policy()], resource_policy=None)
    assert not decision.allowed
    assert decision.reason == (
        f"Cross-account request denied: s3:ReplicateObject on arn:aws:s3:::{RECOVERY_BUCKET}/key "
        f"by {ROLE} needs the bucket policy in account {RECOVERY} to allow it, but there is no "
        f"bucket policy; add a statement there that allows s3:ReplicateObject to {ROLE} or to "
        f"account {VAULT}."
    )


@pytest.mark.parametrize(
    ("action", "resource", "resource_account", "allowed"),
    [
        ("s3:GetObjectVersionForReplication", f"arn:aws:s3:::{VAULT_BUCKET}/k", VAULT, True),
        ("s3:GetObjectRetention", f"arn:aws:s3:::{VAULT_BUCKET}/k", VAULT, True),
        ("s3:GetObjectLegalHold", f"arn:aws:s3:::{VAULT_BUCKET}/k", VAULT, True),
        ("s3:InitiateReplication", f"arn:aws:s3:::{VAULT_BUCKET}/k", VAULT, True),
        ("s3:GetReplicationConfiguration", f"arn:aws:s3:::{VAULT_BUCKET}", VAULT, True),
        ("s3:PutObject", f"arn:aws:s3:::{REPORT_BUCKET}/job-1/manifest.json", VAULT, True),
        ("s3:ReplicateDelete", f"arn:aws:s3:::{RECOVERY_BUCKET}/k", RECOVERY, True),
        (
            "s3:ListBucket",
            f"arn:aws:s3:::{RECOVERY_BUCKET}",
            RECOVERY,
            False,
        ),  # the role policy never grants it
        ("s3:ReplicateTags", f"arn:aws:s3:::{RECOVERY_BUCKET}/k", RECOVERY, False),
        ("s3:GetObjectVersionTagging", f"arn:aws:s3:::{VAULT_BUCKET}/k", VAULT, False),
        ("s3:PutObject", f"arn:aws:s3:::{VAULT_BUCKET}/k", VAULT, False),
    ],
)
def test_seed_role_policy_covers_the_replication_steps(
    action: str, resource: str, resource_account: str, allowed: bool
) -> None:
    task = request(action, resource, resource_account=resource_account)
    decision = is_allowed(task, identity_policies=[seed_role_policy()], resource_policy=seed_bucket_policy())
    assert decision.allowed is allowed, decision.reason


S3_VIA = f"s3.{REGION}.amazonaws.com"


@pytest.mark.parametrize(
    ("context", "allowed"),
    [
        (
            {"kms:ViaService": S3_VIA, "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{VAULT_BUCKET}"},
            True,
        ),
        (
            {"kms:ViaService": S3_VIA, "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{VAULT_BUCKET}/k"},
            True,
        ),
        (
            {
                "kms:ViaService": "ec2.us-east-1.amazonaws.com",
                "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{VAULT_BUCKET}",
            },
            True,
        ),
        ({}, True),
    ],
)
def test_seed_vault_key_lets_the_role_decrypt_as_a_key_user(context: dict[str, str], allowed: bool) -> None:
    """The key policy names the role directly, so the identity policy's conditions do not gate it."""
    task = request("kms:Decrypt", VAULT_KEY, context=context)
    decision = is_allowed(
        task,
        identity_policies=[seed_role_policy()],
        resource_policy=seed_vault_key_policy(),
        resource_is_kms_key=True,
    )
    assert decision.allowed is allowed, decision.reason


@pytest.mark.parametrize(
    ("context", "allowed"),
    [
        # with S3 Bucket Keys the encryption context is the bucket ARN, which the seed's condition names
        (
            {"kms:ViaService": S3_VIA, "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{VAULT_BUCKET}"},
            True,
        ),
        # without them it is the object ARN, which the seed's condition (no /*) does not cover
        (
            {"kms:ViaService": S3_VIA, "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{VAULT_BUCKET}/k"},
            False,
        ),
        (
            {
                "kms:ViaService": "ec2.us-east-1.amazonaws.com",
                "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{VAULT_BUCKET}",
            },
            False,
        ),
        ({}, False),
    ],
)
def test_seed_decrypt_through_iam_depends_on_the_conditions(context: dict[str, str], allowed: bool) -> None:
    """Without the role as a key user, only the identity policy's Sid 1 can grant, with its conditions."""
    key_without_key_user = policy(seed_vault_key_policy()["Statement"][0])  # type: ignore[index]
    task = request("kms:Decrypt", VAULT_KEY, context=context)
    decision = is_allowed(
        task,
        identity_policies=[seed_role_policy()],
        resource_policy=key_without_key_user,
        resource_is_kms_key=True,
    )
    assert decision.allowed is allowed, decision.reason


@pytest.mark.parametrize(("other_accounts", "allowed"), [(True, True), (False, False)])
def test_seed_encrypt_with_the_recovery_key_needs_the_vault_account_in_its_policy(
    other_accounts: bool, allowed: bool
) -> None:
    context = {
        "kms:ViaService": S3_VIA,
        "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{RECOVERY_BUCKET}",
    }
    task = request("kms:Encrypt", RECOVERY_KEY, context=context, resource_account=RECOVERY)
    decision = is_allowed(
        task,
        identity_policies=[seed_role_policy()],
        resource_policy=seed_recovery_key_policy(other_accounts=other_accounts),
        resource_is_kms_key=True,
    )
    assert decision.allowed is allowed, decision.reason
    if not allowed:
        assert f"key policy in account {RECOVERY}" in decision.reason


def test_seed_trust_policy_lets_batch_operations_assume_the_role() -> None:
    assert can_assume(SEED_TRUST, BATCH_SERVICE)


# --- one question asked of many objects ----------------------------------------------------------
#
# A job asks each question once per object; a PreparedCheck settles once what no key can change.
# Each answer must be the one a fresh evaluation (every cache off) gives for that object's request.

OBJECTS = f"arn:aws:s3:::{VAULT_BUCKET}/"
KEYS = ["docs/report.pdf", "docs/", "x", "docsx", "other/file.txt", "a:b:c", "dö cs/ü.txt", "with\nnewline",
        "*", "?", "docs/report.pdf.bak"]
CONTEXT_KEY = "kms:EncryptionContext:aws:s3:arn"
ROLE_CONTEXT = {"aws:PrincipalArn": ROLE, "aws:SecureTransport": "true"}


def deny(action: object, **extra: object) -> Policy:
    return policy({"Effect": "Deny", "Action": action, **extra})


def _fresh(asked: Request, identity: list[Policy], resource_policy: Policy | None, kms: bool) -> Decision:
    """Return the verdict with every cache off: each statement read from scratch for this one request."""
    use_caches(False)
    try:
        return is_allowed(asked, identity_policies=identity, resource_policy=resource_policy, resource_is_kms_key=kms)
    finally:
        use_caches(True)


def _assert_each_object_answered_as_fresh(check: PreparedCheck, identity: list[Policy],
                                          resource_policy: Policy | None, kms: bool) -> None:
    for key in KEYS * 2:  # the second pass answers from verdicts already found
        asked = check.request_for(key)
        expected = _fresh(asked, identity, resource_policy, kms)
        assert check.allows(key) is expected.allowed, key
        assert check.decision(key).reason == expected.reason


@pytest.mark.parametrize(
    ("identity", "bucket_policy"),
    [
        pytest.param([allow("s3:GetObject", f"{OBJECTS}*")], None, id="every object"),
        pytest.param([allow("s3:GetObject", f"{OBJECTS}docs/*")], None, id="a prefix"),
        pytest.param([allow("s3:GetObject", f"{OBJECTS}docs/report.pdf")], None, id="one object"),
        pytest.param([allow("s3:GetObject", f"arn:aws:s3:::{VAULT_BUCKET}")], None, id="the bucket, not its objects"),
        pytest.param([allow("s3:GetObject", f"{OBJECTS}?")], None, id="one-character wildcard"),
        pytest.param([allow("s3:GetObject", "arn:aws:s3:::vault-*/docs/*")], None, id="wildcard in the bucket name"),
        pytest.param([allow("s3:GetObject", "arn:aws:s3:::elsewhere/*")], None, id="another bucket"),
        pytest.param([allow("s3:GetObject"), deny("s3:GetObject", NotResource=f"{OBJECTS}docs/*")], None,
                     id="deny all but a prefix"),
        pytest.param([], policy({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject",
                                 "Resource": f"{OBJECTS}*"}), id="bucket policy names the role"),
        pytest.param([allow("s3:GetObject", f"{OBJECTS}*")],
                     policy({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{OBJECTS}x"}),
                     id="bucket policy denies one object"),
        pytest.param([allow("s3:GetObject", f"{OBJECTS}*", Condition={"Bool": {"aws:SecureTransport": "false"}})],
                     None, id="condition on a key every request shares"),
    ],
)
def test_a_prepared_s3_question_answers_each_object_as_a_fresh_evaluation(
    identity: list[Policy], bucket_policy: Policy | None
) -> None:
    template = request("s3:GetObject", OBJECTS, context=ROLE_CONTEXT)
    check = PreparedCheck(template, resource_is_prefix=True, identity_policies=identity, resource_policy=bucket_policy)

    assert check.request_for("docs/a").resource == f"{OBJECTS}docs/a"
    _assert_each_object_answered_as_fresh(check, identity, bucket_policy, kms=False)


def _decrypt_if(condition: Mapping[str, object]) -> list[Policy]:
    return [allow("kms:Decrypt", VAULT_KEY, Condition=condition)]


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param(_decrypt_if({"StringLike": {CONTEXT_KEY: f"{OBJECTS}*"}}), id="objects of the bucket"),
        pytest.param(_decrypt_if({"StringLike": {CONTEXT_KEY: f"{OBJECTS}docs/*"}}), id="a prefix"),
        pytest.param(_decrypt_if({"StringLike": {CONTEXT_KEY: [f"arn:aws:s3:::{VAULT_BUCKET}", f"{OBJECTS}*"]}}),
                     id="the bucket or its objects"),
        pytest.param(_decrypt_if({"StringNotLike": {CONTEXT_KEY: f"{OBJECTS}docs/*"}}), id="not like a prefix"),
        pytest.param(_decrypt_if({"StringEquals": {CONTEXT_KEY: f"{OBJECTS}x"}}), id="equals one object"),
        pytest.param(_decrypt_if({"StringNotEquals": {CONTEXT_KEY: f"{OBJECTS}x"}}), id="not one object"),
        pytest.param(_decrypt_if({"StringEquals": {CONTEXT_KEY: "arn:aws:s3:::elsewhere/x"}}), id="another bucket"),
        pytest.param(_decrypt_if({"ArnLike": {CONTEXT_KEY: f"{OBJECTS}docs/*"}}), id="ARN like a prefix"),
        pytest.param(_decrypt_if({"ArnLike": {CONTEXT_KEY: "arn:aws:s3:*:*:*"}}), id="ARN like any S3 ARN"),
        pytest.param(_decrypt_if({"ArnNotLike": {CONTEXT_KEY: "arn:aws:sqs:*:*:*"}}), id="ARN not like SQS"),
        pytest.param(_decrypt_if({"StringLikeIfExists": {CONTEXT_KEY: f"{OBJECTS}docs/*"}}), id="if exists"),
        pytest.param(_decrypt_if({"ForAnyValue:StringLike": {CONTEXT_KEY: f"{OBJECTS}d*"}}), id="for any value"),
        pytest.param(_decrypt_if({"ForAllValues:StringNotLike": {CONTEXT_KEY: f"{OBJECTS}o*"}}), id="for all values"),
        pytest.param(_decrypt_if({"Null": {CONTEXT_KEY: "false"}}), id="null"),
        pytest.param(_decrypt_if({"StringEqualsIgnoreCase": {CONTEXT_KEY: f"{OBJECTS}X"}}), id="ignoring case"),
        pytest.param(_decrypt_if({"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
                                  "StringLike": {CONTEXT_KEY: f"{OBJECTS}*"}}), id="service and objects"),
        pytest.param(_decrypt_if({"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"},
                                  "StringLike": {CONTEXT_KEY: f"{OBJECTS}docs/*"}}), id="another service"),
    ],
)
def test_a_prepared_key_question_answers_each_object_as_a_fresh_evaluation(identity: list[Policy]) -> None:
    key = key_policy(f"arn:aws:iam::{VAULT}:root")
    context = {**ROLE_CONTEXT, "kms:ViaService": f"s3.{REGION}.amazonaws.com", CONTEXT_KEY: OBJECTS}
    check = PreparedCheck(request("kms:Decrypt", VAULT_KEY, context=context), resource_is_prefix=False,
                          tail_keys=[CONTEXT_KEY], identity_policies=identity, resource_policy=key,
                          resource_is_kms_key=True)

    assert check.request_for("docs/a").context[CONTEXT_KEY] == f"{OBJECTS}docs/a"
    _assert_each_object_answered_as_fresh(check, identity, key, kms=True)


def test_a_prepared_question_refuses_an_operator_the_backend_cannot_evaluate_when_asked() -> None:
    identity = [allow("s3:GetObject", f"{OBJECTS}*", Condition={"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}})]
    check = PreparedCheck(request("s3:GetObject", OBJECTS), resource_is_prefix=True, identity_policies=identity)

    with pytest.raises(BackendError, match="DateGreaterThan"):
        check.allows("docs/report.pdf")

