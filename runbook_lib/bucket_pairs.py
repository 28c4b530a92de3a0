"""Vault buckets and the recovery buckets they are recovered into, as one list of pairs.

A recovery may span many vault buckets. The parameters name them in `vault.buckets` (each with its
KMS key and, optionally, its own key prefix, job priority and recovery bucket) and say how the
recovery buckets not given are named (`recovery.bucket_name_pattern`, with `{vault_bucket}`); the
one-bucket form (`vault.bucket`, `vault.kms_key_arn`, `recovery.bucket`) is one pair. Every phase
step that acts on one bucket acts on one `BucketPair`; the rules between the pairs are checked here,
all at once, with the other parameters' rules.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runbook_lib.errors import ParameterProblem
from runbook_lib.param_checks import bucket_rule_failures
from runbook_lib.param_problems import MISSING

__all__ = ["PATTERN_FIELD", "BucketPair", "pair_problems", "pairs_of", "recovery_bucket_name"]

PATTERN_FIELD = "{vault_bucket}"


@dataclass(frozen=True)
class BucketPair:
    """One vault bucket, its KMS key and scope, and the recovery bucket it is recovered into."""

    vault_bucket: str
    vault_kms_key_arn: str
    recovery_bucket: str
    key_prefix: str | None
    priority: int

    @property
    def label(self) -> str:
        """The pair as a reader sees it: vault bucket -> recovery bucket."""
        return f"{self.vault_bucket} -> {self.recovery_bucket}"


def recovery_bucket_name(pattern: str, vault_bucket: str) -> str:
    """Return the recovery bucket name the pattern gives a vault bucket."""
    return pattern.replace(PATTERN_FIELD, vault_bucket)


def pairs_of(values: Mapping[str, Any]) -> tuple[BucketPair, ...]:
    """Return the bucket pairs of validated parameter values (the one-bucket form gives one pair)."""
    prefix, priority = values.get("job.key_prefix"), values.get("job.priority", 10)
    entries = values.get("vault.buckets")
    if not entries:
        return (BucketPair(values["vault.bucket"], values["vault.kms_key_arn"], values["recovery.bucket"],
                           prefix, priority),)
    pattern = values.get("recovery.bucket_name_pattern")
    return tuple(
        BucketPair(
            entry.bucket, entry.kms_key_arn,
            entry.recovery_bucket or recovery_bucket_name(pattern or "", entry.bucket),
            entry.key_prefix if entry.key_prefix is not None else prefix,
            entry.priority if entry.priority is not None else priority)
        for entry in entries)


def _pattern_problems(pattern: str) -> list[str]:
    """Return what is wrong with a recovery bucket name pattern (empty when it is usable)."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError:
        return ["a pattern whose only braces are {vault_bucket}"]
    if fields != ["vault_bucket"]:
        return ["a pattern with {vault_bucket} exactly once and no other placeholder, "
                "such as \"{vault_bucket}-recovered\""]
    return []


