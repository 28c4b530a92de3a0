"""A failed phase keeps papermill's structured fields; errors sit in the one tree `errors` draws."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from papermill.exceptions import PapermillExecutionError

from runbook_lib import drill, errors
from runbook_lib.errors import (
    ConfirmationRequired,
    ParameterError,
    PhaseError,
    PurposeRequired,
    RunbookError,
    UsageError,
)


def test_phase_error_keeps_the_failing_cell_from_papermill(tmp_path: Path) -> None:
    notebook = tmp_path / "notebooks" / "03_grants.ipynb"
    failure = PapermillExecutionError(
        cell_index=7, exec_count=4, source="ensure_grants(ctx)", ename="ProvisionError",
        evalue="the vault key policy could not be read", traceback=["Traceback ...", "ProvisionError: ..."],
    )

    error = drill._phase_error("03_grants", failure, notebook)

    assert (error.phase, error.error_name, error.error_value) == (
        "03_grants", "ProvisionError", "the vault key policy could not be read")
    assert (error.cell_index, error.exec_count, error.notebook_path) == (7, 4, str(notebook))
    assert not error.awaits_confirmation


def test_phase_error_from_a_kernel_failure_has_no_cell(tmp_path: Path) -> None:
    error = drill._phase_error("00_preflight", RuntimeError("Kernel died before replying"), tmp_path / "00.ipynb")

    assert (error.error_name, error.error_value) == ("RuntimeError", "Kernel died before replying")
    assert error.cell_index is None and error.exec_count is None


def test_a_phase_waiting_for_confirmation_is_told_apart_by_its_error_name() -> None:
    waiting = PhaseError("06_batch_replication", ConfirmationRequired.__name__, "confirm the job")
    assert waiting.awaits_confirmation
    assert drill._exit_code_for(waiting) == drill.EXIT_WAITING
    assert drill._exit_code_for(PhaseError("07_verify", "NotVerifiedError", "NOT verified")) == drill.EXIT_FAIL


@pytest.mark.parametrize("name", [PurposeRequired.__name__, ParameterError.__name__])
def test_a_phase_that_stopped_on_the_parameters_exits_as_bad_input(name: str) -> None:
    # Phase 00 on a real account without run.purpose, or with a job.sample too small for the strata.
    stopped = PhaseError("00_preflight", name, "run.purpose: got None; expected drill or recovery")
    assert stopped.is_bad_input and not stopped.awaits_confirmation
    assert drill._exit_code_for(stopped) == drill.EXIT_BAD_INPUT == 2
    assert not PhaseError("03_grants", "ProvisionError", "x").is_bad_input


def test_purpose_required_names_the_parameter_and_carries_the_figures() -> None:
    error = PurposeRequired(["the whole scope: 3 versions", "  COMPLIANCE: 2 copies"], source="mine.yaml")
    assert isinstance(error, ParameterError)
    assert [problem.field for problem in error.problems] == ["run.purpose"]
    assert "COMPLIANCE: 2 copies" in str(error) and "mine.yaml" in str(error) and "Set run.purpose" in str(error)


@pytest.mark.parametrize(("from_phase", "to_phase"), [("99", None), (None, "nope"), ("05", "02")])
def test_phase_selection_mistakes_are_usage_errors(from_phase: str | None, to_phase: str | None) -> None:
    with pytest.raises(UsageError):
        drill.select_phases(from_phase, to_phase)


def _tree_lines() -> list[str]:
    """Return the lines of the class tree the errors module's docstring draws."""
    return (inspect.getdoc(errors) or "").split("\n\n")[1].splitlines()


def _drawn_name(line: str) -> str:
    return line.strip(" │├└─").split()[0]


def test_the_docstring_tree_draws_exactly_the_runbook_errors_under_their_bases() -> None:
    classes = {
        name: value for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, RunbookError)
    }
    lines = _tree_lines()
    assert sorted(_drawn_name(line) for line in lines) == sorted(classes)
    for position, line in enumerate(lines[1:], start=1):
        name = _drawn_name(line)
        depth = line.index(name)
        # The nearest line above drawn less deep names the direct base class.
        parent = next(
            _drawn_name(earlier) for earlier in reversed(lines[:position])
            if earlier.index(_drawn_name(earlier)) < depth
        )
        assert classes[name].__bases__ == (classes[parent],), name
