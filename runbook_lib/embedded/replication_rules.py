"""Which replication rule of a bucket applies to an object version, as S3 decides it.

moto stores a bucket's replication configuration as the XML it was put in (parsed by xmltodict:
strings, one item or a list, None for an empty element); `normalised` gives it one documented
shape, and `applicable_rules` picks, per destination, the rule that replicates a version there.
Batch Replication's eligibility filter and each task both decide through it.

Choices no AWS source confirms:

| question                                   | what this module does                                 |
|--------------------------------------------|-------------------------------------------------------|
| several destinations                       | each destination's highest-priority Enabled rule      |
|                                            | that matches applies                                  |
| delete markers and tag filters             | a delete marker never matches a rule with a Tag       |
|                                            | filter (AWS refuses delete marker replication there)  |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runbook_lib import aws_facts
from runbook_lib.embedded import moto_state, restore
from runbook_lib.embedded.moto_state import is_delete_marker
from runbook_lib.embedded.task_caches import caches_enabled

__all__ = [
    "KMS_ENCRYPTIONS",
    "applicable_rules",
    "eligibility",
    "eligible_for_replication",
    "normalised",
    "replication_configuration",
    "stored_configuration",
]

KMS_ENCRYPTIONS = frozenset({"aws:kms", "aws:kms:dsse"})


# --- the replication configuration -----------------------------------------------------------


def replication_configuration(source_account: str, bucket_name: str) -> dict[str, Any] | None:
    """Return the bucket's replication configuration with every rule in one shape, or None.

    The shape is the stored XML's: `{"Role": str, "Rule": [rule, ...]}`. Each rule has `ID` (str),
    `Priority` (int), `Status`, and `Filter` as `{}`, `{"Prefix": str}`, `{"Tag": {"Key", "Value"}}`
    or `{"And": {"Prefix": str, "Tag": [{"Key", "Value"}, ...]}}`; a legacy rule keeps its
    top-level `Prefix` and has no `Filter`. `DeleteMarkerReplication`, `SourceSelectionCriteria`
    and `Destination` are dicts of strings (empty when absent).
    """
    bucket = moto_state.owned_bucket(source_account, bucket_name)
    if bucket is None:
        return None
    return normalised(getattr(bucket, "replication", None))


# The last configurations normalised, by the identity of moto's stored object: moto replaces that
# object when a configuration is put or deleted, so a changed configuration is read afresh.
_NORMALISED_LIMIT = 64
_normalised: dict[int, tuple[Mapping[str, Any], dict[str, Any] | None]] = {}


def stored_configuration(bucket: Any) -> dict[str, Any] | None:
    """Return the bucket's configuration as `normalised` gives it, shared between tasks: read it, never modify it."""
    stored = getattr(bucket, "replication", None)
    if not stored or not caches_enabled():
        return normalised(stored)
    entry = _normalised.get(id(stored))
    if entry is None or entry[0] is not stored:
        if len(_normalised) >= _NORMALISED_LIMIT:
            _normalised.clear()
        # The entry holds the stored object, so its id cannot be reused while the entry exists.
        entry = (stored, normalised(stored))
        _normalised[id(stored)] = entry
    return entry[1]


