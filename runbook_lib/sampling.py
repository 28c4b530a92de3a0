"""Sample drills: a stratified random draw of the versions in scope, written as the job's CSV manifest.

A full drill of a large vault commits the recovery account to a second locked copy of all of it.
A sample drill recovers a representative sample instead (`job.sample`: a count or a fraction of
the versions in scope, and a seed), proves it version by version, and measures the job's speed to
extrapolate the time the whole vault would take (`throughput`).

The draw, deterministic for a seed and a vault:

1. Every version in scope falls in one stratum: its retention mode (COMPLIANCE, GOVERNANCE, none,
   unreadable) x its legal hold (ON, OFF, unreadable) x its size band (0 B, under 1 KiB, under
   1 MiB, under 1 GiB, 1 GiB or more).
2. Coverage first: one version, drawn at random, for each feature no earlier pick has: the smallest
   and the largest version, a version next to a delete marker in its key's history, a version whose
   key needs care in a manifest (it changes when URL-encoded, ends with '/', or is longer than 255
   bytes); then one for each stratum no pick is in yet. Their number is the smallest sample that
   covers the vault; a smaller `job.sample` is refused, naming that number.
3. The rest of the sample is spread over the strata in proportion to the versions each has left
   (largest remainders first), and drawn at random within each.

Versions are ordered by key and version id before drawing, and one `random.Random(seed)` makes
every choice, so the same seed on the same vault draws the same sample. Once the run's recovery
job exists, its sample is the run's for good: phase 00 keeps it rather than drawing again.

The sample is kept in the run folder (`sample/manifest.csv`, the exact bytes the job reads, and
`sample/versions.csv`, each drawn version with its stratum and why it was drawn) and in the run
state (seed, sizes, strata and coverage counts, the manifest's SHA-256). Phase 06 uploads the
manifest to the report bucket (SSE-S3: S3 Batch Operations does not read CSV manifests encrypted
with SSE-KMS) and the job replicates exactly those versions. Verification expects exactly the
sample, read back from the run folder and checked against its recorded SHA-256.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
from botocore.exceptions import ClientError

from runbook_lib import aws_facts, csv_writer, reports
from runbook_lib.accounts import error_code
from runbook_lib.context import RunContext
from runbook_lib.errors import ParameterError, ParameterProblem, ReportError, ScopeError
from runbook_lib.ledger import now
from runbook_lib.run_state import SampleRecord

__all__ = [
    "FEATURES",
    "MANIFEST_FIELDS",
    "MANIFEST_FILE",
    "SIZE_BANDS",
    "VERSIONS_FILE",
    "Draw",
    "draw",
    "draw_for_run",
    "drawn_versions",
    "is_awkward_key",
    "manifest_key",
    "sample_manifest",
    "sample_summary",
    "stratify",
    "upload_manifest",
]

MANIFEST_FILE = "sample/manifest.csv"
VERSIONS_FILE = "sample/versions.csv"
MANIFEST_FIELDS = ("Bucket", "Key", "VersionId")
# (upper bound in bytes, label); the last band has no upper bound.
SIZE_BANDS: tuple[tuple[float, str], ...] = (
    (1, "0 B"), (1024, "1 B to 1 KiB"), (1024**2, "1 KiB to 1 MiB"), (1024**3, "1 MiB to 1 GiB"),
    (math.inf, "1 GiB or more"),
)
# Features every sample covers when the scope has them, in the order they are secured.
FEATURES = ("smallest version", "largest version", "next to a delete marker", "awkward key")
_LONG_KEY_BYTES = 255
_LOCK_COLUMNS = ("object_lock_mode", "object_lock_retain_until_date", "object_lock_legal_hold_status")


def is_awkward_key(key: str) -> bool:
    """Return whether a key needs care in a manifest: it changes when URL-encoded, ends with '/', or is long."""
    return quote(key, safe="/") != key or key.endswith("/") or len(key.encode()) > _LONG_KEY_BYTES


def _lock(mode: object) -> str:
    text = str(mode).upper() if isinstance(mode, str) else ""
    if text in ("COMPLIANCE", "GOVERNANCE"):
        return text
    return "retention unreadable" if text == "UNKNOWN" else "no retention"


def _hold(status: object) -> str:
    text = str(status).upper() if isinstance(status, str) else ""
    if text == "UNKNOWN":
        return "hold unreadable"
    return "hold ON" if text == "ON" else "hold OFF"


def _marker_neighbours(vault: pd.DataFrame) -> set[tuple[str, str]]:
    """Return the object versions that sit next to a delete marker in their key's history."""
    neighbours: set[tuple[str, str]] = set()
    ordered = vault.sort_values(["key", "last_modified"], ascending=[True, False], kind="stable")
    keys = ordered["key"].astype(str).tolist()
    versions = ordered["version_id"].astype(str).tolist()
    markers = ordered["is_delete_marker"].astype(bool).tolist()
    for index, is_marker in enumerate(markers):
        if not is_marker:
            continue
        for other in (index - 1, index + 1):
            if 0 <= other < len(keys) and keys[other] == keys[index] and not markers[other]:
                neighbours.add((keys[other], versions[other]))
    return neighbours


