"""IAM Access Analyzer on every policy a plan would write, before the run writes it.

Each policy document among a plan's writes (`planning.PlannedWrite`) is checked by AWS's own
analyzer, in the account that would hold it:

- `ValidatePolicy`, on every policy (key policies, the role's policy and trust policy, the
  recovery bucket, topic and queue policies): a finding of type ERROR or SECURITY_WARNING stops
  the run;
- `CheckNoNewAccess`, on the resource policies the run changes to let its role in (the vault
  key, the recovery key, the recovery bucket): FAIL, someone outside the two accounts would gain
  access, stops the run;
- `CheckAccessNotGranted`, on the run's own statements in those three policies: FAIL, they would
  grant an action that destroys or unlocks data or changes who may use the resource, stops it.

`CheckNoNewAccess` compares the new policy with a reference policy, as AWS's custom policy
checks intend: the policy as it is now (none for a new key or bucket policy) plus one statement
that allows everything to the vault account, the recovery account and the Batch Replication
role. Whatever the new policy grants beyond that reference reaches a principal outside the two
accounts: a wildcard principal, a third account, a service.

Findings of type WARNING and SUGGESTION are shown and do not stop anything. The operator's
identities need `access-analyzer:ValidatePolicy`, `access-analyzer:CheckNoNewAccess` and
`access-analyzer:CheckAccessNotGranted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runbook_lib import aws_facts, policies
from runbook_lib.accounts import error_code
from runbook_lib.context import RunContext
from runbook_lib.errors import PolicyCheckError
from runbook_lib.planning import PlannedWrite

__all__ = [
    "BLOCKING",
    "FORBIDDEN_ACTIONS",
    "POLICY_WRITES",
    "PolicyCheck",
    "check_writes",
    "raise_on_blocking",
    "reference_policy",
]

# The write calls whose document is a policy: (policy type, ValidatePolicy's resource type).
POLICY_WRITES: dict[tuple[str, str], tuple[str, str | None]] = {
    ("kms", "CreateKey"): ("RESOURCE_POLICY", None),
    ("kms", "PutKeyPolicy"): ("RESOURCE_POLICY", None),
    ("iam", "CreatePolicy"): ("IDENTITY_POLICY", None),
    ("iam", "CreatePolicyVersion"): ("IDENTITY_POLICY", None),
    ("iam", "CreateRole"): ("RESOURCE_POLICY", "AWS::IAM::AssumeRolePolicyDocument"),
    ("iam", "UpdateAssumeRolePolicy"): ("RESOURCE_POLICY", "AWS::IAM::AssumeRolePolicyDocument"),
    ("s3", "PutBucketPolicy"): ("RESOURCE_POLICY", "AWS::S3::Bucket"),
    ("sns", "SetTopicAttributes"): ("RESOURCE_POLICY", None),
    ("sqs", "SetQueueAttributes"): ("RESOURCE_POLICY", None),
}

# What the run's own statements must never grant, per service of the resource they are on.
FORBIDDEN_ACTIONS: dict[str, tuple[str, ...]] = {
    "kms": ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:CreateGrant",
            "kms:DeleteImportedKeyMaterial"),
    "s3": ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention",
           "s3:PutObjectLegalHold", "s3:PutBucketObjectLockConfiguration", "s3:PutBucketPolicy",
           "s3:DeleteBucketPolicy", "s3:DeleteBucket", "s3:PutLifecycleConfiguration"),
}

# Severities that stop the run: ValidatePolicy's finding types, and a custom check that failed.
BLOCKING = ("ERROR", "SECURITY_WARNING", "FAIL")
# Results that stop the run first, then warnings and suggestions; the rest in the order they came.
_SEVERITY_ORDER = ("ERROR", "SECURITY_WARNING", "FAIL", "WARNING", "SUGGESTION")
_REFERENCE_SID = "RunbookRecoveryAccountsAndRole"


@dataclass(frozen=True)
class PolicyCheck:
    """One result of Access Analyzer about one policy the plan would write."""

    policy: str  # which policy, in words
    identifier: str  # the key, bucket, role, topic or queue it belongs to
    check: str  # ValidatePolicy | CheckNoNewAccess | CheckAccessNotGranted
    severity: str  # ValidatePolicy's findingType, or PASS/FAIL of a custom check; NONE: no finding
    code: str  # the issueCode, or the custom check's result
    detail: str
    location: str = ""  # where in the policy: Statement[1].Principal, or the statement of a reason
    link: str = ""  # AWS's page about the finding
    # The finding is about statements the policy holds already and the run keeps as found (someone else's).
    kept_as_found: bool = False

    @property
    def blocking(self) -> bool:
        """Return whether this result stops the run: an error, a security warning or new access the run brings."""
        return self.severity in BLOCKING and not self.kept_as_found

    def as_row(self) -> dict[str, Any]:
        """Return the result as a table row."""
        return asdict(self)


def _policy_name(ctx: RunContext, write: PlannedWrite) -> str:
    """Return what a policy write is about, in the words the phases use."""
    if write.service == "kms":
        key = "vault KMS key policy" if write.identifier == ctx.params.vault.kms_key_arn else "recovery KMS key policy"
        return f"{key} as created" if write.operation == "CreateKey" else key
    return {
        "iam.CreatePolicy": "Batch Replication role policy",
        "iam.CreatePolicyVersion": "Batch Replication role policy",
        "iam.CreateRole": "Batch Replication role trust policy",
        "iam.UpdateAssumeRolePolicy": "Batch Replication role trust policy",
        "s3.PutBucketPolicy": "recovery bucket policy",
        "sns.SetTopicAttributes": "job status topic policy",
        "sqs.SetQueueAttributes": "audit queue policy",
    }[f"{write.service}.{write.operation}"]


def _grants_to_the_role(ctx: RunContext, write: PlannedWrite) -> bool:
    """Return whether the write is one of the resource policies the run changes to let its role in."""
    if write.service == "kms":
        return True  # the vault key and the recovery key
    return write.service == "s3" and write.identifier == ctx.params.recovery.bucket


def reference_policy(ctx: RunContext, found: Any) -> dict[str, Any]:
    """Return the most a new resource policy may grant: the policy as found, plus all to the accounts and the role."""
    params = ctx.params
    principals = sorted({
        aws_facts.account_root_arn(params.vault.account_id, params.partition),
        aws_facts.account_root_arn(params.recovery.account_id, params.partition),
        params.batch_role_arn,
    })
    allowed = {"Sid": _REFERENCE_SID, "Effect": "Allow", "Principal": {"AWS": principals}, "Action": "*",
               "Resource": "*"}
    return {"Version": policies.POLICY_VERSION, "Statement": [*policies.statements_of(found), allowed]}


def _own_statements(ctx: RunContext, document: Any) -> list[dict[str, Any]]:
    """Return the statements of a policy that this run adds (run-scoped Sids)."""
    return [s for s in policies.statements_of(document) if policies.sid_run_id(s.get("Sid")) == ctx.params.run_id]


def _client(ctx: RunContext, side: str) -> Any:
    return ctx.recovery("accessanalyzer") if side == "recovery" else ctx.vault("accessanalyzer")


def _where(location: dict[str, Any]) -> str:
    """Return a finding's location as a path such as Statement[1].Principal.AWS."""
    text = ""
    for element in location.get("path", []):
        if "index" in element:
            text += f"[{element['index']}]"
        elif "key" in element:
            text += f".{element['key']}" if text else str(element["key"])
        elif "value" in element:
            text += f".{element['value']}" if text else str(element["value"])
    return text


