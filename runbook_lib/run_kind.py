"""What kind of run this is: a drill or a recovery, embedded or on a real account, of a sample or of everything.

Every recovered copy keeps its Object Lock retention, so a run on a real account commits the
recovery account to storing locked copies, COMPLIANCE ones for years. Such a run must say what it
is for (`run.purpose`): phase 00 shows the commitment and stops until the parameters say drill or
recovery (`commitment.require_purpose`), and the later phases that create or copy anything refuse
to start without it (`require_declared_purpose`).

"A real account" is anything the parameters do not mark as the embedded backend
(`run.backend: embedded`). The mark is checked, never trusted: phase 00 refuses it when a profile's
S3 endpoint is not the embedded backend's loopback address, so a real account cannot pass for the
embedded one and skip the question. The embedded backend only ever runs drills.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runbook_lib.errors import ParameterError, ParameterProblem, PreflightError
from runbook_lib.params import RunbookParams

__all__ = [
    "EMBEDDED",
    "LOOPBACK_HOSTS",
    "REAL_ACCOUNT",
    "RunKind",
    "check_backend_claim",
    "require_declared_purpose",
    "run_kind",
]

EMBEDDED = "embedded"
REAL_ACCOUNT = "aws"
# The embedded backend listens on these only (see embedded.server.start_backend).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
# The phases that create, change or copy something: none of them runs on a real account whose
# parameters leave the purpose open. Phase 00 changes nothing and says why it stops; phase 08
# only removes what the run created, which must stay possible whatever the parameters say now.
_PHASES_NEEDING_A_PURPOSE = ("01", "02", "03", "04", "05", "06", "07")


@dataclass(frozen=True)
class RunKind:
    """A run's kind: its purpose (None while a real account's parameters leave it open), backend, and scale."""

    purpose: str | None
    backend: str
    sample: bool

    @property
    def real_account(self) -> bool:
        """Whether the run reaches real AWS accounts (anything but the embedded backend)."""
        return self.backend != EMBEDDED

    def describe(self) -> str:
        """Return the kind in words, such as "a sample drill on the embedded backend"."""
        where = "on a real account" if self.real_account else "on the embedded backend"
        if self.purpose is None:
            return f"a run {where} whose purpose (drill or recovery) is not set"
        scale = "sample " if self.sample else ("full " if self.purpose == "drill" else "")
        return f"a {scale}{self.purpose} {where}"

    def as_record(self) -> dict[str, Any]:
        """Return the kind as JSON-ready values for the run state, summary.json and the evidence."""
        return {
            "purpose": self.purpose,
            "backend": self.backend,
            "account": "real" if self.real_account else "embedded",
            "scale": "sample" if self.sample else "full",
            "description": self.describe(),
        }


def run_kind(params: RunbookParams) -> RunKind:
    """Return the run's kind as the parameters give it; on the embedded backend every run is a drill."""
    backend = params.run.backend
    purpose = params.run.purpose or ("drill" if backend == EMBEDDED else None)
    return RunKind(purpose=purpose, backend=backend, sample=params.job.sample is not None)


def _endpoint_host(client: Any) -> str:
    """Return the host a client sends its requests to."""
    return urlsplit(str(getattr(client.meta, "endpoint_url", "") or "")).hostname or ""


def check_backend_claim(params: RunbookParams, vault_s3: Any, recovery_s3: Any) -> None:
    """Raise PreflightError when the parameters say embedded but a profile reaches another endpoint."""
    if params.run.backend != EMBEDDED:
        return
    elsewhere = {
        side: host for side, host in (("vault", _endpoint_host(vault_s3)), ("recovery", _endpoint_host(recovery_s3)))
        if host not in LOOPBACK_HOSTS
    }
    if elsewhere:
        reached = ", ".join(f"the {side} profile reaches {host or 'an unknown endpoint'}" for side, host in
                            elsewhere.items())
        raise PreflightError(
            f"run.backend is embedded, but {reached}, not the embedded backend on 127.0.0.1. Set run.backend: aws "
            "and run.purpose (drill or recovery) for a real account; nothing was changed."
        )


def require_declared_purpose(params: RunbookParams, phase: str | None, source: str = "parameters") -> None:
    """Raise ParameterError when a phase that changes something would run on a real account without a purpose."""
    if phase is None or not phase.startswith(_PHASES_NEEDING_A_PURPOSE):
        return
    if run_kind(params).purpose is not None:
        return
    problem = ParameterProblem(
        "run.purpose", None,
        f"drill or recovery before phase {phase} runs on a real account: phase 00 shows what the recovery account "
        "would be committed to (locked copies it cannot delete) and stops until the parameters say which",
    )
    raise ParameterError([problem], source=source)