def stratify(vault: pd.DataFrame, in_scope: pd.DataFrame) -> pd.DataFrame:
    """Return the versions in scope, ordered by key and version id, with their stratum and features."""
    neighbours = _marker_neighbours(vault)
    keys = in_scope["key"].astype(str)
    frame = pd.DataFrame({
        "key": keys.to_numpy(),
        "version_id": in_scope["version_id"].astype(str).to_numpy(),
        "size": in_scope["size"].astype("Int64").fillna(0).astype(int).to_numpy(),
        **{name: in_scope[name].reset_index(drop=True) for name in _LOCK_COLUMNS},
    })
    frame["lock"] = _labels(in_scope["object_lock_mode"], _lock)
    frame["legal_hold"] = _labels(in_scope["object_lock_legal_hold_status"], _hold)
    bands = np.array([label for _, label in SIZE_BANDS], dtype=object)
    limits = np.array([limit for limit, _ in SIZE_BANDS[:-1]], dtype=float)
    frame["size_band"] = bands[np.searchsorted(limits, frame["size"].to_numpy(), side="right")]
    frame["stratum"] = frame["lock"] + " · " + frame["legal_hold"] + " · " + frame["size_band"]
    frame["next_to_delete_marker"] = (
        pd.MultiIndex.from_arrays([frame["key"], frame["version_id"]]).isin(list(neighbours)) if neighbours else False)
    frame["awkward_key"] = _awkward(keys).to_numpy()
    return frame.sort_values(["key", "version_id"], kind="stable").reset_index(drop=True)


def _labels(column: pd.Series, label: Callable[[object], str]) -> np.ndarray:
    """Return a label per value of a low-cardinality column, computing each distinct value's label once."""
    codes, uniques = pd.factorize(column.astype(object), use_na_sentinel=False)
    return np.array([label(value) for value in uniques], dtype=object)[codes] if len(codes) else np.array([], object)


# The characters `quote(key, safe="/")` leaves as they are: letters, digits, "_.-~" and "/".
_PLAIN_KEY = r"^[A-Za-z0-9_.~/-]*$"


def _awkward(keys: pd.Series) -> pd.Series:
    """Return `is_awkward_key` for a whole column of keys at once."""
    plain = keys.str.match(_PLAIN_KEY)
    # A plain key is ASCII, so its length in characters is its length in bytes.
    return ~plain | keys.str.endswith("/") | (keys.str.len() > _LONG_KEY_BYTES)


@dataclass(frozen=True)
class Draw:
    """A drawn sample: the versions (with why each was drawn), the strata and coverage counts, the minimum."""

    versions: pd.DataFrame
    strata: list[dict[str, Any]]
    coverage: list[dict[str, Any]]
    population: int
    minimum: int


