"""What every phase starts from: the validated parameters, two verified sessions, the ledger, and its phase.

Every call the context's sessions make is recorded in the run folder's call log (`call_log`).
Clients come from a client factory (botocore's, through `accounts.make_client`, unless another is
given), so a unit test can hand the context clients wrapped in botocore's Stubber and need no
HTTP server.

A context that carries a `Plan` is a planning context (`runbook_lib.planning`): the phases' steps
read as usual and record each write in the plan instead of making it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3

from runbook_lib.accounts import AccountSessions, make_client, open_sessions
from runbook_lib.call_log import CallLog
from runbook_lib.ledger import Ledger, open_ledger
from runbook_lib.params import RunbookParams, load_params
from runbook_lib.planning import Plan
from runbook_lib.run_kind import require_declared_purpose

if TYPE_CHECKING:  # the stubs type every AWS call the runbook makes; at run time clients are boto3's own
    from mypy_boto3_accessanalyzer import AccessAnalyzerClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3control import S3ControlClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

__all__ = ["ClientFactory", "RunContext", "open_run"]

# Makes the client of one service for a session in a region; make_client unless a test gives another.
ClientFactory = Callable[[boto3.Session, str, str], Any]


def _default_factory(session: boto3.Session, service: str, region: str) -> Any:
    """Return a client with the runbook's shared botocore configuration."""
    return make_client(session, service, region_name=region)


@dataclass
class RunContext:
    """One phase's view of the run: parameters, sessions, ledger, its phase, and shared clients."""

    params: RunbookParams
    ledger: Ledger
    sessions: AccountSessions
    phase: str | None = None
    client_factory: ClientFactory = _default_factory
    # Where every call of this context's sessions is recorded (None: nowhere, as in unit tests).
    call_log: CallLog | None = None
    # Set on a planning context: writes are recorded here instead of being made.
    plan: Plan | None = None
    # Set on the view of one vault bucket of a run over many (see `pair_contexts`): that bucket,
    # which names its jobs and retry rounds in the run state, and the run's whole parameter set.
    bucket: str | None = None
    run_params: RunbookParams | None = None
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    # What a phase read once and several of its steps use (phase 00's vault inventory), shared by views.
    reads: dict[str, Any] = field(default_factory=dict, repr=False)

    @overload
    def vault(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def vault(self, service: Literal["s3control"]) -> S3ControlClient: ...
    @overload
    def vault(self, service: Literal["kms"]) -> KMSClient: ...
    @overload
    def vault(self, service: Literal["iam"]) -> IAMClient: ...
    @overload
    def vault(self, service: Literal["sts"]) -> STSClient: ...
    @overload
    def vault(self, service: Literal["sns"]) -> SNSClient: ...
    @overload
    def vault(self, service: Literal["sqs"]) -> SQSClient: ...
    @overload
    def vault(self, service: Literal["events"]) -> EventBridgeClient: ...
    @overload
    def vault(self, service: Literal["accessanalyzer"]) -> AccessAnalyzerClient: ...
    @overload
    def vault(self, service: Literal["athena"]) -> Any: ...  # inventory verification's Athena engine
    def vault(self, service: str) -> Any:
        """Return a client of the vault account (one per service, shared by the phase)."""
        return self._client("vault", service)

    @overload
    def recovery(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def recovery(self, service: Literal["kms"]) -> KMSClient: ...
    @overload
    def recovery(self, service: Literal["sts"]) -> STSClient: ...
    @overload
    def recovery(self, service: Literal["accessanalyzer"]) -> AccessAnalyzerClient: ...
    def recovery(self, service: str) -> Any:
        """Return a client of the recovery account (one per service, shared by the phase)."""
        return self._client("recovery", service)

    def _client(self, side: str, service: str) -> Any:
        if (side, service) not in self._clients:
            session = self.sessions.vault if side == "vault" else self.sessions.recovery
            region = self.params.region if side == "vault" else self.params.recovery_region
            self._clients[(side, service)] = self.client_factory(session, service, region)
        return self._clients[(side, service)]

    def planning_copy(self, phase: str | None = None) -> RunContext:
        """Return a planning context on the same sessions and clients: a fresh Plan, a ledger copy never saved."""
        return RunContext(params=self.params, ledger=self.ledger.planning_copy(), sessions=self.sessions,
                          phase=phase or self.phase, client_factory=self.client_factory, call_log=self.call_log,
                          plan=Plan(), bucket=self.bucket, run_params=self.run_params, _clients=self._clients)

    @property
    def all_params(self) -> RunbookParams:
        """Return the run's whole parameter set (every bucket pair), also from the view of one pair."""
        return self.run_params or self.params

    @property
    def many_buckets(self) -> bool:
        """Whether the run recovers more than one vault bucket."""
        return len(self.all_params.bucket_pairs) > 1

    def original_name(self, base: str, identifier: str) -> str:
        """Return the name a configuration's original is captured under: per bucket or key when the run has many."""
        return f"{base}@{identifier}" if self.many_buckets else base

    def pair_context(self, vault_bucket: str) -> RunContext:
        """Return the context of the bucket pair whose vault bucket is `vault_bucket` (this one for one bucket)."""
        found = [view for view in self.pair_contexts() if view.params.pair.vault_bucket == vault_bucket]
        if not found:
            raise ValueError(f"{vault_bucket} is not a vault bucket of this run's parameters")
        return found[0]

    def pair_contexts(self) -> list[RunContext]:
        """Return one context per bucket pair: the whole run's for one bucket, else a view of each pair.

        A view's parameters are the one-bucket form for its pair (so every step written for one
        bucket acts on that pair), its manifests and reports go under a prefix of its vault bucket,
        and it shares this context's ledger, sessions, clients and plan.
        """
        whole = self.all_params
        if len(whole.bucket_pairs) == 1:
            return [self]
        views = []
        for pair in whole.bucket_pairs:
            params = whole.for_pair(pair)
            job = params.job.model_copy(update={
                "report_prefix": f"{whole.job.report_prefix}/{pair.vault_bucket}",
                "manifest_prefix": f"{whole.job.manifest_prefix}/{pair.vault_bucket}"})
            views.append(RunContext(
                params=params.model_copy(update={"job": job}), ledger=self.ledger, sessions=self.sessions,
                phase=self.phase, client_factory=self.client_factory, call_log=self.call_log, plan=self.plan,
                bucket=pair.vault_bucket, run_params=whole, _clients=self._clients, reads=self.reads))
        return views

    @property
    def tags(self) -> dict[str, str]:
        """Return the tags every resource this run creates carries."""
        return dict(self.params.resource_tags)


def open_run(
    params_file: str | Path, run_dir: str | Path, *, create: bool = False, phase: str | None = None,
    client_factory: ClientFactory | None = None,
) -> RunContext:
    """Return a phase's context: validated parameters, both verified accounts, and the run folder's ledger.

    `create` lets a new run start (phase 00); without it the folder must hold a ledger (RunStateError).
    Phases 01-07 refuse to open a real account's run whose parameters leave run.purpose open.
    """
    params = load_params(params_file)
    require_declared_purpose(params, phase, str(params_file))
    # Calls are recorded from the first one on: the identity checks are made in the operator's name too.
    call_log = CallLog.in_run_folder(run_dir, params.run_id, phase)
    sessions = open_sessions(params, call_log)
    ledger = open_ledger(run_dir, create=create)
    ledger.bind(params.run_id, str(params_file))
    return RunContext(params=params, ledger=ledger, sessions=sessions, phase=phase,
                      client_factory=client_factory or _default_factory, call_log=call_log)
