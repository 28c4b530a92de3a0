"""One process at a time per run folder, and no run resumed from a lost ledger.

The other processes are real ones (a `python -c` child), because the lock is a per-process flock:
a thread of the test process would not show what a second `runbook run` or a second kernel sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runbook_lib import cli
from runbook_lib.drill import DRILL_PARAMS, run_phases
from runbook_lib.errors import RunLockedError, RunStateError
from runbook_lib.ledger import LEDGER_FILE, open_ledger
from runbook_lib.run_lock import LOCK_FILE, RUN_LOCK_ENV, hold_run_lock, lock_for_phase, release_phase_lock

PROJECT = Path(__file__).resolve().parents[1]

# A second process: takes the folder's lock the way `how` says, prints "locked", holds it until its
# stdin closes.
_HOLDER = textwrap.dedent("""
    import sys
    from runbook_lib import run_lock
    folder, how = sys.argv[1], sys.argv[2]
    if how == "run":
        with run_lock.hold_run_lock(folder):
            print("locked", flush=True)
            sys.stdin.read()
    else:
        run_lock.lock_for_phase(folder)
        print("locked", flush=True)
        sys.stdin.read()
""")

# A kernel's start of a phase: prints whether it took the lock itself, or the error's fields.
_KERNEL = textwrap.dedent("""
    import sys
    from runbook_lib import run_lock
    from runbook_lib.errors import RunLockedError
    try:
        print("took" if run_lock.lock_for_phase(sys.argv[1]) else "inherited")
    except RunLockedError as error:
        print(f"refused {error.holder_pid}")
""")


def _env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != RUN_LOCK_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH", "")]))
    return {**env, **extra}


@contextmanager
def other_process_holding(folder: Path, how: str = "run") -> Iterator[int]:
    """Yield the pid of a child process that holds the folder's lock until the block ends."""
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), how], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        yield child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def kernel_start(folder: Path, env: dict[str, str]) -> str:
    """Return what a phase kernel started with `env` says when it asks for the folder's lock."""
    answer = subprocess.run([sys.executable, "-c", _KERNEL, str(folder)], env=env, capture_output=True,
                            text=True, check=True, timeout=60)
    return answer.stdout.strip()


@pytest.mark.parametrize("how", ["run", "phase"])
def test_a_second_process_is_refused_with_the_folder_and_the_holders_pid(tmp_path: Path, how: str) -> None:
    with other_process_holding(tmp_path, how) as holder, pytest.raises(RunLockedError) as refused, \
            hold_run_lock(tmp_path):
        pytest.fail("two processes held one run folder's lock")
    assert refused.value.holder_pid == holder
    assert refused.value.run_dir == str(tmp_path.resolve())
    assert f"run folder {tmp_path.resolve()} is in use by process {holder}" in str(refused.value)


def test_the_lock_is_free_again_when_its_holder_ends(tmp_path: Path) -> None:
    with other_process_holding(tmp_path):
        pass
    with hold_run_lock(tmp_path) as folder:
        assert (folder / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_kernels_of_the_holding_process_inherit_the_lock_and_strangers_are_refused(tmp_path: Path) -> None:
    with hold_run_lock(tmp_path):
        assert kernel_start(tmp_path, _env(**{RUN_LOCK_ENV: os.environ[RUN_LOCK_ENV]})) == "inherited"
        assert kernel_start(tmp_path, _env()) == f"refused {os.getpid()}"
    assert RUN_LOCK_ENV not in os.environ


def test_an_exported_variable_alone_does_not_get_past_the_lock(tmp_path: Path) -> None:
    # A variable left over in a shell names a process that holds nothing: the kernel locks for itself,
    with other_process_holding(tmp_path, "phase") as holder:
        # and a variable naming a process that does not hold this folder's lock gets no pass either.
        forged = _env(**{RUN_LOCK_ENV: f"{os.getpid()}:{tmp_path.resolve()}"})
        assert kernel_start(tmp_path, forged) == f"refused {holder}"
    assert kernel_start(tmp_path, _env(**{RUN_LOCK_ENV: f"1:{tmp_path.resolve()}"})) == "took"


def test_an_interactive_phase_holds_the_lock_until_it_finishes(tmp_path: Path) -> None:
    assert lock_for_phase(tmp_path) is True
    assert lock_for_phase(tmp_path) is False, "a re-run of the phase's first cell in the same kernel"
    assert kernel_start(tmp_path, _env()) == f"refused {os.getpid()}"
    release_phase_lock(tmp_path)
    assert kernel_start(tmp_path, _env()) == "took"


def test_runbook_run_in_a_folder_in_use_exits_2_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    with other_process_holding(run_dir) as holder:
        status = cli.main(["run", "--params", str(DRILL_PARAMS), "--out", str(run_dir), "--to", "00"])
    error = capsys.readouterr().err
    assert status == 2
    assert f"run folder {run_dir.resolve()} is in use by process {holder}" in error
    assert not (run_dir / "notebooks").exists(), "no phase may start"


@pytest.mark.parametrize("phase", ["03", "08"])
def test_runbook_run_after_00_without_a_ledger_exits_2_before_any_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], phase: str
) -> None:
    run_dir = tmp_path / "run"
    open_ledger(run_dir, create=True).record_created("kms_key", "arn:aws:kms:us-east-1:222222222222:key/1")
    (run_dir / LEDGER_FILE).unlink()

    status = cli.main(["run", "--params", str(DRILL_PARAMS), "--out", str(run_dir), "--from", phase])
    error = capsys.readouterr().err
    assert status == 2
    assert f"has no {LEDGER_FILE}, so phase {phase}_" in error and "cannot know what this run created" in error
    assert "start a new run at phase 00" in error
    assert not (run_dir / LEDGER_FILE).exists()
    assert not (run_dir / "notebooks").exists(), "no phase may have started"


def test_runbook_run_from_00_in_a_folder_whose_ledger_was_lost_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "03_grants.ipynb").write_text("{}")
    status = cli.main(["run", "--params", str(DRILL_PARAMS), "--out", str(tmp_path), "--from", "00"])
    assert status == 2
    assert "phases 03_grants ran in it" in capsys.readouterr().err
    assert not (tmp_path / LEDGER_FILE).exists()


def test_run_phases_raises_the_run_state_error_itself(tmp_path: Path) -> None:
    with pytest.raises(RunStateError) as refused:
        run_phases(DRILL_PARAMS, tmp_path / "new", ["08_cleanup"])
    assert refused.value.run_dir == str(tmp_path / "new")
    assert not (tmp_path / "new").exists()