def _has_feature(frame: pd.DataFrame) -> dict[str, Callable[[int], bool]]:
    """Return, per coverage feature, a test of a row position."""
    sizes = frame["size"].tolist()
    smallest, largest = (min(sizes), max(sizes)) if sizes else (0, 0)
    neighbour = frame["next_to_delete_marker"].tolist()
    awkward = frame["awkward_key"].tolist()
    return {
        "smallest version": lambda row: sizes[row] == smallest,
        "largest version": lambda row: sizes[row] == largest,
        "next to a delete marker": lambda row: bool(neighbour[row]),
        "awkward key": lambda row: bool(awkward[row]),
    }


def _size_for(population: int, count: int | None, fraction: float | None) -> int:
    """Return how many versions the sample holds: the count, or the fraction rounded up; never more than there are."""
    wanted = count if count is not None else math.ceil((fraction or 0.0) * population)
    return min(int(wanted), population)


def _too_small(size: int, minimum: int, population: int, count: int | None, fraction: float | None) -> ParameterError:
    field, value = ("job.sample.count", count) if count is not None else ("job.sample.fraction", fraction)
    share = f" (a fraction of at least {minimum / population:.4f})" if count is None and population else ""
    problem = ParameterProblem(
        field, value,
        f"a sample of at least {minimum} versions{share}: the {population:,} versions in scope fall in strata and "
        f"features that need {minimum} draws to be covered, and {size} would leave some out",
    )
    return ParameterError([problem])


def draw(frame: pd.DataFrame, *, count: int | None = None, fraction: float | None = None, seed: int) -> Draw:
    """Return a stratified random sample of `frame` (as `stratify` returns it), the same for the same seed.

    Exactly one of `count` and `fraction` gives its size. ParameterError when the size is below
    the number of draws needed to cover every stratum and feature of `frame`.
    """
    if (count is None) == (fraction is None):
        raise ValueError("draw needs exactly one of count and fraction")
    rng = random.Random(seed)
    population = len(frame)
    strata = frame["stratum"].tolist()
    members: dict[str, list[int]] = {}
    for row, stratum in enumerate(strata):
        members.setdefault(stratum, []).append(row)
    why: dict[int, str] = {}

    def secure(candidates: list[int], reason: str) -> None:
        if candidates and not any(row in why for row in candidates):
            why[rng.choice(candidates)] = reason

    tests = _has_feature(frame)
    for feature in FEATURES:
        secure([row for row in range(population) if tests[feature](row)], f"covers: {feature}")
    for stratum in sorted(members):
        secure(members[stratum], "covers its stratum")
    minimum = len(why)
    size = _size_for(population, count, fraction)
    if size < minimum:
        raise _too_small(size, minimum, population, count, fraction)
    left = {stratum: [row for row in rows if row not in why] for stratum, rows in members.items()}
    for stratum, quota in _allocate(size - minimum, {s: len(rows) for s, rows in left.items()}).items():
        for row in rng.sample(left[stratum], quota):
            why[row] = "proportional to its stratum"
    chosen = sorted(why)
    versions = frame.iloc[chosen].reset_index(drop=True).assign(why=[why[row] for row in chosen])
    drawn = Counter(versions["stratum"])
    return Draw(
        versions=versions,
        strata=[{"stratum": s, "in_scope": len(rows), "drawn": drawn[s]} for s, rows in sorted(members.items())],
        coverage=[{"feature": feature, "in_scope": sum(1 for row in range(population) if tests[feature](row)),
                   "drawn": sum(1 for row in chosen if tests[feature](row))} for feature in FEATURES],
        population=population,
        minimum=minimum,
    )


