"""CheckNoNewAccess and CheckAccessNotGranted in the embedded backend, decided by its own policy evaluator.

AWS answers these custom checks by reasoning over every request a policy could allow. The
backend asks concrete questions instead: for each Allow statement of the policy under check it
builds witness requests that the statement allows, and lets `iam_eval` (the evaluator that
decides every task of a drill) say what each policy makes of them.

| witness | built from the statement |
|---|---|
| principal | each principal it names (an account as a role in that account); for `"*"` and NotPrincipal, a role in an account no policy names; a service principal as the service |
| action | each action it names, wildcards expanded over parliament's list of the service's actions; for NotAction, the actions of the services either policy names that it leaves out |
| resource | each resource it names with `*` and `?` filled in; `"*"` as any resource; for NotResource, one it does not name |
| context | values that satisfy each of its conditions, and aws:PrincipalArn and aws:PrincipalAccount of the principal |

CheckNoNewAccess fails for the statement when the new policy allows a witness the existing
policy does not; CheckAccessNotGranted fails when the policy allows one of the actions (or
resources) asked about. Each reason names the statement (`statementIndex` from 0, and its Sid),
the principal, the action and the resource.

Choices AWS does not document, made here:

| topic | choice |
|---|---|
| conditions the evaluator does not decide (Date, IP address, Binary operators, policy variables) | UnprocessableEntityException: no answer rather than a guess |
| what is tested | the witnesses above only; a grant that none of them reaches goes unseen (AWS's check has no such gap) |
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from runbook_lib import aws_facts
from runbook_lib.embedded import iam_eval
from runbook_lib.embedded.access_analyzer.exceptions import InvalidParameterException, UnprocessableEntityException
from runbook_lib.errors import BackendError

__all__ = ["check_access_not_granted", "check_no_new_access", "parse_policy"]

_OUTSIDER_ACCOUNTS = ("999999999999", "999999999998", "999999999997")
_WITNESS_ROLE = "witness"
_ACCOUNT = re.compile(r"^\d{12}$")
_ACCOUNT_ROOT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")
_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")
_PRINCIPAL_KEYS = {"aws:principalarn", "aws:principalaccount"}
_NEGATED = ("stringnotequals", "stringnotequalsignorecase", "stringnotlike", "arnnotequals", "arnnotlike",
            "numericnotequals")


def parse_policy(text: str, member: str) -> dict[str, Any]:
    """Return a policy document the caller sent, or raise InvalidParameterException naming the member."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidParameterException(f"{member} is not valid JSON: {error.msg} at offset {error.pos}.") from error
    if not isinstance(document, dict) or "Statement" not in document:
        raise InvalidParameterException(f"{member} is not a policy: a JSON object with a Statement element.")
    return document


def _statements(document: dict[str, Any]) -> list[Any]:
    statements = document.get("Statement")
    return statements if isinstance(statements, list) else [statements]


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(item) for item in (value if isinstance(value, list) else [value])]


