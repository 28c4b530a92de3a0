"""The locked-copy commitment: what the recovery account must keep, and pay for, once the copies arrive.

Every replica keeps its source's Object Lock retention and legal hold. A COMPLIANCE copy cannot be
deleted by anyone, the account's root user included, until its retain-until date; a GOVERNANCE
copy only by someone allowed s3:BypassGovernanceRetention; a copy under a legal hold until someone
allowed s3:PutObjectLegalHold releases it. Cleanup never deletes a version. So before anything is
created, phase 00 shows, from the vault's versions in scope:

- per retention mode, how many copies would arrive, their bytes, the latest retain-until date,
  and what storing each copy until its own date costs at the replicas' storage class
  (`job.replica_storage_class`, priced by `runbook_lib.prices`);
- legal holds apart: they never expire by themselves, so their cost is per month, for as long as
  they stay on (a copy may be under a retention and a hold at once, and then counts in both);
- copies under neither (deletable at once), and copies whose lock could not be read (unknown:
  the figures are then a lower bound).

For a sample drill the figures are shown for the sample (what this run creates) and for the whole
scope (what a full recovery would create). On a real account the parameters must then say whether
the run is a drill or a recovery (`run.purpose`); `require_purpose` stops phase 00 until they do.

A retention whose date has passed no longer protects a copy and counts as not locked. Costs are
summed per copy: its monthly price (`prices.monthly_storage_usd`) times the months from now to
its retain-until date.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from runbook_lib import prices, run_kind, sampling, vault_inventory
from runbook_lib.context import RunContext
from runbook_lib.errors import PurposeRequired
from runbook_lib.ledger import now
from runbook_lib.run_state import RunKindRecord
from runbook_lib.scope import IN_SCOPE, scope_from_params

__all__ = [
    "LOCK_MODES",
    "Commitment",
    "CopiesCommitment",
    "HoldCommitment",
    "ModeCommitment",
    "commitment_of",
    "locked_copy_commitment",
    "require_purpose",
    "vault_in_scope",
]

LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
_UNKNOWN = "UNKNOWN"
_MODE_WORDS = {
    "COMPLIANCE": "nobody can delete them before the date, root included",
    "GOVERNANCE": "deletable before the date only with s3:BypassGovernanceRetention",
}


@dataclass(frozen=True)
class ModeCommitment:
    """Copies under one retention mode: how many, their bytes, the latest date, and the cost until each date."""

    mode: str
    versions: int
    bytes: int
    latest_retain_until: str | None
    cost_usd: float


@dataclass(frozen=True)
class HoldCommitment:
    """Copies under a legal hold: no end date, so a monthly cost for as long as the holds stay on."""

    versions: int
    bytes: int
    usd_per_month: float
    also_retained: int


@dataclass(frozen=True)
class CopiesCommitment:
    """The commitment of one set of copies (the whole scope, or a sample of it)."""

    label: str
    versions: int
    bytes: int
    modes: tuple[ModeCommitment, ...]
    legal_holds: HoldCommitment
    not_locked: int
    not_locked_bytes: int
    unknown: int

    @property
    def cost_usd(self) -> float:
        """Return the cost of keeping every retained copy until its date (legal holds apart)."""
        return round(sum(mode.cost_usd for mode in self.modes), 9)

    def mode(self, name: str) -> ModeCommitment:
        """Return the figures of one retention mode."""
        return next(mode for mode in self.modes if mode.mode == name)


@dataclass(frozen=True)
class Commitment:
    """The commitment phase 00 shows: for the whole scope and, for a sample drill, for the sample."""

    as_of: str
    storage_class: str
    scope: CopiesCommitment
    sample: CopiesCommitment | None = None
    # Where each vault bucket's versions were read: an inventory report, or by HEAD (VaultRead.as_record).
    read_from: tuple[dict[str, Any], ...] = ()

    @property
    def copies(self) -> CopiesCommitment:
        """Return the copies this run creates: the sample's for a sample drill, else the whole scope's."""
        return self.sample or self.scope

    def as_rows(self) -> list[dict[str, Any]]:
        """Return the commitment as a table: per set of copies, one row per lock."""
        rows: list[dict[str, Any]] = []
        for copies in (self.sample, self.scope):
            if copies is not None:
                rows += _rows(copies, self.storage_class)
        return rows

    def lines(self) -> list[str]:
        """Return the commitment as lines of text, as a stop on a real account shows it."""
        lines = [f"as of {self.as_of}, replicas in {self.storage_class} ({prices.SOURCE}, {prices.AS_OF})"]
        lines += [f"versions of {read['bucket']} read from the {vault_inventory.report_words(read)}"
                  for read in self.read_from if read.get("source") == "inventory"]
        for copies in (self.sample, self.scope):
            if copies is None:
                continue
            lines.append(f"{copies.label}: {copies.versions:,} versions, {_size(copies.bytes)}")
            for mode in copies.modes:
                lines.append(f"  {mode.mode} ({_MODE_WORDS[mode.mode]}): {mode.versions:,} copies, "
                             f"{_size(mode.bytes)}, until {_latest(mode.latest_retain_until)}, "
                             f"USD {prices.usd(mode.cost_usd)} to keep them until then")
            holds = copies.legal_holds
            lines.append(f"  legal hold ON (never expires by itself; counted apart): {holds.versions:,} copies, "
                         f"{_size(holds.bytes)}, USD {prices.usd(holds.usd_per_month)} a month while held")
            lines.append(f"  not locked (deletable at once): {copies.not_locked:,} copies, "
                         f"{_size(copies.not_locked_bytes)}")
            if copies.unknown:
                lines.append(f"  lock unreadable: {copies.unknown:,} copies, so the figures above are a lower bound")
        return lines

    def as_record(self) -> dict[str, Any]:
        """Return the commitment as JSON-ready data for the run state and summary.json."""
        record: dict[str, Any] = {"as_of": self.as_of, "storage_class": self.storage_class,
                                  "prices": {"source": prices.SOURCE, "as_of": prices.AS_OF},
                                  "scope": _copies_record(self.scope)}
        record["sample"] = _copies_record(self.sample) if self.sample is not None else None
        record["read_from"] = list(self.read_from)
        return record


def _copies_record(copies: CopiesCommitment) -> dict[str, Any]:
    return {**asdict(copies), "cost_usd": copies.cost_usd}


def _size(count: int) -> str:
    """Return a byte count with separators and in binary units: "3,145,728 B (3.0 MiB)"."""
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{count:,} B" if unit == "B" else f"{count:,} B ({value:,.1f} {unit})"


def _latest(moment: str | None) -> str:
    """Return the latest retain-until date of a mode as a day, or "-" when no copy has that mode."""
    return f"{moment[:10]} at the latest" if moment else "-"


def _rows(copies: CopiesCommitment, storage_class: str) -> list[dict[str, Any]]:
    """Return the table rows of one set of copies."""
    rows = [
        {"copies of": copies.label, "lock": f"{mode.mode} ({_MODE_WORDS[mode.mode]})", "copies": mode.versions,
         "size": _size(mode.bytes), "until": _latest(mode.latest_retain_until),
         "cost (USD)": f"{prices.usd(mode.cost_usd)} in {storage_class} until then"}
        for mode in copies.modes
    ]
    holds = copies.legal_holds
    rows.append({"copies of": copies.label, "lock": "legal hold ON (never expires by itself; counted apart)",
                 "copies": holds.versions, "size": _size(holds.bytes), "until": "released",
                 "cost (USD)": f"{prices.usd(holds.usd_per_month)} a month while held"})
    rows.append({"copies of": copies.label, "lock": "not locked (deletable at once)", "copies": copies.not_locked,
                 "size": _size(copies.not_locked_bytes), "until": "-", "cost (USD)": "-"})
    if copies.unknown:
        rows.append({"copies of": copies.label, "lock": "lock unreadable: the figures above are a lower bound",
                     "copies": copies.unknown, "size": "-", "until": "unknown", "cost (USD)": "unknown"})
    return rows


# --------------------------------------------------------------------------- computing


def _text(column: pd.Series) -> pd.Series:
    """Return a text column upper-cased, missing values as ""."""
    return column.astype("string").fillna("").str.upper()


def _retain_until(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Return retain-until dates as UTC datetimes, and where they read "unknown"."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return pd.to_datetime(column, utc=True), np.zeros(len(column), dtype=bool)
    text = column.astype("string")
    unknown = (text.str.upper() == _UNKNOWN).fillna(False).to_numpy(bool)
    dates = pd.to_datetime(column.where(~unknown, None) if unknown.any() else column, utc=True, format="ISO8601")
    return dates, unknown


def commitment_of(versions: pd.DataFrame, storage_class: str, as_of: datetime, label: str) -> CopiesCommitment:
    """Return the commitment of copies of `versions` (snapshot columns) kept in `storage_class`, from `as_of`.

    Needs size, object_lock_mode, object_lock_retain_until_date and object_lock_legal_hold_status.
    """
    moment = pd.Timestamp(as_of).tz_convert("UTC") if as_of.tzinfo else pd.Timestamp(as_of, tz="UTC")
    sizes = versions["size"].astype("Int64").fillna(0).astype(int).to_numpy()
    modes = _text(versions["object_lock_mode"])
    holds = _text(versions["object_lock_legal_hold_status"])
    until, until_unknown = _retain_until(versions["object_lock_retain_until_date"])
    monthly = prices.monthly_storage_usd_each(sizes, storage_class)
    days = ((until - moment).dt.total_seconds() / 86400).to_numpy(dtype=float, na_value=np.nan)
    retained = (modes.isin(LOCK_MODES).to_numpy(bool) & ~until_unknown & (np.nan_to_num(days, nan=0.0) > 0))
    held = (holds == "ON").to_numpy(bool)
    unknown = (modes == _UNKNOWN).to_numpy(bool) | until_unknown | (holds == _UNKNOWN).to_numpy(bool)
    lines = []
    for mode in LOCK_MODES:
        chosen = retained & (modes == mode).to_numpy(bool)
        latest = until[chosen].max() if chosen.any() else None
        months = np.where(chosen, np.nan_to_num(days, nan=0.0), 0.0) / prices.DAYS_PER_MONTH
        lines.append(ModeCommitment(
            mode=mode, versions=int(chosen.sum()), bytes=int(sizes[chosen].sum()),
            latest_retain_until=latest.isoformat() if latest is not None else None,
            cost_usd=round(float((monthly * months).sum()), 9),
        ))
    free = ~retained & ~held & ~unknown
    return CopiesCommitment(
        label=label,
        versions=len(versions),
        bytes=int(sizes.sum()),
        modes=tuple(lines),
        legal_holds=HoldCommitment(versions=int(held.sum()), bytes=int(sizes[held].sum()),
                                   usd_per_month=round(float(monthly[held].sum()), 9),
                                   also_retained=int((held & retained).sum())),
        not_locked=int(free.sum()),
        not_locked_bytes=int(sizes[free].sum()),
        unknown=int(unknown.sum()),
    )


def vault_in_scope(ctx: RunContext) -> tuple[pd.DataFrame, pd.DataFrame, tuple[dict[str, Any], ...]]:
    """Return the vault's versions (delete markers too), those inside the job's scope, and where each bucket was read.

    Read from the vault's inventory when verification is by inventory and one is usable, else by
    HEAD (`vault_inventory.read_vault`). A run over many vault buckets gives every bucket's
    versions together, each bucket in its own scope.
    """
    parts = [_bucket_in_scope(view) for view in ctx.pair_contexts()]
    if len(parts) == 1:
        return parts[0][0], parts[0][1], (parts[0][2],)
    return (pd.concat([vault for vault, _, _ in parts], ignore_index=True),
            pd.concat([in_scope for _, in_scope, _ in parts], ignore_index=True),
            tuple(read for _, _, read in parts))


def _bucket_in_scope(ctx: RunContext) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Return one vault bucket's versions, those inside its pair's scope, and where they were read."""
    read = vault_inventory.read_vault(ctx)
    vault = read.versions
    reasons = scope_from_params(ctx.params).reasons(vault)
    return vault, vault[(reasons == IN_SCOPE).to_numpy(bool)].reset_index(drop=True), read.as_record()