def _allocate(total: int, available: dict[str, int]) -> dict[str, int]:
    """Return how many of `total` draws each stratum gets: in proportion to what it has left, largest remainders first.

    No stratum gets more than it has: a share `total * n / N` never exceeds `n` when `total <= N`,
    and a stratum with a fractional share has at least one version left for its extra draw.
    """
    pool = sum(available.values())
    total = min(total, pool)
    if total <= 0:
        return dict.fromkeys(available, 0)
    shares = {stratum: total * count / pool for stratum, count in available.items()}
    quotas = {stratum: int(share) for stratum, share in shares.items()}
    order = sorted(shares, key=lambda s: (-(shares[s] - quotas[s]), s))
    for stratum in order[: total - sum(quotas.values())]:
        quotas[stratum] += 1
    return quotas


# --------------------------------------------------------------------------- the run's sample


def sample_manifest(bucket: str, versions: pd.DataFrame) -> bytes:
    """Return the S3BatchOperations_CSV_20180820 manifest (Bucket, Key, VersionId; keys URL-encoded) of a sample."""
    return reports.retry_manifest_csv(versions[["key", "version_id"]].assign(bucket=bucket))


def manifest_key(ctx: RunContext, sha256: str) -> str:
    """Return the report bucket key the run's sample manifest is uploaded to."""
    return f"{ctx.params.job.manifest_prefix}/samples/{ctx.params.run_id}-{sha256[:16]}.csv"


def draw_for_run(ctx: RunContext, vault: pd.DataFrame, in_scope: pd.DataFrame) -> pd.DataFrame:
    """Draw the run's sample, keep its manifest and versions in the run folder and the run state; return the versions.

    Drawing again on the same vault with the same parameters gives the same sample. Once the run's
    recovery job exists, the sample it was given is the run's for good (a failed task changes a
    version's replication status, so the vault would draw differently): phase 00 keeps it, and
    raises ScopeError when job.sample now asks for another.
    """
    settings = ctx.params.job.sample
    if settings is None:
        raise ValueError("draw_for_run needs job.sample in the parameters")
    earlier = ctx.ledger.state.sample
    if earlier is not None and ctx.ledger.state.recovery_jobs(ctx.bucket):
        return _kept(ctx, earlier, vault)
    try:
        drawn = draw(stratify(vault, in_scope), count=settings.count, fraction=settings.fraction, seed=settings.seed)
    except ParameterError as error:
        raise ParameterError(error.problems, source=str(ctx.ledger.state.params_file or "parameters")) from None
    body = sample_manifest(ctx.params.pair.vault_bucket, drawn.versions)
    sha256 = hashlib.sha256(body).hexdigest()
    folder = ctx.ledger.run_dir
    (folder / MANIFEST_FILE).parent.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).write_bytes(body)
    csv_writer.write_csv(drawn.versions, folder / VERSIONS_FILE)
    same = earlier is not None and earlier.manifest_sha256 == sha256
    ctx.ledger.state.sample = SampleRecord(
        seed=settings.seed, count=settings.count, fraction=settings.fraction, population=drawn.population,
        drawn=len(drawn.versions), minimum=drawn.minimum, strata=drawn.strata, coverage=drawn.coverage,
        manifest_file=MANIFEST_FILE, versions_file=VERSIONS_FILE, manifest_sha256=sha256,
        manifest_md5=hashlib.md5(body, usedforsecurity=False).hexdigest(),
        drawn_at=earlier.drawn_at if same and earlier else now(),
        uploaded=earlier.uploaded if same and earlier else None,
    )
    ctx.ledger.save()
    print(f"sample drawn with seed {settings.seed}: {len(drawn.versions):,} of {drawn.population:,} versions in "
          f"scope, {len(drawn.strata)} strata, every stratum and feature covered (at least {drawn.minimum} needed)")
    return drawn.versions


