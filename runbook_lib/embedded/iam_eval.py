"""Decide, as AWS would, whether a principal may perform one action on one resource.

The embedded Batch Operations emulator asks this module, for every replication task, whether
the job role's identity policies, the destination bucket policy and the KMS key policies let
the role do what the task needs, so a drill with a mis-granted permission fails the way AWS
fails. It follows AWS's documented evaluation logic, narrowed to what the recovery touches:

- an explicit Deny in any policy wins;
- within one account, an identity policy or a resource policy that names the principal itself
  is enough;
- across accounts, the principal's identity policy and the resource policy must both allow;
- a KMS key policy is the only way in: identity policies count only where the key policy lets
  the account grant the action (the account-root statement), and an external account needs
  the key policy to name it or its role as well as its own identity policy.

A job asks the same questions for every version, so what a document says to one caller and action
is kept, and so is the verdict for each set of statements found to apply (see "the statement
cache" below): every request still has its own Resource and Condition tested. Both are keyed by
the document objects, so give an edited policy as a new document, never change one in place.

Not modelled: SCPs, RCPs, permission boundaries, policies passed to AssumeRole, ACLs, policy variables and
the Date, IP address and Binary condition operators (a policy that uses them is refused).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from runbook_lib import aws_facts
from runbook_lib.embedded.task_caches import caches_enabled
from runbook_lib.errors import BackendError

__all__ = [
    "Decision",
    "Effect",
    "PreparedCheck",
    "Request",
    "can_assume",
    "evaluate",
    "is_allowed",
    "service_source_context",
]

Effect = Literal["Allow", "Deny", "NotApplicable"]
ContextValue = str | list[str]


@dataclass
class Request:
    """One authorization question: may this principal do this action on this resource?

    Not frozen, only because a frozen dataclass takes twice as long to build and a job builds
    about ten a task; treat it as a value all the same.
    """

    principal_arn: str
    principal_account: str
    action: str
    resource: str
    resource_account: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    service_principal: str | None = None


@dataclass(frozen=True)
class Decision:
    """The verdict for a request and a sentence saying why, fit to show a drill user.

    The sentence may be given as a function that words it when first read: a job decides millions
    of requests and shows the reasons of a few (its denials).
    """

    allowed: bool
    wording: str | Callable[[], str] = field(repr=False)

    @property
    def reason(self) -> str:
        """Return why the request is allowed or denied."""
        return self.wording if isinstance(self.wording, str) else self.wording()


# How a statement's Principal matched the request: the principal itself (its ARN, its
# service name, or "*") grants on its own; a match through its account only delegates to
# the account's identity policies.
_Via = Literal["principal", "account"]


@dataclass(frozen=True)
class _Match:
    effect: Literal["Allow", "Deny"]
    label: str
    via: _Via


_ACCOUNT_ROOT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


def evaluate(policy: Mapping[str, object], request: Request) -> Effect:
    """Return what one policy document says about the request: Allow, Deny or NotApplicable."""
    matches = _matching_statements(policy, request, _LowercaseContext(request.context))
    if any(m.effect == "Deny" for m in matches):
        return "Deny"
    if any(m.effect == "Allow" for m in matches):
        return "Allow"
    return "NotApplicable"


def can_assume(
    trust_policy: Mapping[str, object],
    service_principal: str,
    *,
    context: Mapping[str, ContextValue] | None = None,
) -> bool:
    """Return True when the role's trust policy lets that AWS service call sts:AssumeRole."""
    request = Request(
        principal_arn="",
        principal_account="",
        action="sts:AssumeRole",
        resource="",
        resource_account="",
        context=dict(context or {}),
        service_principal=service_principal,
    )
    return evaluate(trust_policy, request) == "Allow"


def service_source_context(
    service_principal: str, *, source_account: str, source_bucket: str | None = None
) -> dict[str, ContextValue]:
    """Return the confused-deputy keys an S3 service sends when it assumes a role, as far as AWS documents them.

    S3 replication (s3.amazonaws.com) sends aws:SourceAccount, the source bucket's owner, and
    aws:SourceArn, the source bucket's ARN. AWS documents no such keys for Batch Operations
    (batchoperations.s3.amazonaws.com), so none are sent for it: a trust policy relying on them
    fails in a drill, where AWS might fail it on the day of a recovery (docs/aws-facts.md).
    """
    if service_principal != aws_facts.S3_SERVICE_PRINCIPAL or source_bucket is None:
        return {}
    return {
        "aws:SourceAccount": source_account,
        "aws:SourceArn": aws_facts.bucket_arn(source_bucket, aws_facts.COMMERCIAL_PARTITION),
    }


def is_allowed(
    request: Request,
    *,
    identity_policies: Sequence[Mapping[str, object]] = (),
    resource_policy: Mapping[str, object] | None = None,
    resource_is_kms_key: bool = False,
) -> Decision:
    """Return AWS's verdict on the request given the principal's policies and the resource's."""
    if not caches_enabled():
        return _decide(request, identity_policies, resource_policy, resource_is_kms_key)
    return _decisions.decide(request, tuple(identity_policies), resource_policy, resource_is_kms_key)