def _in_kept_statement(write: PlannedWrite, location: dict[str, Any]) -> bool:
    """Return whether a finding's location lies in a statement the policy holds already, unchanged.

    The run adds its statements to policies others share (the vault key's, a recovery bucket's)
    and keeps theirs as found: what AWS says about those is shown, and is theirs to act on.
    """
    path = location.get("path", [])
    if len(path) < 2 or path[0].get("value") != "Statement" or "index" not in path[1]:
        return False
    statements = policies.statements_of(write.document)
    index = int(path[1]["index"])
    return index < len(statements) and statements[index] in policies.statements_of(write.found)


def _validate(ctx: RunContext, write: PlannedWrite, name: str) -> list[PolicyCheck]:
    policy_type, resource_type = POLICY_WRITES[(write.service, write.operation)]
    arguments: dict[str, Any] = {"policyDocument": policies.to_json(write.document), "policyType": policy_type}
    if resource_type:
        arguments["validatePolicyResourceType"] = resource_type
    checks = []
    for page in _client(ctx, write.side).get_paginator("validate_policy").paginate(**arguments):
        for finding in page.get("findings", []):
            locations = finding.get("locations", [])
            where = ", ".join(_where(location) for location in locations)
            kept = bool(locations) and all(_in_kept_statement(write, location) for location in locations)
            detail = finding["findingDetails"] + (" (in a statement the policy holds already, kept as found)"
                                                  if kept else "")
            checks.append(PolicyCheck(name, write.identifier, "ValidatePolicy", finding["findingType"],
                                      finding["issueCode"], detail, where, finding.get("learnMoreLink", ""), kept))
    if not checks:
        checks.append(PolicyCheck(name, write.identifier, "ValidatePolicy", "NONE", "no findings",
                                  f"valid {policy_type.lower().replace('_', ' ')}"))
    return checks


