"""One process at a time per run folder: an advisory lock on `run_dir/.lock` while phases run.

Two processes running phases in one folder read the same ledger, each create what it lacks (a
KMS key, a job), and the last write wins: the other's resources are orphaned, live and unrecorded.
So phases run under an exclusive `fcntl.flock` on the folder's lock file:

- `runbook run` and `runbook drill` hold it across all their phases (`hold_run_lock`) and tell
  their papermill kernels through RUN_LOCK_ENV, so a kernel's `start_phase` does not wait on its
  own parent;
- an interactive `start_phase` (JupyterLab) takes it for its kernel's process, and `finish_phase`
  gives it back, so the next notebook's kernel can take it;
- a second process is refused at once, naming the folder and the holder's process id: waiting
  would only run the same phase twice, later.

The operating system drops the lock when its process ends, so a crash never leaves it stale. The
file keeps the holder's pid for the error message only; the lock itself is the flock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from runbook_lib.errors import RunLockedError

__all__ = [
    "LOCK_FILE",
    "RUN_LOCK_ENV",
    "hold_run_lock",
    "lock_for_phase",
    "release_phase_lock",
]

LOCK_FILE = ".lock"
# "<pid>:<run folder>" of the process that holds the lock for the kernels it starts.
RUN_LOCK_ENV = "RUNBOOK_RUN_LOCK"

# Locks this process holds, by resolved run folder. flock conflicts between two open files even
# within one process, so a second request from this process must reuse the first.
_held: dict[Path, IO[str]] = {}
_guard = threading.Lock()


def _folder(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve()


def _acquire(folder: Path) -> IO[str]:
    """Return the open lock file of `folder`, locked by this process, or raise RunLockedError."""
    folder.mkdir(parents=True, exist_ok=True)
    stream = open(folder / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while held
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _recorded_pid(folder)
        stream.close()
        raise _locked_error(folder, holder) from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"{os.getpid()}\n")
    stream.flush()
    return stream


def _recorded_pid(folder: Path) -> int | None:
    """Return the pid the lock file names (None when it names none yet)."""
    try:
        text = (folder / LOCK_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _locked_error(folder: Path, holder: int | None) -> RunLockedError:
    who = f"process {holder}" if holder is not None else "another process"
    return RunLockedError(
        f"run folder {folder} is in use by {who}: only one process may run phases in a run folder at a "
        f"time. Wait for it to finish (or stop it, or shut down its notebook kernel), then run again.",
        str(folder), holder,
    )


def _release(folder: Path) -> None:
    stream = _held.pop(folder, None)
    if stream is not None:
        # Closing the file drops the flock; the pid stays in the file, which is harmless.
        stream.close()


@contextlib.contextmanager
def hold_run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's lock for the block and yield the folder; kernels started inside inherit it.

    Raises RunLockedError (naming the holder's pid) when another process holds it.
    """
    folder = _folder(run_dir)
    with _guard:
        if folder in _held:
            raise ValueError(f"this process already holds the lock of {folder}")
        _held[folder] = _acquire(folder)
    previous = os.environ.get(RUN_LOCK_ENV)
    os.environ[RUN_LOCK_ENV] = f"{os.getpid()}:{folder}"
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(RUN_LOCK_ENV, None)
        else:
            os.environ[RUN_LOCK_ENV] = previous
        with _guard:
            _release(folder)


def _held_by_parent(folder: Path) -> bool:
    """Return whether the process that started this one holds the folder's lock for it."""
    inherited = os.environ.get(RUN_LOCK_ENV, "")
    pid_text, _, path = inherited.partition(":")
    if not pid_text.isdigit() or Path(path) != folder:
        return False
    # The variable alone proves nothing (a shell may have exported it); the lock file must name
    # that process, and the lock must really be held.
    return _recorded_pid(folder) == int(pid_text) and _is_locked(folder)


def _is_locked(folder: Path) -> bool:
    """Return whether some process holds the folder's lock right now."""
    try:
        with open(folder / LOCK_FILE, "a+", encoding="utf-8") as probe:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def lock_for_phase(run_dir: str | Path) -> bool:
    """Make sure this process may run a phase in the folder; return True when it took the lock itself.

    Nothing to take when this process already holds it or its parent (`runbook run`) holds it for
    it; otherwise it is taken until `release_phase_lock`. Raises RunLockedError when another process
    holds it.
    """
    folder = _folder(run_dir)
    with _guard:
        if folder in _held or _held_by_parent(folder):
            return False
        _held[folder] = _acquire(folder)
        return True


def release_phase_lock(run_dir: str | Path) -> None:
    """Give back a lock `lock_for_phase` took; a lock held by `hold_run_lock` or a parent stays."""
    folder = _folder(run_dir)
    with _guard:
        if os.environ.get(RUN_LOCK_ENV, "") == f"{os.getpid()}:{folder}":
            return  # held across phases by this very process: hold_run_lock releases it
        _release(folder)