def _decide(
    request: Request,
    identity_policies: Sequence[Mapping[str, object]],
    resource_policy: Mapping[str, object] | None,
    resource_is_kms_key: bool,
) -> Decision:
    """Return AWS's verdict on the request, reading every statement that may apply."""
    context = _LowercaseContext(request.context)
    identity = [m for p in identity_policies for m in _matching_statements(p, request, context)]
    resource = _matching_statements(resource_policy, request, context) if resource_policy else []
    subject = f"{request.action} on {request.resource} by {request.principal_arn}"
    resource_name = _resource_policy_name(request, resource_is_kms_key)

    denied = _explicit_deny(subject, [("an identity policy", identity), (f"the {resource_name}", resource)])
    if denied is not None:
        return denied

    identity_allow = next((m for m in identity if m.effect == "Allow"), None)
    direct_allow = next((m for m in resource if m.effect == "Allow" and m.via == "principal"), None)
    any_allow = next((m for m in resource if m.effect == "Allow"), None)
    if request.principal_account != request.resource_account:
        return _cross_account(request, subject, resource_name, identity_allow, any_allow, resource_policy)
    if resource_is_kms_key:
        return _same_account_key(request, subject, identity_allow, direct_allow, resource_policy, context)
    if identity_allow is not None:
        return Decision(True, f"Allowed: an identity policy ({identity_allow.label}) allows {subject}.")
    if direct_allow is not None:
        return Decision(True, f"Allowed: the {resource_name} ({direct_allow.label}) allows {subject}.")
    return Decision(
        False,
        f"No identity policy allows {subject}, and the {resource_name} does not name that "
        f"principal; add {request.action} for {request.resource} to the principal's policy.",
    )


def _explicit_deny(subject: str, sources: list[tuple[str, list[_Match]]]) -> Decision | None:
    """Return a denial naming the first Deny statement that applies, or None when none does."""
    for where, matches in sources:
        deny = next((m for m in matches if m.effect == "Deny"), None)
        if deny is not None:
            return Decision(
                False,
                f"Explicit deny in {where} ({deny.label}) blocks {subject}; an explicit deny "
                "overrides every allow, so remove or narrow that statement.",
            )
    return None


def _cross_account(
    request: Request,
    subject: str,
    resource_name: str,
    identity_allow: _Match | None,
    resource_allow: _Match | None,
    resource_policy: Mapping[str, object] | None,
) -> Decision:
    """Return the verdict when the principal and the resource live in different accounts."""
    if resource_allow is None:
        missing = f"there is no {resource_name}" if resource_policy is None else "it does not"
        return Decision(
            False,
            f"Cross-account request denied: {subject} needs the {resource_name} in account "
            f"{request.resource_account} to allow it, but {missing}; add a statement there that "
            f"allows {request.action} to {request.principal_arn} or to account "
            f"{request.principal_account}.",
        )
    if identity_allow is None:
        return Decision(
            False,
            f"Cross-account request denied: the {resource_name} allows it, but no identity "
            f"policy allows {subject}; add {request.action} for {request.resource} to the "
            "principal's policy.",
        )
    return Decision(
        True,
        f"Allowed: an identity policy ({identity_allow.label}) and the {resource_name} "
        f"({resource_allow.label}) both allow {subject}.",
    )


def _same_account_key(
    request: Request,
    subject: str,
    identity_allow: _Match | None,
    direct_allow: _Match | None,
    key_policy: Mapping[str, object] | None,
    context: _LowercaseContext,
) -> Decision:
    """Return the verdict for a KMS key used from its own account."""
    if direct_allow is not None:
        return Decision(True, f"Allowed: the key policy ({direct_allow.label}) allows {subject}.")
    delegation = _account_delegation(request, key_policy, context)
    if delegation is None:
        return Decision(
            False,
            f"The key policy neither names {request.principal_arn} nor lets IAM policies of "
            f"account {request.resource_account} grant {request.action}, so no identity "
            f"policy counts; add {request.principal_arn} as a key user or restore the statement that allows "
            f"{aws_facts.account_root_arn(request.resource_account, _partition(request.resource))}.",
        )
    if identity_allow is None:
        return Decision(
            False,
            f"The key policy ({delegation.label}) lets IAM policies grant {request.action}, "
            f"but no identity policy allows {subject}; add it to the principal's policy.",
        )
    return Decision(
        True,
        f"Allowed: the key policy ({delegation.label}) lets IAM policies grant it and an "
        f"identity policy ({identity_allow.label}) allows {subject}.",
    )


def _account_delegation(
    request: Request, key_policy: Mapping[str, object] | None, context: _LowercaseContext
) -> _Match | None:
    """Return the key-policy statement that lets the key's account grant the action, if any."""
    if not key_policy:
        return None
    return next(
        (m for m in _matching_statements(key_policy, _as_account(request), context) if m.effect == "Allow"),
        None,
    )