def _reasons(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (where, description) of each reason a custom check gives."""
    reasons = []
    for reason in answer.get("reasons", []):
        where = f"Statement[{reason['statementIndex']}]" if "statementIndex" in reason else ""
        if reason.get("statementId"):
            where += f" (Sid {reason['statementId']})"
        reasons.append((where.strip(), str(reason.get("description", ""))))
    return reasons


def _custom_checks(ctx: RunContext, write: PlannedWrite, name: str) -> list[PolicyCheck]:
    client = _client(ctx, write.side)
    new = policies.to_json(write.document)
    checks = []
    answer = client.check_no_new_access(
        newPolicyDocument=new, existingPolicyDocument=policies.to_json(reference_policy(ctx, write.found)),
        policyType="RESOURCE_POLICY")
    checks.extend(_custom_results(name, write, "CheckNoNewAccess", answer,
                                  "no principal outside the two accounts and the role gains access"))
    own = _own_statements(ctx, write.document)
    if own:
        forbidden = list(FORBIDDEN_ACTIONS[write.service])
        answer = client.check_access_not_granted(
            policyDocument=policies.to_json({"Version": policies.POLICY_VERSION, "Statement": own}),
            access=[{"actions": forbidden}], policyType="RESOURCE_POLICY")
        checks.extend(_custom_results(name, write, "CheckAccessNotGranted", answer,
                                      "the run's statements grant none of " + ", ".join(forbidden)))
    return checks


def _custom_results(
    name: str, write: PlannedWrite, check: str, answer: dict[str, Any], meaning: str,
) -> list[PolicyCheck]:
    result = str(answer.get("result", ""))
    if result == "PASS":
        return [PolicyCheck(name, write.identifier, check, "PASS", result, meaning)]
    reasons = _reasons(answer) or [("", str(answer.get("message", "")))]
    return [PolicyCheck(name, write.identifier, check, "FAIL", result or "FAIL",
                        f"{answer.get('message', '')} {description}".strip(), where)
            for where, description in reasons]


def check_writes(ctx: RunContext, writes: Iterable[PlannedWrite]) -> list[PolicyCheck]:
    """Return Access Analyzer's results on every policy among the writes, worst first."""
    results: list[PolicyCheck] = []
    for write in writes:
        if (write.service, write.operation) not in POLICY_WRITES or write.document is None:
            continue
        name = _policy_name(ctx, write)
        try:
            results.extend(_validate(ctx, write, name))
            if _grants_to_the_role(ctx, write):
                results.extend(_custom_checks(ctx, write, name))
        except ClientError as error:
            raise PolicyCheckError(
                f"IAM Access Analyzer could not check the {name} ({write.identifier}) in the {write.side} account: "
                f"{error_code(error)}: {error}. The operator's identity there needs access-analyzer:ValidatePolicy, "
                "access-analyzer:CheckNoNewAccess and access-analyzer:CheckAccessNotGranted; grant them and run again.",
                policy=name, code=error_code(error)) from error
        except BotoCoreError as error:
            raise PolicyCheckError(f"IAM Access Analyzer could not be reached to check the {name}: {error}",
                                   policy=name, code=type(error).__name__) from error
    return sorted(results, key=lambda r: _SEVERITY_ORDER.index(r.severity) if r.severity in _SEVERITY_ORDER
                  else len(_SEVERITY_ORDER))


def raise_on_blocking(results: Sequence[PolicyCheck]) -> None:
    """Raise PolicyCheckError naming each policy and finding that stops the run (ERROR, SECURITY_WARNING, FAIL)."""
    blocking = [r for r in results if r.blocking]
    if not blocking:
        return
    lines = "; ".join(f"{r.policy} ({r.identifier}): {r.check} {r.severity} {r.code}"
                      f"{' at ' + r.location if r.location else ''}: {r.detail}" for r in blocking)
    first = blocking[0]
    raise PolicyCheckError(
        f"IAM Access Analyzer stops the run before any policy is written: {lines}. Correct the policy (or the "
        "parameters it is built from) and run again.", policy=first.policy, code=first.code)

