"""ValidatePolicy in the embedded backend: AWS's policy checks that the runbook's policies can meet.

AWS runs over a hundred checks (IAM User Guide, *IAM policy validation check reference*). The
backend runs the ones below, each with AWS's issue code, finding type and page, and its own
wording of the finding. Grammar is checked here; whether an action, a service prefix, an ARN
and a condition operator exist is parliament's knowledge (its IAM definitions), mapped onto
AWS's checks. parliament's other findings have no AWS counterpart and are not reported.

| issue code | type | decided by |
|---|---|---|
| JSON_SYNTAX_ERROR | ERROR | json |
| MISSING_STATEMENT, MISSING_EFFECT, INVALID_EFFECT, MISSING_ACTION | ERROR | the document's structure |
| MISSING_RESOURCE | ERROR | identity policies only (a trust policy has no Resource) |
| MISSING_PRINCIPAL | ERROR | resource policies |
| UNSUPPORTED_PRINCIPAL | ERROR | identity policies with a Principal |
| UNSUPPORTED_WILDCARD_IN_PRINCIPAL | ERROR | an AWS principal with `*` or `?` inside an ARN |
| UNSUPPORTED_SID, UNIQUE_SIDS_REQUIRED | ERROR | identity and role trust policies |
| UNIQUE_SIDS_RECOMMENDED | WARNING | other resource policies |
| MISSING_VERSION | WARNING | the document |
| INVALID_VERSION | ERROR | the document |
| INVALID_ACTION, INVALID_SERVICE_IN_ACTION | ERROR | parliament (UNKNOWN_ACTION, UNKNOWN_PREFIX) |
| MISSING_ARN_FIELD | ERROR | parliament (INVALID_ARN) |
| INVALID_CONDITION_OPERATOR | ERROR | parliament (UNKNOWN_OPERATOR) |
| TYPE_MISMATCH | WARNING | parliament (MISMATCHED_TYPE) |
| ALLOW_WITH_NOT_PRINCIPAL | SECURITY_WARNING | Allow with NotPrincipal |
| RESTRICT_ACCESS_TO_SERVICE_PRINCIPAL | SECURITY_WARNING | an Allow to a service principal without aws:SourceArn, aws:SourceAccount, aws:SourceOrgID or aws:SourceOrgPaths |

Choices AWS does not document, made here:

| topic | choice |
|---|---|
| Sids with spaces (KMS's default key policy has them) | accepted in resource policies other than role trust policies |
| RESTRICT_ACCESS_TO_SERVICE_PRINCIPAL | applied to resource policies, not to role trust policies: AWS's own trust policies for Batch Operations carry no such key (docs/aws-facts.md) |
| a wildcard principal (`"*"`) | no ValidatePolicy finding: whether it grants access to others is CheckNoNewAccess's question |
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runbook_lib.embedded.access_analyzer.locations import Path, Span, position, spans

__all__ = ["CHECKS", "validate_policy"]

# issue code -> (finding type, the check's title in AWS's reference, which names its page anchor)
CHECKS: dict[str, tuple[str, str]] = {
    "JSON_SYNTAX_ERROR": ("ERROR", "Json syntax error"),
    "MISSING_STATEMENT": ("ERROR", "Missing statement"),
    "MISSING_EFFECT": ("ERROR", "Missing effect"),
    "INVALID_EFFECT": ("ERROR", "Invalid effect"),
    "MISSING_ACTION": ("ERROR", "Missing action"),
    "MISSING_RESOURCE": ("ERROR", "Missing resource"),
    "MISSING_PRINCIPAL": ("ERROR", "Missing principal"),
    "UNSUPPORTED_PRINCIPAL": ("ERROR", "Unsupported principal"),
    "UNSUPPORTED_WILDCARD_IN_PRINCIPAL": ("ERROR", "Unsupported wildcard in principal"),
    "UNSUPPORTED_SID": ("ERROR", "Unsupported Sid"),
    "UNIQUE_SIDS_REQUIRED": ("ERROR", "Unique Sids required"),
    "UNIQUE_SIDS_RECOMMENDED": ("WARNING", "Unique Sids recommended"),
    "MISSING_VERSION": ("WARNING", "Missing version"),
    "INVALID_VERSION": ("ERROR", "Invalid version"),
    "INVALID_ACTION": ("ERROR", "Invalid action"),
    "INVALID_SERVICE_IN_ACTION": ("ERROR", "Invalid service in action"),
    "MISSING_ARN_FIELD": ("ERROR", "Missing ARN field"),
    "INVALID_CONDITION_OPERATOR": ("ERROR", "Invalid condition operator"),
    "TYPE_MISMATCH": ("WARNING", "Type mismatch"),
    "ALLOW_WITH_NOT_PRINCIPAL": ("SECURITY_WARNING", "Allow with NotPrincipal"),
    "RESTRICT_ACCESS_TO_SERVICE_PRINCIPAL": ("SECURITY_WARNING", "Restrict access to service principal"),
}
# parliament's findings that have an AWS check, and which.
_PARLIAMENT: dict[str, str] = {
    "UNKNOWN_ACTION": "INVALID_ACTION",
    "UNKNOWN_PREFIX": "INVALID_SERVICE_IN_ACTION",
    "INVALID_ARN": "MISSING_ARN_FIELD",
    "UNKNOWN_OPERATOR": "INVALID_CONDITION_OPERATOR",
    "MISMATCHED_TYPE": "TYPE_MISMATCH",
}
_REFERENCE_PAGE = "https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html"
_ANCHOR_KIND = {"ERROR": "error", "WARNING": "general-warning", "SECURITY_WARNING": "security-warning",
                "SUGGESTION": "suggestion"}
_VERSIONS = ("2012-10-17", "2008-10-17")
_TRUST_POLICY = "AWS::IAM::AssumeRolePolicyDocument"
_SOURCE_KEYS = {"aws:sourcearn", "aws:sourceaccount", "aws:sourceorgid", "aws:sourceorgpaths"}
_SID = re.compile(r"[A-Za-z0-9]*")


@dataclass(frozen=True)
class _Issue:
    """One check that a policy fails, where, and what to say."""

    code: str
    path: Path
    details: str
    key: bool = False  # the location is the key at `path`, not its value


def learn_more_link(code: str) -> str:
    """Return AWS's page about a check: the reference, at the check's anchor."""
    kind, title = CHECKS[code]
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"{_REFERENCE_PAGE}#access-analyzer-reference-policy-checks-{_ANCHOR_KIND[kind]}-{slug}"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    statements = document.get("Statement")
    if isinstance(statements, dict):
        yield ("Statement",), statements
    elif isinstance(statements, list):
        for index, statement in enumerate(statements):
            if isinstance(statement, dict):
                yield ("Statement", index), statement


def _structure(document: dict[str, Any], policy_type: str, resource_type: str | None) -> list[_Issue]:
    """Return the grammar and principal checks the document fails."""
    issues: list[_Issue] = []
    version = document.get("Version")
    if version is None:
        issues.append(_Issue("MISSING_VERSION", (), "Add a Version element (2012-10-17) so that the policy's "
                                                     "variables and newer features are understood."))
    elif version not in _VERSIONS:
        issues.append(_Issue("INVALID_VERSION", ("Version",), f"The Version {version!r} is not one IAM knows; "
                                                              "use 2012-10-17."))
    if "Statement" not in document:
        issues.append(_Issue("MISSING_STATEMENT", (), "Add a Statement element to the policy."))
    iam_grammar = policy_type == "IDENTITY_POLICY" or resource_type == _TRUST_POLICY
    seen_sids: dict[str, Path] = {}
    for path, statement in _statements(document):
        issues += _statement_issues(path, statement, policy_type, resource_type)
        sid = statement.get("Sid")
        if isinstance(sid, str):
            if iam_grammar and not _SID.fullmatch(sid):
                issues.append(_Issue("UNSUPPORTED_SID", (*path, "Sid"),
                                     "A Sid of this policy type takes letters and digits only."))
            if sid in seen_sids:
                code = "UNIQUE_SIDS_REQUIRED" if iam_grammar else "UNIQUE_SIDS_RECOMMENDED"
                issues.append(_Issue(code, (*path, "Sid"), f"The Sid {sid!r} is used by more than one statement."))
            seen_sids.setdefault(sid, path)
    return issues


def _statement_issues(
    path: Path, statement: dict[str, Any], policy_type: str, resource_type: str | None,
) -> list[_Issue]:
    issues: list[_Issue] = []
    effect = statement.get("Effect")
    if effect is None:
        issues.append(_Issue("MISSING_EFFECT", path, "Add an Effect element, Allow or Deny, to the statement."))
    elif effect not in ("Allow", "Deny"):
        issues.append(_Issue("INVALID_EFFECT", (*path, "Effect"), f"The Effect {effect!r} is neither Allow nor Deny."))
    if "Action" not in statement and "NotAction" not in statement:
        issues.append(_Issue("MISSING_ACTION", path, "Add an Action or NotAction element to the statement."))
    has_principal = "Principal" in statement or "NotPrincipal" in statement
    if policy_type == "IDENTITY_POLICY":
        if has_principal:
            name = "Principal" if "Principal" in statement else "NotPrincipal"
            issues.append(_Issue("UNSUPPORTED_PRINCIPAL", (*path, name), f"An identity policy takes no {name}: "
                                 "it applies to the identity it is attached to. Remove it.", key=True))
        if "Resource" not in statement and "NotResource" not in statement:
            issues.append(_Issue("MISSING_RESOURCE", path, "Add a Resource or NotResource element to the statement."))
        return issues
    if not has_principal:
        issues.append(_Issue("MISSING_PRINCIPAL", path, "A resource policy statement must name its Principal."))
    if effect == "Allow" and "NotPrincipal" in statement:
        issues.append(_Issue("ALLOW_WITH_NOT_PRINCIPAL", (*path, "NotPrincipal"),
                             "An Allow with NotPrincipal grants to everyone not listed, anonymous callers included; "
                             "name the principals in Principal instead.", key=True))
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        for index, value in enumerate(_as_list(principal.get("AWS", []))):
            if isinstance(value, str) and value != "*" and ("*" in value or "?" in value):
                where = (*path, "Principal", "AWS") if not isinstance(principal.get("AWS"), list) else (
                    *path, "Principal", "AWS", index)
                issues.append(_Issue("UNSUPPORTED_WILDCARD_IN_PRINCIPAL", where,
                                     f"The AWS principal {value!r} holds a wildcard; name the principal in full, "
                                     "or use \"*\" with conditions."))
        service = principal.get("Service")
        if service and effect == "Allow" and resource_type != _TRUST_POLICY and not _names_a_source(statement):
            issues.append(_Issue("RESTRICT_ACCESS_TO_SERVICE_PRINCIPAL", (*path, "Principal", "Service"),
                                 "A service principal is granted access without aws:SourceArn or aws:SourceAccount "
                                 "in a condition, so the service may use it for anyone's resources; name the source."))
    return issues


def _names_a_source(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return False
    return any(isinstance(keys, dict) and any(str(key).lower() in _SOURCE_KEYS for key in keys)
               for keys in condition.values())


def _linted_copy(document: dict[str, Any], resource_type: str | None) -> str:
    """Return the document as parliament can lint it: no Principal, no Sid, a Resource on trust statements.

    parliament lints identity policies: it knows no Principal, stops at a Sid with spaces, and
    asks every statement for a Resource, which a trust policy has not.
    """
    linted = json.loads(json.dumps(document))
    for _, statement in _statements(linted):
        for element in ("Principal", "NotPrincipal", "Sid"):
            statement.pop(element, None)
        if resource_type == _TRUST_POLICY or ("Resource" not in statement and "NotResource" not in statement):
            statement["Resource"] = "*"
    return json.dumps(linted, indent=2)


def _parliament_issues(document: dict[str, Any], resource_type: str | None, values: dict[Path, Span],
                       keys: dict[Path, Span], text: str) -> list[_Issue]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources, which warns it is deprecated
        from parliament import analyze_policy_string

    issues = []
    for finding in analyze_policy_string(_linted_copy(document, resource_type)).findings:
        code = _PARLIAMENT.get(finding.issue)
        if code is None:
            continue
        named = str((finding.location or {}).get("string", ""))
        path, is_key = _path_of(named, values, keys, text)
        detail = str(finding.detail or "").strip() or named
        issues.append(_Issue(code, path, _PARLIAMENT_DETAILS[code].format(detail=detail, named=named), key=is_key))
    return issues


_PARLIAMENT_DETAILS = {
    "INVALID_ACTION": "The action {named} does not exist ({detail}); check its spelling against the service's actions.",
    "INVALID_SERVICE_IN_ACTION": "The service prefix of {named} is not one AWS knows ({detail}).",
    "MISSING_ARN_FIELD": "The resource {named} is not a complete ARN ({detail}).",
    "INVALID_CONDITION_OPERATOR": "The condition operator {named} is not one IAM knows ({detail}).",
    "TYPE_MISMATCH": "A condition compares a key with an operator of another type ({detail}).",
}


def _path_of(named: str, values: dict[Path, Span], keys: dict[Path, Span], text: str) -> tuple[Path, bool]:
    """Return the path of the first value (or key) whose text is `named`, and whether it is a key."""
    for path, span in values.items():
        if text[span.start:span.end] == json.dumps(named):
            return path, False
    for path in keys:
        if path and path[-1] == named:
            return path, True
    return (), False


def _path_elements(path: Path, key: bool) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = [{"index": part} if isinstance(part, int) else {"value": part} for part in path]
    if key and elements and "value" in elements[-1]:
        elements[-1] = {"key": elements[-1]["value"]}
    return elements


def _finding(issue: _Issue, text: str, values: dict[Path, Span], keys: dict[Path, Span]) -> dict[str, Any]:
    finding_type, _ = CHECKS[issue.code]
    span = (keys if issue.key else values).get(issue.path) or values.get(issue.path) or Span(0, len(text))
    return {
        "findingDetails": issue.details,
        "findingType": finding_type,
        "issueCode": issue.code,
        "learnMoreLink": learn_more_link(issue.code),
        "locations": [{"path": _path_elements(issue.path, issue.key),
                       "span": {"start": position(text, span.start), "end": position(text, span.end)}}],
    }


def validate_policy(text: str, policy_type: str, resource_type: str | None = None) -> list[dict[str, Any]]:
    """Return ValidatePolicy's findings for a policy document, in AWS's shape."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        point = position(text, error.pos)
        return [{
            "findingDetails": f"Fix the JSON syntax at line {point['line']}, column {point['column']}: {error.msg}.",
            "findingType": "ERROR", "issueCode": "JSON_SYNTAX_ERROR", "learnMoreLink": learn_more_link(
                "JSON_SYNTAX_ERROR"),
            "locations": [{"path": [], "span": {"start": point, "end": point}}],
        }]
    if not isinstance(document, dict):
        return [{"findingDetails": "A policy is a JSON object with Version and Statement.", "findingType": "ERROR",
                 "issueCode": "MISSING_STATEMENT", "learnMoreLink": learn_more_link("MISSING_STATEMENT"),
                 "locations": [{"path": [], "span": {"start": position(text, 0), "end": position(text, len(text))}}]}]
    values, keys = spans(text)
    issues = _structure(document, policy_type, resource_type)
    issues += _parliament_issues(document, resource_type, values, keys, text)
    return [_finding(issue, text, values, keys) for issue in issues]