def _as_account(request: Request) -> Request:
    """Return the request as the resource's account itself (its root) would make it."""
    return Request(
        principal_arn=aws_facts.account_root_arn(request.resource_account, _partition(request.resource)),
        principal_account=request.resource_account,
        action=request.action,
        resource=request.resource,
        resource_account=request.resource_account,
        context=request.context,
    )


def _resource_policy_name(request: Request, is_kms_key: bool) -> str:
    """Return how a user calls the resource policy in play: key, bucket or resource policy."""
    if is_kms_key:
        return "key policy"
    if request.resource.startswith("arn:") and request.resource.split(":")[2:4] == ["s3", ""]:
        return "bucket policy"
    return "resource policy"


def _partition(arn: str) -> str:
    """Return the partition an ARN names; the commercial one for text that is not an ARN."""
    parts = arn.split(":")
    return parts[1] if len(parts) > 5 and parts[0] == "arn" else aws_facts.COMMERCIAL_PARTITION


# --- statements -----------------------------------------------------------------------------


def _matching_statements(
    policy: Mapping[str, object], request: Request, context: _LowercaseContext
) -> list[_Match]:
    """Return every statement of the policy that applies to the request."""
    if caches_enabled():
        return _cache.matching(policy, request, context)
    return _matching_statements_uncached(policy, request, context)


def _matching_statements_uncached(
    policy: Mapping[str, object], request: Request, context: Mapping[str, list[str]]
) -> list[_Match]:
    """Return every statement of the policy that applies to the request, reading it from scratch."""
    matches: list[_Match] = []
    for statement, label, effect in _checked_statements(policy):
        via = _principal_match(statement, request)
        if via is None:
            continue
        if not _action_matches(statement, request.action, label):
            continue
        if not _resource_matches(statement, request.resource):
            continue
        if not _conditions_hold(statement.get("Condition"), context, label):
            continue
        matches.append(_Match(effect, label, via))
    return matches


def _checked_statements(
    policy: Mapping[str, object],
) -> Iterator[tuple[Mapping[str, object], str, Literal["Allow", "Deny"]]]:
    """Yield each statement of a policy with its label (Sid or position) and Effect; BackendError on a malformed one."""
    for index, statement in enumerate(_as_list(policy.get("Statement")), start=1):
        if not isinstance(statement, Mapping):
            raise BackendError(f"statement {index} of a policy is not a JSON object: {statement!r}")
        sid = statement.get("Sid")
        label = f'Sid "{sid}"' if sid else f"statement #{index}"
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise BackendError(f"{label} has Effect {effect!r}; expected 'Allow' or 'Deny'")
        yield statement, label, "Allow" if effect == "Allow" else "Deny"


def _principal_match(statement: Mapping[str, object], request: Request) -> _Via | None:
    """Return how the statement's Principal or NotPrincipal covers the request, or None."""
    if "Principal" in statement:
        return _listed(statement["Principal"], request)
    if "NotPrincipal" in statement:
        # AWS checks the account as well as the principal, so the request escapes NotPrincipal
        # only when every identity it carries is listed.
        identities = _identities(request)
        excluded = _listed_identities(statement["NotPrincipal"])
        return None if identities and identities <= excluded else "principal"
    return "principal"  # identity policies name no principal: they belong to it


def _listed(principal: object, request: Request) -> _Via | None:
    """Return how a Principal element names the request's principal, or None."""
    if principal == "*":
        return "principal"
    listed = _listed_identities(principal)
    if "aws:*" in listed and request.principal_arn:
        return "principal"
    identities = _identities(request)
    if listed & (identities - {f"account:{request.principal_account}"}):
        return "principal"
    if f"account:{request.principal_account}" in listed and request.principal_account:
        return "account"
    return None


def _identities(request: Request) -> set[str]:
    """Return the identities a request carries, in the form `_listed_identities` produces."""
    identities: set[str] = set()
    if request.principal_arn:
        identities.add(request.principal_arn)
    if request.principal_account:
        identities.add(f"account:{request.principal_account}")
    if request.service_principal:
        identities.add(f"service:{request.service_principal}")
    return identities


def _listed_identities(principal: object) -> set[str]:
    """Return the identities a Principal element lists, accounts and services tagged as such."""
    if principal == "*":
        return {"aws:*"}
    if not isinstance(principal, Mapping):
        raise BackendError(f"Principal must be '*' or an object; got {principal!r}")
    listed: set[str] = set()
    for value in _strings(principal.get("AWS")):
        root = _ACCOUNT_ROOT.match(value)
        if value == "*":
            listed.add("aws:*")
        elif root:
            listed.add(f"account:{root.group(1)}")
        elif _ACCOUNT_ID.match(value):
            listed.add(f"account:{value}")
        else:
            listed.add(value)
    listed.update(f"service:{value}" for value in _strings(principal.get("Service")))
    return listed