def normalised(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return moto's stored (xmltodict) configuration in the documented shape."""
    if not stored:
        return None
    rules = stored.get("Rule") or []
    if isinstance(rules, Mapping):
        rules = [rules]
    return {"Role": str(stored.get("Role") or ""), "Rule": [_normalised_rule(rule) for rule in rules]}


def _normalised_rule(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Return one stored rule with typed values and empty elements as empty values."""
    rule: dict[str, Any] = {
        key: _without_nones(value) for key, value in stored.items() if not key.startswith("@")
    }
    rule["ID"] = str(stored.get("ID") or "")
    rule["Priority"] = int(stored.get("Priority") or 0)
    rule["Status"] = str(stored.get("Status") or "Disabled")
    if "Filter" in stored:
        rule["Filter"] = _normalised_filter(stored.get("Filter"))
        rule.pop("Prefix", None)
    else:
        rule["Prefix"] = str(stored.get("Prefix") or "")
    for name in ("DeleteMarkerReplication", "SourceSelectionCriteria", "Destination"):
        rule[name] = rule.get(name) or {}
    return rule


def _normalised_filter(stored: Any) -> dict[str, Any]:
    """Return a rule's Filter as one of its three forms, or {} for "every object"."""
    if not stored:
        return {}
    if "And" in stored:
        both = stored["And"] or {}
        return {"And": {"Prefix": str(both.get("Prefix") or ""), "Tag": _tag_list(both.get("Tag"))}}
    if "Tag" in stored:
        tags = _tag_list(stored["Tag"])
        return {"Tag": tags[0]} if tags else {}
    if "Prefix" in stored:
        return {"Prefix": str(stored.get("Prefix") or "")}
    return {}


def _tag_list(stored: Any) -> list[dict[str, str]]:
    """Return XML Tag elements (one or many) as a list of Key/Value dicts."""
    if not stored:
        return []
    items = stored if isinstance(stored, list) else [stored]
    return [{"Key": str(t.get("Key") or ""), "Value": str(t.get("Value") or "")} for t in items]


def _without_nones(value: Any) -> Any:
    """Return a parsed XML value with empty elements (None) turned into empty dicts."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {k: _without_nones(v) for k, v in value.items() if not str(k).startswith("@")}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


# --- eligibility ------------------------------------------------------------------------------


def eligible_for_replication(source_account: str, bucket_name: str, version: Any) -> bool:
    """Return True when the bucket's replication rules would replicate this version.

    `version` is a moto FakeKey or FakeDeleteMarker of the bucket. For each destination the
    Enabled rule of highest priority whose filter matches applies; the version is eligible when
    that rule accepts it (SSE-KMS objects need SseKmsEncryptedObjects Enabled, delete markers need
    DeleteMarkerReplication Enabled, archived storage classes only while a restored copy is readable).
    """
    return eligibility(source_account, bucket_name)(version)


def eligibility(source_account: str, bucket_name: str) -> Callable[[Any], bool]:
    """Return eligible_for_replication for one bucket's versions, its rules looked up once (asked per version).

    The versions' tags are read only when a rule's filter names a tag.
    """
    bucket = moto_state.owned_bucket(source_account, bucket_name)
    config = stored_configuration(bucket) if bucket is not None else None
    if config is None:
        return lambda version: False
    ordered = _rules_by_priority(config)
    # Tags are read unless every rule selects by prefix alone (or selects everything).
    tagged = not all(set(rule.get("Filter") or {}) <= {"Prefix"} for _, rule in ordered)

    def eligible(version: Any) -> bool:
        # applicable_rules, stopping at the first destination whose rule takes the version
        tags = moto_state.version_tags(bucket, version) if tagged else {}
        marker, name, tried = is_delete_marker(version), version.name, set()
        for destination, rule in ordered:
            if destination not in tried and _filter_matches(rule, name, tags, marker):
                tried.add(destination)
                if _rule_accepts(rule, version):
                    return True
        return False

    return eligible


def applicable_rules(
    config: Mapping[str, Any], version: Any, tags: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Return, per destination, the rule that replicates the version there (none when it is excluded)."""
    marker = is_delete_marker(version)
    chosen: dict[str, dict[str, Any]] = {}
    for destination, rule in _rules_by_priority(config):
        if destination not in chosen and _filter_matches(rule, version.name, tags, marker):
            chosen[destination] = rule
    return [rule for rule in chosen.values() if _rule_accepts(rule, version)]


# The enabled rules of each configuration seen, in the order they are tried: a job tries them for
# every version. Keyed by the configuration object, which the entry holds (see stored_configuration).
_ordered: dict[int, tuple[Mapping[str, Any], list[tuple[str, dict[str, Any]]]]] = {}


def _rules_by_priority(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return the configuration's enabled rules, highest priority first, each with its destination bucket ARN."""
    entry = _ordered.get(id(config)) if caches_enabled() else None
    if entry is not None and entry[0] is config:
        return entry[1]
    enabled = [rule for rule in config["Rule"] if rule["Status"] == "Enabled"]
    # Highest priority first; a stable sort keeps the stored order among equal priorities.
    enabled.sort(key=lambda rule: -rule["Priority"])
    ordered = [(str(rule["Destination"].get("Bucket", "")), rule) for rule in enabled]
    if len(_ordered) >= _NORMALISED_LIMIT:
        _ordered.clear()
    _ordered[id(config)] = (config, ordered)
    return ordered


def _filter_matches(rule: Mapping[str, Any], key: str, tags: Mapping[str, str], is_marker: bool) -> bool:
    """Return True when the rule's filter (or legacy prefix) selects the key and its tags."""
    if "Filter" not in rule:
        return key.startswith(rule.get("Prefix", ""))
    selector = rule["Filter"]
    prefix, wanted = "", []
    if "And" in selector:
        prefix, wanted = selector["And"]["Prefix"], selector["And"]["Tag"]
    elif "Tag" in selector:
        wanted = [selector["Tag"]]
    elif "Prefix" in selector:
        prefix = selector["Prefix"]
    if wanted and is_marker:
        return False  # delete markers carry no tags
    return key.startswith(prefix) and all(tags.get(t["Key"]) == t["Value"] for t in wanted)


def _rule_accepts(rule: Mapping[str, Any], version: Any) -> bool:
    """Return True when the rule's own settings let this version through."""
    if is_delete_marker(version):
        if "Filter" not in rule:
            return True  # legacy rules replicate delete markers
        return _enabled(rule["DeleteMarkerReplication"])
    if version.storage_class in aws_facts.ARCHIVED_STORAGE_CLASSES and not restore.is_restored(version):
        return False  # an archived version replicates only while a restored copy of it is readable
    if version.encryption in KMS_ENCRYPTIONS:
        return _enabled(rule["SourceSelectionCriteria"].get("SseKmsEncryptedObjects"))
    return True


def _enabled(setting: Any) -> bool:
    return isinstance(setting, Mapping) and setting.get("Status") == "Enabled"
