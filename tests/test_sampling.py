"""A sample drill's draw: stratified, covering every stratum and feature, repeatable, and a valid CSV manifest."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pandas as pd
import pytest

from runbook_lib import reports
from runbook_lib.errors import ParameterError
from runbook_lib.sampling import FEATURES, _allocate, draw, is_awkward_key, sample_manifest, stratify

MODES = ("COMPLIANCE", "GOVERNANCE", None)
HOLDS = ("ON", "OFF", None)
SIZES = (0, 17, 900, 5_000, 300_000, 2_500_000)
AWKWARD = ("reports/profit+loss.xlsx", "i18n/日本語/ファイル.txt", "spaces  and\ttabs/odd name .txt", "trailing/",
           "deep/" + "k" * 400 + ".bin", "100% done.txt")


def vault_frame(objects: int = 400, seed: int = 5) -> pd.DataFrame:
    """Return a snapshot-like vault: mixed locks, holds and sizes, awkward keys, and two delete markers."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    moment = pd.Timestamp("2026-01-01T00:00:00Z")
    for index in range(objects):
        key = AWKWARD[index] if index < len(AWKWARD) else f"app/{index // 3:05d}.json"
        mode = rng.choice(MODES)
        rows.append({
            "key": key, "version_id": f"v{index:05d}", "is_delete_marker": False,
            "size": rng.choice(SIZES) if index != 7 else 9_000_000_000,
            "last_modified": moment + pd.Timedelta(hours=index),
            "object_lock_mode": mode,
            "object_lock_retain_until_date": pd.Timestamp("2030-01-01T00:00:00Z") if mode else None,
            "object_lock_legal_hold_status": rng.choice(HOLDS),
        })
    for key in ("app/00010.json", "app/00020.json"):
        rows.append({"key": key, "version_id": f"dm-{key}", "is_delete_marker": True, "size": 0,
                     "last_modified": moment + pd.Timedelta(days=400), "object_lock_mode": None,
                     "object_lock_retain_until_date": None, "object_lock_legal_hold_status": None})
    frame = pd.DataFrame(rows)
    frame["last_modified"] = pd.to_datetime(frame["last_modified"], utc=True)
    return frame


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    vault = vault_frame()
    return stratify(vault, vault[~vault["is_delete_marker"]].reset_index(drop=True))


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(frame["key"], frame["version_id"], strict=True))


def test_strata_are_lock_mode_by_legal_hold_by_size_band(population: pd.DataFrame) -> None:
    row = population.set_index("version_id").loc["v00007"]
    assert row["size_band"] == "1 GiB or more"
    assert set(population["lock"]) == {"COMPLIANCE", "GOVERNANCE", "no retention"}
    assert set(population["legal_hold"]) == {"hold ON", "hold OFF"}
    # Every lock and hold in the four smaller bands; the one version of 1 GiB or more is a stratum of its own.
    assert population["stratum"].nunique() == 3 * 2 * 4 + 1
    # The versions right next to a delete marker in their key's history, and nothing else.
    assert set(pairs(population[population["next_to_delete_marker"]])) == {
        ("app/00010.json", "v00032"), ("app/00020.json", "v00062")}


@pytest.mark.parametrize(("key", "awkward"), [
    ("billing/2025/01/27/billing-000022.gz", False), ("a/b-c_d.e~f", False), ("reports/profit+loss.xlsx", True),
    ("i18n/résumé.txt", True), ("trailing/", True), ("x" * 256, True), ("x" * 255, False), ("q?.sql", True),
])
def test_awkward_keys_are_those_a_manifest_must_encode_or_that_are_long(key: str, awkward: bool) -> None:
    assert is_awkward_key(key) is awkward