def _action_matches(statement: Mapping[str, object], action: str, label: str) -> bool:
    """Return True when the statement's Action (or NotAction) covers the action."""
    if "Action" in statement:
        return any(_glob(p, ignore_case=True).fullmatch(action) for p in _strings(statement["Action"]))
    if "NotAction" in statement:
        return not any(_glob(p, ignore_case=True).fullmatch(action) for p in _strings(statement["NotAction"]))
    raise BackendError(f"{label} has neither Action nor NotAction; AWS rejects such a policy")


def _resource_matches(statement: Mapping[str, object], resource: str) -> bool:
    """Return True when the statement's Resource (or NotResource) covers the resource."""
    if "Resource" in statement:
        return any(_glob(p).fullmatch(resource) for p in _strings(statement["Resource"]))
    if "NotResource" in statement:
        return not any(_glob(p).fullmatch(resource) for p in _strings(statement["NotResource"]))
    return True  # trust policies have no Resource: the role itself is the resource


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """Return a regex for an IAM wildcard pattern: `*` any run of characters, `?` exactly one."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile(body, flags)


# --- the statement cache ----------------------------------------------------------------------
#
# A job asks the same few questions for each of its tasks: the same roles, actions and policies;
# only the object changes (its ARN, and the encryption context naming it). Whether a statement's
# Effect is valid, its Principal names the caller and its Action covers the action depends only on
# the document, the caller and the action, so that is worked out once per (document, caller,
# action) and kept. The Resource and the Condition are still tested on every request, so a verdict
# is the one a fresh reading gives. Entries are keyed by the document object: moto_state hands out
# one parsed document per stored text, so a policy edited in the backend is a new document and the
# very next request reads it. A document must therefore not be changed in place once evaluated.

_CACHE_LIMIT = 1024


@dataclass(frozen=True)
class _Candidate:
    """A statement whose Principal and Action cover one caller and action: what is left to test."""

    match: _Match
    resource_pattern: re.Pattern[str] | None  # None: no pattern can match
    resource_negated: bool
    resource_given: bool  # False for trust policies: the role itself is the resource
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] | None  # None: read the raw block
    raw_condition: object
    resource_globs: tuple[str, ...] = ()  # the Resource (or NotResource) patterns as written

    def applies(self, resource: str, context: _LowercaseContext) -> bool:
        """Return True when the statement's Resource and Condition cover this request."""
        if self.resource_given:
            hit = self.resource_pattern is not None and self.resource_pattern.fullmatch(resource) is not None
            if hit == self.resource_negated:
                return False
        if self.conditions is None:
            return _conditions_hold(self.raw_condition, context, self.match.label)
        for operator, key, expected in self.conditions:
            if not _condition_holds_for(operator, context.values_of(key), expected, self.match.label):
                return False
        return True


@lru_cache(maxsize=8192)
def _condition_holds_for(operator: str, values: tuple[str, ...], expected: tuple[str, ...], label: str) -> bool:
    """Return `_condition_holds` for hashable arguments, remembered: most values repeat for every task."""
    return _condition_holds(operator, list(values) or None, list(expected), label)


def _candidates(policy: Mapping[str, object], request: Request) -> tuple[_Candidate, ...]:
    """Return the statements whose Effect, Principal and Action cover the caller and action, in order.

    Checks and errors are those of `_matching_statements_uncached`, up to the Resource.
    """
    candidates: list[_Candidate] = []
    for statement, label, effect in _checked_statements(policy):
        via = _principal_match(statement, request)
        if via is None or not _action_matches(statement, request.action, label):
            continue
        pattern, negated, given = _resource_test(statement)
        candidates.append(_Candidate(
            _Match(effect, label, via), pattern, negated, given, *_condition_test(statement.get("Condition")),
            resource_globs=_resource_globs(statement),
        ))
    return tuple(candidates)


def _resource_test(statement: Mapping[str, object]) -> tuple[re.Pattern[str] | None, bool, bool]:
    """Return one regex for the statement's Resource (or NotResource) patterns, whether negated, whether given."""
    for element, negated in (("Resource", False), ("NotResource", True)):
        if element in statement:
            patterns = [_glob(p).pattern for p in _strings(statement[element])]
            combined = re.compile("|".join(f"(?:{p})" for p in patterns), re.DOTALL) if patterns else None
            return combined, negated, True
    return None, False, False


def _resource_globs(statement: Mapping[str, object]) -> tuple[str, ...]:
    """Return the statement's Resource (or NotResource) patterns as written."""
    for element in ("Resource", "NotResource"):
        if element in statement:
            return tuple(_strings(statement[element]))
    return ()


