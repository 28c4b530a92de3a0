"""Every error the runbook raises, rooted in one class so callers can catch broadly.

    RunbookError                    anything the runbook reports to its user
    ├── ParameterError              the parameter set is invalid (lists every problem at once)
    │   └── PurposeRequired         a real account's parameters do not say drill or recovery (run.purpose)
    ├── UsageError                  the command's arguments cannot be carried out (phase names, run folder)
    ├── ProfileNotFoundError        a profile the parameters name is not in the AWS config file
    ├── AccountMismatchError        a profile reaches another account than the parameters name
    ├── BackendError                the embedded backend could not start or answer
    ├── ThrottlingError             AWS kept answering "slow down" after every retry
    ├── PreflightError              a precondition of the recovery does not hold
    ├── PlanError                   a reviewed plan does not match what the run would do now
    ├── PolicyCheckError            IAM Access Analyzer stops a policy before it is written
    ├── ProvisionError              a resource could not be created or is in an unsafe state
    │   └── DriftError              a resource exists but differs from what the run wants
    ├── JobError                    the Batch Replication job failed, was cancelled or is stuck
    │   ├── JobEndedError           the job ended Failed or Cancelled instead of Complete
    │   ├── ConfirmationRequired    the job waits for an explicit confirmation
    │   └── RestoreError            the restore of archived versions failed or has not finished in time
    ├── ReportError                 a manifest or completion report is missing or malformed
    ├── SnapshotError               a bucket's object versions could not be listed
    ├── ScopeError                  a version outside the job's scope was about to be copied
    ├── NotVerifiedError            verification concluded FAIL: the recovery is not proven complete
    ├── RunStateError               the run folder's state is missing or unreadable
    │   ├── RunLockedError          another process is running phases in the same run folder
    │   └── CallLogError            the run folder's record of AWS calls cannot be written
    ├── HistoryError                the drill and recovery history has bad lines, or cannot be appended to
    └── PhaseError                  a phase notebook failed while running headlessly

Each message says what went wrong and what to do about it, and each error carries the context that
caused it as attributes, so callers and tests read fields rather than parse text.

A mistake in the calling code (an argument only code can pass, such as a category name or a
worker count) is not the user's to fix and stays outside this tree: it raises ValueError or
TypeError. `InvalidArguments`, a ValueError, lists every bad argument of one call at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AccountMismatchError",
    "BackendError",
    "CallLogError",
    "ConfirmationRequired",
    "DriftError",
    "HistoryError",
    "InvalidArguments",
    "JobEndedError",
    "JobError",
    "NotVerifiedError",
    "ParameterError",
    "ParameterProblem",
    "PhaseError",
    "PlanError",
    "PolicyCheckError",
    "PreflightError",
    "ProfileNotFoundError",
    "ProvisionError",
    "PurposeRequired",
    "ReportError",
    "RunLockedError",
    "RunStateError",
    "RunbookError",
    "ScopeError",
    "SnapshotError",
    "ThrottlingError",
    "UsageError",
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


class PurposeRequired(ParameterError):
    """On a real account the parameters must say whether the run is a drill or a recovery.

    Phase 00 raises it after showing the locked-copy commitment; `commitment` holds those figures
    as lines of text, so the stop itself says what the operator is about to commit to.
    """

    def __init__(self, commitment: list[str], source: str = "parameters") -> None:
        self.commitment = list(commitment)
        problem = ParameterProblem(
            "run.purpose", None,
            "drill or recovery: these parameters reach a real account (run.backend: aws), where every copy "
            "keeps its Object Lock retention and nobody can delete a COMPLIANCE copy before its date",
        )
        super().__init__([problem], source=source)
        figures = "\n".join(f"    {line}" for line in self.commitment)
        self.args = (f"{self.args[0]}\n  What the recovery account would be committed to:\n{figures}\n"
                     "  Set run.purpose in the parameter file (drill for a rehearsal, recovery for the real "
                     "thing), then run phase 00 again. Nothing was changed in any account.",)


class InvalidArguments(ValueError):
    """Code called a function with arguments not of their kind; `problems` names each, `function` the callee."""

    def __init__(self, problems: list[ParameterProblem], function: str) -> None:
        self.problems = list(problems)
        self.function = function
        super().__init__(f"{function} got invalid arguments: " + "; ".join(str(p) for p in self.problems))


class UsageError(RunbookError):
    """The command's arguments cannot be carried out (an unknown phase, a run folder already in use)."""