def pair_problems(values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return a problem for every rule between the vault buckets, recovery buckets and report bucket that is broken.

    `values` holds the validated parameters that are valid on their own (see `params`); rules
    on a parameter that has a problem of its own are skipped.
    """
    entries = values.get("vault.buckets")
    one = ("vault.bucket", "vault.kms_key_arn", "recovery.bucket")
    if "vault.buckets" not in values:
        return []  # vault.buckets was given but is invalid: its own problems say why
    if entries is None:
        return [ParameterProblem(name, MISSING, "a value: the one-bucket form names vault.bucket, "
                                 "vault.kms_key_arn and recovery.bucket (or give vault.buckets, a list)")
                for name in one if values.get(name) is None and name in values]
    problems = _many_form_problems(values, entries)
    pattern = values.get("recovery.bucket_name_pattern")
    named = all(entry.recovery_bucket is not None for entry in entries)
    if entries and (named or (pattern is not None and not _pattern_problems(pattern))):
        problems += _name_clash_problems(pairs_of(values), values.get("report_bucket"))
    return problems


def _many_form_problems(values: Mapping[str, Any], entries: Sequence[Any]) -> list[ParameterProblem]:
    """Return the problems of the many-bucket form itself: mixing forms, the pattern, the prefixes."""
    problems = []
    for name in ("vault.bucket", "vault.kms_key_arn", "recovery.bucket"):
        if values.get(name) is not None:
            problems.append(ParameterProblem(
                name, values[name], "null when vault.buckets is given: name each bucket in vault.buckets "
                "(recovery buckets with recovery_bucket or recovery.bucket_name_pattern)"))
    if not entries:
        problems.append(ParameterProblem("vault.buckets", [], "a list of at least one vault bucket"))
    pattern = values.get("recovery.bucket_name_pattern")
    unnamed = [i for i, entry in enumerate(entries) if entry.recovery_bucket is None]
    if pattern is None and unnamed and "recovery.bucket_name_pattern" in values:
        problems.append(ParameterProblem(
            "recovery.bucket_name_pattern", MISSING,
            f"a pattern such as \"{{vault_bucket}}-recovered\": vault.buckets.{unnamed[0]} has no recovery_bucket"))
    elif pattern is not None:
        problems += [ParameterProblem("recovery.bucket_name_pattern", pattern, text)
                     for text in _pattern_problems(pattern)]
        if not _pattern_problems(pattern):
            for i in unnamed:
                name = recovery_bucket_name(pattern, entries[i].bucket)
                failures = bucket_rule_failures(name)
                if failures:
                    problems.append(ParameterProblem(
                        f"vault.buckets.{i}.recovery_bucket", name,
                        "a valid recovery bucket name: the pattern gives one that is not an S3 bucket name "
                        + "; ".join(failures) + " (give recovery_bucket for this bucket, or change the pattern)"))
    job_prefix = values.get("job.key_prefix")
    if job_prefix is not None:
        problems += [ParameterProblem(
            f"vault.buckets.{i}.key_prefix", entry.key_prefix,
            f"null when job.key_prefix is given ({job_prefix!r}): give the prefix per bucket or for all, not both")
            for i, entry in enumerate(entries) if entry.key_prefix is not None]
    for i, entry in enumerate(entries):
        problems += _key_location_problems(f"vault.buckets.{i}.kms_key_arn", entry.kms_key_arn, values)
    return problems


def _key_location_problems(field: str, arn: str, values: Mapping[str, Any]) -> list[ParameterProblem]:
    """Return problems when a vault key is not in the vault account and the vault region."""
    account, region = values.get("vault.account_id"), values.get("region")
    _, _, _, key_region, key_account, _ = arn.split(":", 5)
    problems = []
    if account is not None and key_account != account:
        problems.append(ParameterProblem(
            field, arn, f"a key in the vault account {account} (vault.account_id), not in {key_account}"))
    if region is not None and key_region != region:
        problems.append(ParameterProblem(
            field, arn, f"a key in the vault region {region} (region), not in {key_region}"))
    return problems


def _name_clash_problems(pairs: Sequence[BucketPair], report_bucket: str | None) -> list[ParameterProblem]:
    """Return a problem for every bucket name used twice across vault, recovery and report buckets."""
    problems = []
    vault_counts = Counter(pair.vault_bucket for pair in pairs)
    recovery_counts = Counter(pair.recovery_bucket for pair in pairs)
    vault_names = set(vault_counts)
    for i, pair in enumerate(pairs):
        where = f"vault.buckets.{i}"
        if vault_counts[pair.vault_bucket] > 1 and pairs.index(pair) == i:
            problems.append(ParameterProblem(f"{where}.bucket", pair.vault_bucket,
                                             "each vault bucket once: this one is listed more than once"))
        if recovery_counts[pair.recovery_bucket] > 1:
            problems.append(ParameterProblem(
                f"{where}.recovery_bucket", pair.recovery_bucket,
                "a recovery bucket of its own: another vault bucket is recovered into the same one"))
        if pair.recovery_bucket in vault_names:
            problems.append(ParameterProblem(f"{where}.recovery_bucket", pair.recovery_bucket,
                                             "a bucket name other than any vault bucket's (vault.buckets)"))
        if pair.recovery_bucket == report_bucket:
            problems.append(ParameterProblem(f"{where}.recovery_bucket", pair.recovery_bucket,
                                             "a bucket name other than the report bucket's (report_bucket)"))
    if report_bucket in vault_names:
        problems.append(ParameterProblem("report_bucket", report_bucket,
                                         "a bucket of its own, not a vault bucket (vault.buckets)"))
    return problems