def _condition_test(condition: object) -> tuple[tuple[tuple[str, str, tuple[str, ...]], ...] | None, object]:
    """Return a Condition block as (operator, lowercased key, expected values); None when malformed."""
    if condition is None:
        return (), None
    if not isinstance(condition, Mapping) or not all(isinstance(keys, Mapping) for keys in condition.values()):
        return None, condition  # `_conditions_hold` raises the error on the first request
    tests = tuple(
        (str(operator), str(key).lower(), tuple(_strings(expected)))
        for operator, keys in condition.items()
        for key, expected in keys.items()
    )
    return tests, condition


# principal ARN, principal account, service principal, action
_Caller = tuple[str, str, str | None, str]


class _StatementCache:
    """The candidates of each (document, caller, action) seen."""

    def __init__(self) -> None:
        self._plans: dict[int, tuple[Mapping[str, object], dict[_Caller, tuple[_Candidate, ...]]]] = {}

    def matching(
        self, policy: Mapping[str, object], request: Request, context: _LowercaseContext
    ) -> list[_Match]:
        """Return every statement of the policy that applies to the request."""
        resource = request.resource
        return [c.match for c in self.candidates(policy, request) if c.applies(resource, context)]

    def candidates(self, policy: Mapping[str, object], request: Request) -> tuple[_Candidate, ...]:
        """Return the statements of the policy whose Effect, Principal and Action cover the caller and action."""
        entry = self._plans.get(id(policy))
        if entry is None or entry[0] is not policy:
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            # The entry holds the document, so its id cannot be reused while the entry exists.
            entry = (policy, {})
            self._plans[id(policy)] = entry
        plans = entry[1]
        caller: _Caller = (request.principal_arn, request.principal_account, request.service_principal, request.action)
        candidates = plans.get(caller)
        if candidates is None:
            candidates = _candidates(policy, request)
            if len(plans) >= _CACHE_LIMIT:
                plans.clear()
            plans[caller] = candidates
        return candidates


_cache = _StatementCache()


# What a verdict depends on, besides the statements that apply: who asks, which action, the resource's
# account, whether it is a KMS key (and the partition its account root is named in), the documents.
_PlanKey = tuple[object, ...]
_VERDICTS_PER_PLAN = 64


class _Plan:
    """The statements that may apply to one caller and action, and the verdict of each set seen to apply."""

    def __init__(self, documents: tuple[object, object], candidates: tuple[_Candidate, ...]) -> None:
        self.documents = documents  # held, so the ids in the plan's key cannot be reused while it exists
        self.candidates = candidates
        self.verdicts: dict[tuple[bool, ...], bool] = {}


class _VerdictCache:
    """Verdicts by the statements that apply, for a job that asks the same questions of millions of objects.

    `_decide`'s verdict depends only on which statements apply (their Effect, label and how their
    Principal matched), whether caller and resource share an account, and whether the resource is
    a KMS key. So for each caller, action and set of documents the statements whose Principal and
    Action cover the request are found once (`_candidates`); each request then tests their Resource
    and Condition against its own resource and context, as a fresh reading does, and a set of
    applying statements met before gives the same verdict again. The first request of each set is
    decided in full; a reused verdict words its reason (which names the request) only when read.
    """

    def __init__(self) -> None:
        self._plans: dict[_PlanKey, _Plan] = {}

    def decide(
        self,
        request: Request,
        identity_policies: tuple[Mapping[str, object], ...],
        resource_policy: Mapping[str, object] | None,
        resource_is_kms_key: bool,
    ) -> Decision:
        """Return the verdict on the request, the statements it meets tested against its resource and context."""
        partition = _partition(request.resource) if resource_is_kms_key else ""
        # A caller passes the same tuple of identity policies for every task (its assumed role's).
        key = (request.principal_arn, request.action, id(identity_policies), id(resource_policy),
               request.principal_account, request.service_principal, request.resource_account,
               resource_is_kms_key, partition)
        plan = self._plans.get(key)
        if plan is None:
            candidates = _plan_candidates(request, identity_policies, resource_policy, resource_is_kms_key)
            plan = _Plan((identity_policies, resource_policy), candidates)
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[key] = plan
        context = _LowercaseContext(request.context)
        resource = request.resource
        applying = tuple([candidate.applies(resource, context) for candidate in plan.candidates])
        allowed = plan.verdicts.get(applying)
        if allowed is None:
            decision = _decide(request, identity_policies, resource_policy, resource_is_kms_key)
            if len(plan.verdicts) >= _VERDICTS_PER_PLAN:
                plan.verdicts.clear()
            plan.verdicts[applying] = decision.allowed
            return decision
        return Decision(
            allowed, lambda: _decide(request, identity_policies, resource_policy, resource_is_kms_key).reason
        )