@lru_cache(maxsize=512)
def _expanded(pattern: str) -> tuple[str, ...]:
    """Return every action a pattern covers, by parliament's list of actions (the pattern itself when none)."""
    if "*" not in pattern and "?" not in pattern:
        return (pattern,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from parliament import expand_action

    try:
        found = expand_action(pattern)
    except Exception:  # parliament raises its own errors for prefixes and actions it does not know
        return (pattern.replace("*", "Witness").replace("?", "W"),)
    return tuple(f"{item['service']}:{item['action']}" for item in found)


def _services(*documents: dict[str, Any]) -> set[str]:
    return {action.split(":")[0].lower() for document in documents for statement in _statements(document)
            if isinstance(statement, dict) for element in ("Action", "NotAction")
            for action in _strings(statement.get(element)) if ":" in action}


def _actions(statement: dict[str, Any], services: set[str]) -> list[str]:
    if "Action" in statement:
        return [action for pattern in _strings(statement["Action"]) for action in _expanded(pattern)]
    excluded = _strings(statement.get("NotAction"))
    candidates = [action for service in sorted(services) for action in _expanded(f"{service}:*")]
    return [action for action in candidates
            if not any(re.fullmatch(_glob(pattern), action, re.IGNORECASE) for pattern in excluded)]


def _glob(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _resources(statement: dict[str, Any]) -> list[str]:
    if "Resource" in statement:
        return [pattern.replace("*", "witness").replace("?", "w") if pattern != "*" else "*"
                for pattern in _strings(statement["Resource"])]
    if "NotResource" in statement:
        return [aws_facts.bucket_arn("witness-resource-not-listed")]
    return ["*"]  # a trust policy's statements apply to their own role


def _outsider(*documents: dict[str, Any]) -> str:
    text = " ".join(json.dumps(document) for document in documents)
    return next(account for account in _OUTSIDER_ACCOUNTS if account not in text)


def _condition_values(statement: dict[str, Any]) -> dict[str, list[str]]:
    """Return request context values that satisfy each condition of the statement (keys lower-cased)."""
    context: dict[str, list[str]] = {}
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return context
    for operator, keys in condition.items():
        if not isinstance(keys, dict):
            continue
        base = str(operator).lower().rpartition(":")[2].removesuffix("ifexists")
        for key, expected in keys.items():
            values = _strings(expected)
            if not values or str(key).lower() in context:
                continue
            if base == "null":
                if values[0].lower() == "false":
                    context[str(key).lower()] = ["witness"]
            elif base in _NEGATED:
                context[str(key).lower()] = ["witness-value-not-listed"]
            elif base in ("numericlessthan", "numericlessthanequals"):
                context[str(key).lower()] = [str(float(values[0]) - 1)]
            elif base in ("numericgreaterthan", "numericgreaterthanequals"):
                context[str(key).lower()] = [str(float(values[0]) + 1)]
            else:
                context[str(key).lower()] = [values[0].replace("*", "witness").replace("?", "w")]
    return context


def _arn_account(arn: str, default: str) -> str:
    """Return the account an ARN names, or `default` when it names none."""
    found = _ARN_ACCOUNT.match(arn)
    return found.group(1) if found else default


def _principals(statement: dict[str, Any], outsider: str, context: dict[str, list[str]]) -> Iterator[dict[str, str]]:
    """Yield the principals a statement grants to: arn, account, or service."""
    if "Principal" not in statement:
        # NotPrincipal, or an identity policy: anyone not excluded, so someone no policy names.
        named = context.get("aws:principalarn", [aws_facts.iam_role_arn(outsider, _WITNESS_ROLE)])[0]
        yield {"arn": named, "account": _arn_account(named, outsider)}
        return
    principal = statement["Principal"]
    if principal == "*" or (isinstance(principal, dict) and "*" in _strings(principal.get("AWS"))):
        account = context.get("aws:principalaccount", [outsider])[0]
        named = context.get("aws:principalarn", [aws_facts.iam_role_arn(account, _WITNESS_ROLE)])[0]
        yield {"arn": named, "account": _arn_account(named, account)}
    if not isinstance(principal, dict):
        return
    for value in _strings(principal.get("AWS")):
        root = _ACCOUNT_ROOT.match(value)
        if value == "*":
            continue
        if root or _ACCOUNT.match(value):
            account = root.group(1) if root else value
            yield {"arn": aws_facts.iam_role_arn(account, _WITNESS_ROLE), "account": account}
        else:
            yield {"arn": value, "account": _arn_account(value, "")}
    for value in _strings(principal.get("Service")):
        yield {"service": value}
    for value in _strings(principal.get("Federated")):
        yield {"arn": value, "account": ""}


def _requests(statement: dict[str, Any], outsider: str, services: set[str],
              resources: list[str] | None = None, actions: list[str] | None = None) -> Iterator[iam_eval.Request]:
    """Yield the witness requests a statement allows (by its own terms)."""
    context = _condition_values(statement)
    for principal in _principals(statement, outsider, context):
        witness_context = dict(context)
        if "arn" in principal:
            witness_context.setdefault("aws:principalarn", [principal["arn"]])
            witness_context.setdefault("aws:principalaccount", [principal["account"]])
        for action in actions if actions is not None else _actions(statement, services):
            for resource in resources if resources is not None else _resources(statement):
                yield iam_eval.Request(
                    principal_arn=principal.get("arn", ""), principal_account=principal.get("account", ""),
                    action=action, resource=resource, resource_account=outsider,
                    context=witness_context, service_principal=principal.get("service"))


def _allows(document: dict[str, Any], request: iam_eval.Request) -> bool:
    try:
        return iam_eval.evaluate(document, request) == "Allow"
    except BackendError as error:
        raise UnprocessableEntityException(f"The embedded backend cannot decide this policy: {error}") from error


def _who(request: iam_eval.Request) -> str:
    return request.service_principal or request.principal_arn


def _reason(index: int, statement: dict[str, Any], description: str) -> dict[str, Any]:
    reason: dict[str, Any] = {"description": description, "statementIndex": index}
    if isinstance(statement.get("Sid"), str):
        reason["statementId"] = statement["Sid"]
    return reason


def _allow_statements(document: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, statement in enumerate(_statements(document)):
        if isinstance(statement, dict) and statement.get("Effect") == "Allow":
            yield index, statement


def check_no_new_access(new: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any]:
    """Return CheckNoNewAccess's answer: FAIL with a reason per statement of `new` that grants beyond `existing`."""
    outsider = _outsider(new, existing)
    services = _services(new, existing)
    reasons = []
    for index, statement in _allow_statements(new):
        for request in _requests(statement, outsider, services):
            if _allows(new, request) and not _allows(existing, request):
                reasons.append(_reason(index, statement, (
                    f"The statement lets {_who(request)} do {request.action} on {request.resource}, which the "
                    "existing policy does not allow.")))
                break
    if reasons:
        return {"result": "FAIL", "message": "The new policy grants access that the existing policy does not.",
                "reasons": reasons}
    return {"result": "PASS", "message": "The new policy grants no access beyond the existing policy.",
            "reasons": []}


def check_access_not_granted(document: dict[str, Any], actions: list[str], resources: list[str]) -> dict[str, Any]:
    """Return CheckAccessNotGranted's answer: FAIL with a reason per statement granting what was asked about."""
    outsider = _outsider(document)
    services = _services(document)
    wanted_actions = [action for pattern in actions for action in _expanded(pattern)] or None
    reasons = []
    for index, statement in _allow_statements(document):
        single = {"Version": document.get("Version", "2012-10-17"), "Statement": [statement]}
        for request in _requests(statement, outsider, services, resources or None, wanted_actions):
            if _allows(single, request) and _allows(document, request):
                reasons.append(_reason(index, statement, (
                    f"The statement lets {_who(request)} do {request.action} on {request.resource}.")))
                break
    asked = ", ".join(actions + resources)
    if reasons:
        return {"result": "FAIL", "message": f"The policy grants access that was asked not to be granted: {asked}.",
                "reasons": reasons}
    return {"result": "PASS", "message": f"The policy grants none of: {asked}.", "reasons": []}