def test_the_sample_covers_every_stratum_and_feature_and_has_the_size_asked(population: pd.DataFrame) -> None:
    drawn = draw(population, count=60, seed=11)

    assert len(drawn.versions) == 60 and drawn.population == len(population)
    assert {row["stratum"] for row in drawn.strata} == set(population["stratum"])
    assert all(row["drawn"] >= 1 for row in drawn.strata)
    assert all(row["drawn"] >= 1 for row in drawn.coverage)
    assert [row["feature"] for row in drawn.coverage] == list(FEATURES)
    assert drawn.versions["size"].min() == population["size"].min()
    assert drawn.versions["size"].max() == population["size"].max()
    assert sum(row["drawn"] for row in drawn.strata) == 60
    assert len(set(pairs(drawn.versions))) == 60
    assert set(pairs(drawn.versions)) <= set(pairs(population))


def test_beyond_coverage_the_draws_follow_the_size_of_each_stratum(population: pd.DataFrame) -> None:
    drawn = draw(population, count=200, seed=3)

    sizes = Counter(population["stratum"])
    for row in drawn.strata:
        share = 200 * sizes[row["stratum"]] / len(population)
        # Coverage may add one draw to a stratum; rounding one more.
        assert abs(row["drawn"] - share) <= 2, row


def test_the_same_seed_draws_the_same_sample_and_another_seed_another(population: pd.DataFrame) -> None:
    first = draw(population, count=50, seed=7)
    again = draw(population.sample(frac=1, random_state=1).pipe(
        lambda shuffled: stratify(vault_frame(), shuffled)), count=50, seed=7)
    other = draw(population, count=50, seed=8)

    assert pairs(first.versions) == pairs(again.versions)
    assert set(pairs(first.versions)) != set(pairs(other.versions))


def test_a_fraction_is_rounded_up_and_a_count_beyond_the_scope_takes_it_all(population: pd.DataFrame) -> None:
    assert len(draw(population, fraction=0.101, seed=1).versions) == -(-len(population) * 101 // 1000)
    assert len(draw(population, count=10_000, seed=1).versions) == len(population)


def test_a_sample_too_small_to_cover_the_strata_is_refused_naming_the_parameter(population: pd.DataFrame) -> None:
    minimum = draw(population, count=len(population), seed=2).minimum

    with pytest.raises(ParameterError) as small:
        draw(population, count=minimum - 1, seed=2)
    with pytest.raises(ParameterError) as share:
        draw(population, fraction=0.01, seed=2)

    assert minimum >= 25  # every one of the 25 strata, plus the features they do not already cover
    [problem] = small.value.problems
    assert (problem.field, problem.value) == ("job.sample.count", minimum - 1)
    assert f"at least {minimum} versions" in problem.expected
    assert share.value.problems[0].field == "job.sample.fraction"
    assert len(draw(population, count=minimum, seed=2).versions) == minimum


@pytest.mark.parametrize("seed", range(30))
def test_the_allocation_sums_to_the_draws_and_never_exceeds_a_stratum(seed: int) -> None:
    rng = random.Random(seed)
    available = {f"s{i}": rng.randrange(0, 40) for i in range(rng.randrange(1, 12))}
    total = rng.randrange(0, sum(available.values()) + 5)

    quotas = _allocate(total, available)

    assert sum(quotas.values()) == min(total, sum(available.values()))
    assert all(0 <= quotas[s] <= available[s] for s in available)


def test_the_manifest_lists_bucket_encoded_key_and_version_and_reads_back_the_same(population: pd.DataFrame) -> None:
    drawn = draw(population, count=40, seed=4)

    body = sample_manifest("vault-golden-copies", drawn.versions)
    lines = body.decode().splitlines()
    read = reports.read_manifest_csv([body], ["Bucket", "Key", "VersionId"])

    assert len(lines) == 40 and all(line.count(",") == 2 for line in lines)
    assert "reports/profit%2Bloss.xlsx" in body.decode() or "reports/profit+loss.xlsx" not in set(drawn.versions["key"])
    assert all(" " not in line and "\t" not in line for line in lines)
    assert set(pairs(read)) == set(pairs(drawn.versions))
    assert set(read["bucket"]) == {"vault-golden-copies"}
