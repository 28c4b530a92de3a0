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
