"""Packaging: the conda environment and pyproject.toml agree, the pins the backend relies on hold."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = Path(sys.executable).parent / "runbook"


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pyproject_requirements() -> list[str]:
    """Return the runtime dependencies plus the test extras, as written."""
    project = pyproject()["project"]
    assert isinstance(project, dict)
    return [*project["dependencies"], *project["optional-dependencies"]["test"]]


def conda_pip_requirements() -> list[str]:
    """Return environment.yml's pip requirements, without the editable install of the project itself."""
    environment = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip_sections = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    assert len(pip_sections) == 1, "environment.yml should have exactly one pip section"
    return [requirement for requirement in pip_sections[0] if not requirement.startswith("-e")]


def normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_lists_the_pyproject_packages_and_pins() -> None:
    conda = sorted(normalise(r) for r in conda_pip_requirements())
    project = sorted(normalise(r) for r in pyproject_requirements())
    assert conda == project, (
        "environment.yml and pyproject.toml (dependencies + the test extra) list different packages "
        "or pins; change both together"
    )


def test_environment_yml_installs_the_project_and_its_python() -> None:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip_section = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    assert "-e ." in pip_section
    requires = pyproject()["project"]["requires-python"]  # type: ignore[index]
    python = next(entry for entry in environment["dependencies"] if str(entry).startswith("python="))
    assert requires == f">={python.split('=')[1]}"


@pytest.mark.parametrize("package", ["moto", "botocore"])
def test_patched_packages_are_pinned_exactly_and_installed_at_the_pin(package: str) -> None:
    pattern = re.compile(rf"^{package}(\[[a-z,]+\])?==(?P<version>\d+(\.\d+)+)$")
    pins = [pattern.match(normalise(r)) for r in pyproject_requirements()]
    matched = [pin for pin in pins if pin]
    assert len(matched) == 1, f"pyproject.toml must pin {package} with == to one exact version"
    assert metadata.version(package) == matched[0]["version"], (
        f"the installed {package} is not the pinned one; reinstall the environment"
    )


def test_runbook_help_lists_every_command() -> None:
    assert RUNBOOK.exists(), "the runbook command is missing: install the project with pip install -e '.[test]'"
    result = subprocess.run([str(RUNBOOK), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^ {4}(\w+) ", result.stdout, flags=re.MULTILINE))
    assert listed >= {"drill", "run", "backend", "lab"}, result.stdout