def _plan_candidates(
    request: Request,
    identity_policies: tuple[Mapping[str, object], ...],
    resource_policy: Mapping[str, object] | None,
    resource_is_kms_key: bool,
) -> tuple[_Candidate, ...]:
    """Return every statement `_decide` may find applying to the caller and action, in a fixed order.

    The identity policies' and the resource policy's for the caller; for a KMS key in the caller's
    own account also the key policy's for the account itself, which `_account_delegation` reads.
    """
    found = [c for document in identity_policies for c in _cache.candidates(document, request)]
    if resource_policy:
        found += _cache.candidates(resource_policy, request)
        if resource_is_kms_key and request.principal_account == request.resource_account:
            found += _cache.candidates(resource_policy, _as_account(request))
    return tuple(found)


_decisions = _VerdictCache()


# --- questions asked of many objects ------------------------------------------------------------
#
# A Batch Replication job asks each question (this role, this action, these policies) once per
# object, and the objects differ only in their keys: an object's ARN is its bucket's ARN, "/" and
# the key, and so is the encryption context S3 sends to KMS for it. For most statements, whether
# their Resource and Condition hold does not depend on the key at all: "arn:aws:s3:::vault/*" covers
# every object of the vault bucket and no object of any other. `PreparedCheck` works that out once
# per statement, so a job tests against each object only the statements for which the key can make
# a difference. The verdict is the one `_decide` gives for the completed request: it depends only on
# which statements apply (see `_VerdictCache`), and each set of applying statements is decided in
# full the first time it is met.


_Settled = bool | None  # True: holds for every key; False: for none; None: depends on the key


class PreparedCheck:
    """One authorization question asked of many objects whose requests differ only in the object's key.

    The request's resource, and each context value named in `tail_keys`, is given as a prefix: the
    request asked by `allows(tail)` has `tail` appended to each of them. The documents are read as
    they are when the check is prepared; prepare it again to read them again.
    """

    def __init__(
        self,
        request: Request,
        *,
        resource_is_prefix: bool,
        tail_keys: Iterable[str] = (),
        identity_policies: Sequence[Mapping[str, object]] = (),
        resource_policy: Mapping[str, object] | None = None,
        resource_is_kms_key: bool = False,
    ) -> None:
        self._request = request
        self._resource_is_prefix = resource_is_prefix
        self._tail_keys = tuple(tail_keys)
        self._identity = tuple(identity_policies)
        self._resource_policy = resource_policy
        self._kms = resource_is_kms_key
        self._cached = caches_enabled()
        self._verdicts: dict[tuple[bool, ...], bool] = {}
        self._verdict: bool | None = None  # the verdict for every key, once known
        if not self._cached:
            return
        self._candidates = _plan_candidates(request, self._identity, resource_policy, resource_is_kms_key)
        lowered_tails = {key.lower() for key in self._tail_keys}
        settled = [
            _settled(candidate, request.resource, resource_is_prefix, request.context, lowered_tails)
            for candidate in self._candidates
        ]
        self._fixed = tuple(False if value is None else value for value in settled)
        self._varying = tuple(index for index, value in enumerate(settled) if value is None)

    def request_for(self, tail: str) -> Request:
        """Return the request this check asks about the object whose key is `tail`."""
        template = self._request
        context = template.context
        if self._tail_keys:
            context = dict(context)
            for key in self._tail_keys:
                context[key] = f"{context[key]}{tail}"
        resource = template.resource + tail if self._resource_is_prefix else template.resource
        return Request(template.principal_arn, template.principal_account, template.action, resource,
                       template.resource_account, context, template.service_principal)

    def allows(self, tail: str) -> bool:
        """Return whether AWS allows the request about the object whose key is `tail`."""
        if self._verdict is not None:
            return self._verdict
        if not self._cached:
            return self.decision(tail).allowed
        applying = self._fixed
        if self._varying:
            request = self.request_for(tail)
            context = _LowercaseContext(request.context)
            resource = request.resource
            found = list(applying)
            for index in self._varying:
                found[index] = self._candidates[index].applies(resource, context)
            applying = tuple(found)
        allowed = self._verdicts.get(applying)
        if allowed is None:
            allowed = self.decision(tail).allowed
            if len(self._verdicts) >= _VERDICTS_PER_PLAN:
                self._verdicts.clear()
            self._verdicts[applying] = allowed
            if not self._varying:
                self._verdict = allowed
        return allowed

    def decision(self, tail: str) -> Decision:
        """Return the verdict and its reason for the object whose key is `tail`, decided in full."""
        return _decide(self.request_for(tail), self._identity, self._resource_policy, self._kms)


def _settled(
    candidate: _Candidate,
    resource: str,
    resource_is_prefix: bool,
    context: Mapping[str, ContextValue],
    tail_keys: set[str],
) -> _Settled:
    """Return whether the statement applies whatever the key (True), for no key (False), or None when it depends.

    A statement with a Condition operator the backend cannot evaluate is left to each request,
    which then raises as it always has.
    """
    if candidate.conditions is None or not all(_supported(op) for op, _, _ in candidate.conditions):
        return None
    results: list[_Settled] = []
    if candidate.resource_given:
        if resource_is_prefix:
            hit = _any_settled(_glob_over_tail(pattern, resource) for pattern in candidate.resource_globs)
        else:
            hit = candidate.resource_pattern is not None and candidate.resource_pattern.fullmatch(resource) is not None
        results.append(None if hit is None else hit != candidate.resource_negated)
    lowered = {key.lower(): value for key, value in context.items()}
    for operator, key, expected in candidate.conditions:
        if key in tail_keys:
            results.append(_condition_over_tail(operator, str(lowered[key]), expected, candidate.match.label))
        else:
            value = lowered.get(key)
            values = () if value is None else tuple(_strings(value))
            results.append(_condition_holds_for(operator, values, expected, candidate.match.label))
    if False in results:
        return False
    return True if all(result is True for result in results) else None