def locked_copy_commitment(ctx: RunContext, as_of: datetime | None = None) -> Commitment:
    """Return, and record in the run state, what the run's copies commit the recovery account to.

    Reads every version of the vault (from its inventory, or one HEAD each: `vault_in_scope`) and
    changes nothing in any account. For a sample drill it draws the sample too
    (`sampling.draw_for_run`), keeping its CSV manifest in the run folder. Refuses a run.backend:
    embedded that reaches another endpoint.
    """
    params = ctx.params
    run_kind.check_backend_claim(params, ctx.vault("s3"), ctx.recovery("s3"))
    moment = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc)
    storage_class = params.job.replica_storage_class
    vault, in_scope, read_from = vault_in_scope(ctx)
    scope = commitment_of(in_scope, storage_class, moment, "the whole scope")
    sample = None
    if params.job.sample is not None:
        drawn = sampling.draw_for_run(ctx, vault, in_scope)
        sample = commitment_of(drawn, storage_class, moment, f"the sample of {len(drawn):,}")
    commitment = Commitment(moment.isoformat(timespec="seconds"), storage_class, scope, sample, read_from)
    ctx.ledger.state.commitment = commitment.as_record()
    ctx.ledger.save()
    return commitment


def planned_commitment(ctx: RunContext, as_of: datetime | None = None) -> Commitment:
    """Return the whole scope's commitment for a plan: the same figures as phase 00, recorded nowhere.

    Reads every version of the vault, as phase 00 does; draws no sample (phase 00 draws it and keeps
    it in the run folder, which a plan leaves alone), so a sample drill's plan shows the upper bound.
    """
    moment = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc)
    storage_class = ctx.params.job.replica_storage_class
    _, in_scope, read_from = vault_in_scope(ctx)
    scope = commitment_of(in_scope, storage_class, moment, "the whole scope")
    return Commitment(moment.isoformat(timespec="seconds"), storage_class, scope, read_from=read_from)


def require_purpose(ctx: RunContext, commitment: Commitment) -> None:
    """Record what kind of run this is; on a real account without run.purpose, raise PurposeRequired.

    `confirm_job` confirms a job, never this: only the parameters can say that a run on a real
    account is a drill or a recovery, after the commitment has been shown.
    """
    kind = run_kind.run_kind(ctx.params)
    record = RunKindRecord(**kind.as_record(), settled=now() if kind.purpose else None)
    ctx.ledger.state.kind = record
    ctx.ledger.save()
    if kind.purpose is None:
        raise PurposeRequired(commitment.lines(), source=str(ctx.ledger.state.params_file or "parameters"))
    print(f"✔ this run is {kind.describe()}")
