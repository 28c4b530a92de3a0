"""What every phase starts from: the validated parameters, two verified sessions, and the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_lib.accounts import AccountSessions, make_client, open_sessions
from runbook_lib.ledger import Ledger, open_ledger
from runbook_lib.params import RunbookParams, load_params

__all__ = ["RunContext", "open_run"]


@dataclass
class RunContext:
    """One phase's view of the run: parameters, sessions, ledger, and shared clients."""

    params: RunbookParams
    ledger: Ledger
    sessions: AccountSessions
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def vault(self, service: str) -> Any:
        """Return a client of the vault account (one per service, shared by the phase)."""
        return self._client("vault", service)

    def recovery(self, service: str) -> Any:
        """Return a client of the recovery account (one per service, shared by the phase)."""
        return self._client("recovery", service)

    def _client(self, side: str, service: str) -> Any:
        if (side, service) not in self._clients:
            session = self.sessions.vault if side == "vault" else self.sessions.recovery
            region = self.params.region if side == "vault" else self.params.recovery_region
            self._clients[(side, service)] = make_client(session, service, region_name=region)
        return self._clients[(side, service)]

    @property
    def tags(self) -> dict[str, str]:
        """Return the tags every resource this run creates carries."""
        return dict(self.params.resource_tags)


def open_run(params_file: str | Path, run_dir: str | Path, *, create: bool = False) -> RunContext:
    """Return a phase's context: validated parameters, both verified accounts, and the run folder's ledger.

    `create` lets a new run start (phase 00); without it the folder must hold a ledger (RunStateError).
    """
    params = load_params(params_file)
    sessions = open_sessions(params)
    ledger = open_ledger(run_dir, create=create)
    ledger.bind(params.run_id, str(params_file))
    return RunContext(params=params, ledger=ledger, sessions=sessions)