def _supported(operator: str) -> bool:
    """Return whether `_condition_holds` evaluates the operator rather than refusing it."""
    qualifier, _, name = operator.lower().rpartition(":")
    return name == "null" or (name.removesuffix("ifexists") in _OPERATORS and qualifier in _QUALIFIERS)


def _condition_over_tail(operator: str, prefix: str, expected: tuple[str, ...], label: str) -> _Settled:
    """Return whether one condition holds for a context value `prefix` + any key: always, never, or None."""
    _, _, name = operator.lower().rpartition(":")
    if name == "null":
        return _condition_holds_for(operator, (prefix,), expected, label)  # the key is there, whatever its value
    # The value is there and single, so IfExists, ForAnyValue and ForAllValues all reduce to the
    # operator itself, and a negated operator to the negation of its positive twin.
    base = name.removesuffix("ifexists")
    _, negated = _OPERATORS[base]
    if base in ("stringlike", "stringnotlike"):
        hit = _any_settled(_glob_over_tail(pattern, prefix) for pattern in expected)
    elif base in ("stringequals", "stringnotequals"):
        hit = _any_settled(None if pattern.startswith(prefix) else False for pattern in expected)
    elif base in ("arnlike", "arnnotlike", "arnequals", "arnnotequals"):
        hit = _any_settled(_arn_over_tail(pattern, prefix) for pattern in expected)
    else:
        return None
    return None if hit is None else hit != negated


def _glob_over_tail(pattern: str, prefix: str) -> _Settled:
    """Return whether an IAM wildcard pattern matches `prefix` + any key: always, never, or None."""
    wildcards = [index for index in (pattern.find("*"), pattern.find("?")) if index >= 0]
    if not wildcards:
        return None if pattern.startswith(prefix) else False
    cut = min(wildcards)
    literal = pattern[:cut]
    common = min(len(literal), len(prefix))
    if literal[:common] != prefix[:common]:
        return False
    if len(literal) <= len(prefix) and pattern[cut:] == "*":
        return True
    return None


def _arn_over_tail(pattern: str, prefix: str) -> _Settled:
    """Return `_arn_like(prefix + any key, pattern)`: always, never, or None (see `_glob_over_tail`)."""
    value_parts, pattern_parts = prefix.split(":", 5), pattern.split(":", 5)
    if len(value_parts) != 6:
        return None  # the key may hold the missing colons
    if len(pattern_parts) != 6:
        return False
    if not all(_glob(p).fullmatch(v) for v, p in zip(value_parts[:5], pattern_parts[:5], strict=True)):
        return False
    return _glob_over_tail(pattern_parts[5], value_parts[5])


def _any_settled(results: Iterable[_Settled]) -> _Settled:
    """Return the OR of settled answers: True when one always holds, False when none ever does, else None."""
    answers = list(results)
    if True in answers:
        return True
    return False if all(answer is False for answer in answers) else None


class _LowercaseContext(Mapping[str, list[str]]):
    """The request context keyed case-insensitively; a value is turned into strings only when a Condition reads it."""

    def __init__(self, given: Mapping[str, ContextValue]) -> None:
        self._given = given
        self._keys: dict[str, ContextValue] | None = None

    def _lowered(self) -> dict[str, ContextValue]:
        if self._keys is None:
            self._keys = {key.lower(): value for key, value in self._given.items()}
        return self._keys

    def __getitem__(self, key: str) -> list[str]:
        return _strings(self._lowered()[key])

    def get(self, key: str, default: object = None) -> Any:
        """Return the values of a lowercased key, or `default` when the request has none."""
        lowered = self._lowered()
        return _strings(lowered[key]) if key in lowered else default

    def values_of(self, key: str) -> tuple[str, ...]:
        """Return the values of a lowercased key as a tuple, empty when the request has none."""
        value = self._lowered().get(key)
        if value is None:
            return ()
        return (value,) if type(value) is str else tuple(_strings(value))

    def __iter__(self) -> Iterator[str]:
        return iter(self._lowered())

    def __len__(self) -> int:
        return len(self._lowered())


# --- conditions -----------------------------------------------------------------------------

_Compare = Callable[[str, str], bool]