def _kept(ctx: RunContext, earlier: SampleRecord, vault: pd.DataFrame) -> pd.DataFrame:
    """Return the versions of the sample the run's job was given, as the vault holds them now."""
    settings = ctx.params.job.sample
    assert settings is not None
    if (settings.seed, settings.count, settings.fraction) != (earlier.seed, earlier.count, earlier.fraction):
        raise ScopeError(
            f"this run's recovery job was given the sample drawn at {earlier.drawn_at} (seed {earlier.seed}, "
            f"{earlier.drawn} versions), but job.sample now asks for {settings.model_dump()}. A run has one sample: "
            "put the parameters back, or draw the new sample as a new run (a new run_id and run folder)."
        )
    chosen = drawn_versions(ctx)
    pairs = set(zip(chosen["key"].astype(str), chosen["version_id"].astype(str), strict=True))
    rows = [(str(k), str(v)) in pairs for k, v in zip(vault["key"], vault["version_id"], strict=True)]
    print(f"sample kept as drawn at {earlier.drawn_at} (seed {earlier.seed}, {earlier.drawn:,} versions): the run's "
          "recovery job was given it")
    return vault[rows].reset_index(drop=True)


def _record(ctx: RunContext) -> SampleRecord:
    record = ctx.ledger.state.sample
    if record is None:
        raise ReportError("this run has no sample yet: phase 00 draws it when job.sample is set; run phase 00 first")
    return record


def _manifest_bytes(ctx: RunContext, record: SampleRecord) -> bytes:
    """Return the run folder's sample manifest, after checking it is the one the run drew."""
    path = Path(ctx.ledger.run_dir) / record.manifest_file
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        raise ReportError(f"the run's sample manifest {path} is missing; restore it from a copy of the run folder, "
                          "or run phase 00 again before the job is created") from None
    if hashlib.sha256(body).hexdigest() != record.manifest_sha256:
        raise ReportError(f"the run's sample manifest {path} is not the one phase 00 drew (its SHA-256 differs from "
                          "the run state's); restore it from a copy of the run folder")
    return body


def upload_manifest(ctx: RunContext) -> dict[str, str]:
    """Put the run's sample manifest in the report bucket (once; SSE-S3) and return its bucket, key and ETag."""
    record = _record(ctx)
    body = _manifest_bytes(ctx, record)
    bucket, key = ctx.params.report_bucket, manifest_key(ctx, record.manifest_sha256)
    if ctx.plan is not None:
        # A plan shows the upload (the manifest's bytes are in the run folder) and makes none.
        object_arn = aws_facts.object_arn(bucket, key, ctx.params.partition)
        ctx.plan.intend("vault", "s3", "PutObject", object_arn,
                        {"Bucket": bucket, "Key": key, "ServerSideEncryption": "AES256", "ContentType": "text/csv",
                         "ContentSHA256": record.manifest_sha256, "Rows": record.drawn}, creates=True)
        return {"bucket": bucket, "key": key, "etag": record.manifest_md5, "object_arn": object_arn}
    s3 = ctx.vault("s3")
    try:
        etag: str | None = str(s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')
    except ClientError as error:
        if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
            raise
        etag = None
    if etag != record.manifest_md5:
        answer = s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256",
                               ContentType="text/csv")
        etag = str(answer["ETag"]).strip('"')
    uploaded = {"bucket": bucket, "key": key, "etag": etag,
                "object_arn": aws_facts.object_arn(bucket, key, ctx.params.partition)}
    if record.uploaded != uploaded:
        record.uploaded = uploaded
        ctx.ledger.state.sample = record
        ctx.ledger.save()
    return uploaded


def drawn_versions(ctx: RunContext) -> pd.DataFrame:
    """Return the versions the run drew (bucket, key, version_id), read back from the run folder and checked."""
    record = _record(ctx)
    return reports.read_manifest_csv([_manifest_bytes(ctx, record)], MANIFEST_FIELDS)


def sample_summary(ctx: RunContext) -> dict[str, Any] | None:
    """Return what summary.json and the evidence say about the run's sample (None for a full run)."""
    record = ctx.ledger.state.sample
    if record is None or ctx.params.job.sample is None:
        return None
    return record.model_dump()
