"""AWS CLI v1 plugin that lets `aws s3control` reach the embedded backend.

botocore's S3 Control endpoint rules put the account id in front of every endpoint host, also of
a custom one such as the backend's `http://127.0.0.1:PORT`, which then cannot be resolved. boto3
clients of the runbook drop that label in a `before-sign` hook (`accounts.make_client`); the CLI
offers no client hook, so the backend's AWS config file loads this plugin instead:

    [plugins]
    runbook_embedded = runbook_lib.embedded.awscli_plugin

The hook leaves AWS's own endpoints alone. AWS CLI v2 ignores the section (it loads plugins only
with `cli_legacy_plugin_path`); an AWS CLI v1 that cannot import `runbook_lib` refuses to start
with this file, so use the CLI installed next to the runbook.
"""

from __future__ import annotations

from typing import Any

from runbook_lib.accounts import strip_account_host_prefix

__all__ = ["awscli_initialize"]


def awscli_initialize(event_hooks: Any) -> None:
    """Register the host fix for every S3 Control request the CLI signs."""
    event_hooks.register("before-sign.s3-control", strip_account_host_prefix)
