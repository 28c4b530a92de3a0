"""Every error the runbook raises, rooted in one class so callers can catch broadly.

    RunbookError                    anything the runbook reports to its user
    ├── ParameterError              the parameter set is invalid (lists every problem at once)
    ├── AccountMismatchError        a profile reaches another account than the parameters name
    ├── BackendError                the embedded backend could not start or answer
    ├── ThrottlingError             AWS kept answering "slow down" after every retry
    ├── PreflightError              a precondition of the recovery does not hold
    ├── ProvisionError              a resource could not be created or is in an unsafe state
    │   └── DriftError              a resource exists but differs from what the run wants
    ├── JobError                    the Batch Replication job failed, was cancelled or is stuck
    │   ├── JobEndedError           the job ended Failed or Cancelled instead of Complete
    │   └── ConfirmationRequired    the job waits for an explicit confirmation
    ├── ReportError                 a manifest or completion report is missing or malformed
    ├── ScopeError                  a version outside the job's scope was about to be copied
    ├── RunStateError               the run folder's state is missing or unreadable
    │   └── RunLockedError          another process is running phases in the same run folder
    └── PhaseError                  a phase notebook failed while running headlessly

Each message says what went wrong and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AccountMismatchError",
    "BackendError",
    "ConfirmationRequired",
    "DriftError",
    "JobEndedError",
    "JobError",
    "ParameterError",
    "ParameterProblem",
    "PhaseError",
    "PreflightError",
    "ProvisionError",
    "ReportError",
    "RunLockedError",
    "RunStateError",
    "RunbookError",
    "ScopeError",
    "ThrottlingError",
]


class RunbookError(Exception):
    """Base of every error the runbook raises on purpose."""


@dataclass(frozen=True)
class ParameterProblem:
    """One invalid parameter: where it is, what it holds, and what is expected instead."""

    field: str
    value: object
    expected: str

    def __str__(self) -> str:
        return f"{self.field}: got {self.value!r}; expected {self.expected}"


class ParameterError(RunbookError):
    """The parameter set is invalid; `problems` lists every problem found, not just the first."""

    def __init__(self, problems: list[ParameterProblem], source: str = "parameters") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"{source} has {len(self.problems)} {noun}; fix them and run again:\n{lines}"
        )


class AccountMismatchError(RunbookError):
    """A profile's caller identity is in a different account than the parameters say."""


class BackendError(RunbookError):
    """The embedded AWS backend could not be started, reached or seeded."""


class ThrottlingError(RunbookError):
    """AWS (or the embedded backend) kept throttling an operation after every retry; nothing was concluded."""

    def __init__(self, message: str, operation: str = "", code: str = "") -> None:
        self.operation = operation
        self.code = code
        super().__init__(message)


class PreflightError(RunbookError):
    """A precondition of the recovery does not hold; nothing has been changed."""


class ProvisionError(RunbookError):
    """A resource could not be provisioned, or exists in a state the run must not touch."""


class DriftError(ProvisionError):
    """A resource exists but differs from what the run wants; `difference` says how."""

    def __init__(self, message: str, difference: object = None) -> None:
        self.difference = difference
        super().__init__(message)


class JobError(RunbookError):
    """The Batch Replication job failed, was cancelled, or did not reach the awaited status."""


class JobEndedError(JobError):
    """The job reached a terminal status other than Complete; `status` and `job_id` say which."""

    def __init__(self, message: str, job_id: str, status: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(message)


class ConfirmationRequired(JobError):
    """The job is ready and waits for an operator's confirmation before it replicates anything."""


class ScopeError(RunbookError):
    """A version outside the job's scope was about to be copied into the recovery account."""


class ReportError(RunbookError):
    """A generated manifest or completion report is missing, unreadable or inconsistent."""


class RunStateError(RunbookError):
    """The run folder's ledger is missing, unreadable or belongs to another run; `run_dir` names the folder."""

    def __init__(self, message: str, run_dir: str = "") -> None:
        self.run_dir = run_dir
        super().__init__(message)


class RunLockedError(RunStateError):
    """Another process holds the run folder's lock; `holder_pid` is its process id (None when unknown)."""

    def __init__(self, message: str, run_dir: str = "", holder_pid: int | None = None) -> None:
        self.holder_pid = holder_pid
        super().__init__(message, run_dir)


class PhaseError(RunbookError):
    """A phase notebook failed when run headlessly; carries the phase, the error's name and the notebook."""

    def __init__(
        self, phase: str, message: str, notebook_path: str | None = None, error_name: str = "",
    ) -> None:
        self.phase = phase
        self.notebook_path = notebook_path
        self.error_name = error_name
        super().__init__(f"phase {phase} failed: {message}")

    @property
    def awaits_confirmation(self) -> bool:
        """Whether the phase stopped only because a job waits for an operator's confirmation."""
        return self.error_name == ConfirmationRequired.__name__