def _arn_like(value: str, pattern: str) -> bool:
    """Return True when each of the six colon-separated ARN parts matches its pattern part."""
    value_parts, pattern_parts = value.split(":", 5), pattern.split(":", 5)
    if len(value_parts) != 6 or len(pattern_parts) != 6:
        return False
    return all(_glob(p).fullmatch(v) for v, p in zip(value_parts, pattern_parts, strict=True))


def _numeric(compare: Callable[[float, float], bool]) -> _Compare:
    """Return a comparison of two numbers given as strings; non-numbers never match."""

    def check(value: str, pattern: str) -> bool:
        try:
            return compare(float(value), float(pattern))
        except ValueError:
            return False

    return check


# Each negated operator is stored as its positive twin plus a flag, because AWS defines the
# negation over all policy values at once (NOR), not value by value.
_OPERATORS_BY_NAME: dict[str, tuple[_Compare, bool]] = {
    "StringEquals": (lambda v, p: v == p, False),
    "StringNotEquals": (lambda v, p: v == p, True),
    "StringEqualsIgnoreCase": (lambda v, p: v.casefold() == p.casefold(), False),
    "StringNotEqualsIgnoreCase": (lambda v, p: v.casefold() == p.casefold(), True),
    "StringLike": (lambda v, p: _glob(p).fullmatch(v) is not None, False),
    "StringNotLike": (lambda v, p: _glob(p).fullmatch(v) is not None, True),
    "ArnEquals": (_arn_like, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnNotLike": (_arn_like, True),
    "NumericEquals": (_numeric(lambda v, p: v == p), False),
    "NumericNotEquals": (_numeric(lambda v, p: v == p), True),
    "NumericLessThan": (_numeric(lambda v, p: v < p), False),
    "NumericLessThanEquals": (_numeric(lambda v, p: v <= p), False),
    "NumericGreaterThan": (_numeric(lambda v, p: v > p), False),
    "NumericGreaterThanEquals": (_numeric(lambda v, p: v >= p), False),
    "Bool": (lambda v, p: v.lower() == p.lower(), False),
}
_OPERATORS = {name.lower(): entry for name, entry in _OPERATORS_BY_NAME.items()}
_QUALIFIERS = ("", "foranyvalue", "forallvalues")


def _conditions_hold(condition: object, context: Mapping[str, list[str]], label: str) -> bool:
    """Return True when every operator and every key of the Condition block holds (AND)."""
    if condition is None:
        return True
    if not isinstance(condition, Mapping):
        raise BackendError(f"{label} has a Condition that is not an object: {condition!r}")
    for operator, keys in condition.items():
        if not isinstance(keys, Mapping):
            raise BackendError(f"{label}: condition {operator} must map keys to values")
        for key, expected in keys.items():
            if not _condition_holds(str(operator), context.get(str(key).lower()), _strings(expected), label):
                return False
    return True


def _condition_holds(operator: str, values: list[str] | None, expected: list[str], label: str) -> bool:
    """Return whether one operator holds for the request values of one context key."""
    qualifier, _, name = operator.lower().rpartition(":")
    if name == "null":
        # Null asks only whether the key is there: "true" means it must be absent.
        return any((value.lower() == "true") == (not values) for value in expected)
    if_exists = name.endswith("ifexists")
    base = name.removesuffix("ifexists")
    if base not in _OPERATORS or qualifier not in _QUALIFIERS:
        raise BackendError(
            f"{label} uses condition operator {operator!r}, which the embedded backend does not "
            f"evaluate; use Null or one of {', '.join(_OPERATORS_BY_NAME)}, optionally with "
            "IfExists, ForAnyValue: or ForAllValues:."
        )
    compare, negated = _OPERATORS[base]
    if not values:
        if qualifier == "forallvalues":
            return True  # an empty set satisfies "every value"
        if qualifier == "foranyvalue":
            return if_exists  # an empty set has no value that could match
        return if_exists or negated

    def satisfied(value: str) -> bool:
        hit = any(compare(value, pattern) for pattern in expected)
        return not hit if negated else hit

    if qualifier == "forallvalues" or (qualifier == "" and negated):
        return all(satisfied(value) for value in values)
    return any(satisfied(value) for value in values)


# --- plain data -----------------------------------------------------------------------------


def _strings(value: object) -> list[str]:
    """Return a policy or context value as a list of strings (JSON allows one value or a list)."""
    if value is None:
        return []
    items: Iterable[object] = value if isinstance(value, (list, tuple)) else [value]
    return [_text(item) for item in items]


def _text(item: object) -> str:
    """Return a JSON scalar as IAM reads it: booleans as 'true'/'false', numbers as written."""
    if isinstance(item, bool):
        return "true" if item else "false"
    return str(item)


def _lowercase_keys(context: Mapping[str, ContextValue]) -> dict[str, list[str]]:
    """Return the request context keyed case-insensitively, every value as a list."""
    return {key.lower(): _strings(value) for key, value in context.items()}


def _as_list(value: object) -> list[object]:
    """Return a policy element that may be one item or a list as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
