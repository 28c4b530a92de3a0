"""Shared fixtures: no test may reach a real AWS account."""

from __future__ import annotations

import os

import pytest

# The embedded backend's fixtures (drill, aws_env, make_ctx) are a plugin: a test asks for them by
# argument name, and imports from runbook_fixtures only the helpers and types it uses itself.
pytest_plugins = ["runbook_fixtures"]


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Clear every AWS_* variable and point the config files at empty ones."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.getbasetemp() / "no-aws"
    empty.mkdir(exist_ok=True)
    (empty / "config").touch()
    (empty / "credentials").touch()
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow tests (drills, notebooks, the browser) first, the quick ones after them.

    `make test` hands each module to one of two workers (`--dist loadfile`) in collection order
    (`--no-loadscope-reorder`: xdist would otherwise put modules of few tests, the browser's and
    the drills', last, and one worker ran them alone at the end). Sorting is stable, so each group
    keeps its modules' order and a module's tests stay together.
    """
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)