class ProfileNotFoundError(RunbookError):
    """A profile the parameters name is not configured; `profile` is its name."""

    def __init__(self, message: str, profile: str) -> None:
        self.profile = profile
        super().__init__(message)


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


class PlanError(RunbookError):
    """A plan file cannot be used for this run: another run, other phases, or the world changed since.

    `differences` lists the steps that differ between the plan reviewed and the plan made now.
    """

    def __init__(self, message: str, differences: list[str] | None = None) -> None:
        self.differences = list(differences or [])
        super().__init__(message)


class PolicyCheckError(RunbookError):
    """IAM Access Analyzer reports an error, a security warning or new access in a policy the run would write.

    `policy` names the policy (the first one that stops the run), `code` the finding's issue code or result.
    """

    def __init__(self, message: str, policy: str = "", code: str = "") -> None:
        self.policy = policy
        self.code = code
        super().__init__(message)


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

    def _render_traceback_(self) -> list[str]:
        """Return what IPython shows instead of a traceback: stopping here is the gate at work, not a fault."""
        return ["\x1b[1;33mPaused at the confirmation gate (by design, not an error).\x1b[0m", str(self)]


class SnapshotError(RunbookError):
    """A bucket's object versions could not be listed; `bucket` names it and `code` is AWS's error code."""

    def __init__(self, message: str, bucket: str, code: str = "") -> None:
        self.bucket = bucket
        self.code = code
        super().__init__(message)


class NotVerifiedError(RunbookError):
    """Verification concluded that the recovery is not complete; `verdict` and `summary_file` say where to look."""

    def __init__(self, message: str, verdict: str, summary_file: str | None = None) -> None:
        self.verdict = verdict
        self.summary_file = summary_file
        super().__init__(message)


class RestoreError(JobError):
    """The restore of archived versions before the replication job failed, or has not finished in time."""


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


class CallLogError(RunStateError):
    """A line could not be appended to the run folder's call log; `path` names the file."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(message, str(Path(path).parent) if path else "")


class HistoryError(RunbookError):
    """The drill and recovery history has records that cannot be read, or cannot be appended to.

    `path` names the history file and `problems` holds one text per bad line, each naming its line.
    """

    def __init__(self, message: str, path: str = "", problems: tuple[str, ...] = ()) -> None:
        self.path = path
        self.problems = problems
        super().__init__(message)


class PhaseError(RunbookError):
    """A phase notebook failed when run headlessly; carries what papermill reports about the failing cell.

    `error_name` and `error_value` are the exception's class name and text inside the kernel,
    `cell_index` the failing cell's position in the notebook and `exec_count` its execution count
    (both None when no cell ran, such as a kernel that would not start), `notebook_path` the
    executed notebook kept in the run folder.
    """

    def __init__(
        self,
        phase: str,
        error_name: str,
        error_value: str,
        *,
        notebook_path: str | None = None,
        cell_index: int | None = None,
        exec_count: int | None = None,
    ) -> None:
        self.phase = phase
        self.error_name = error_name
        self.error_value = error_value
        self.notebook_path = notebook_path
        self.cell_index = cell_index
        self.exec_count = exec_count
        where = f" (cell {exec_count})" if exec_count is not None else ""
        notebook = f"; executed notebook: {notebook_path}" if notebook_path else ""
        super().__init__(f"phase {phase} failed: {error_name}: {error_value}{where}{notebook}")

    @property
    def awaits_confirmation(self) -> bool:
        """Whether the phase stopped only because a job waits for an operator's confirmation."""
        return self.error_name == ConfirmationRequired.__name__

    @property
    def is_bad_input(self) -> bool:
        """Whether the phase stopped on the parameters (exit code 2) before changing anything."""
        return self.error_name in (ParameterError.__name__, PurposeRequired.__name__)
