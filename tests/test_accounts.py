"""Sessions for the two accounts: each checked against the parameters, with the fixes our endpoints need."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from runbook_lib.accounts import (
    make_client,
    open_sessions,
    session_for,
    strip_account_host_prefix,
    verify_identity,
)
from runbook_lib.embedded.server import (
    BASE_PROFILE,
    RECOVERY_ACCOUNT,
    RECOVERY_PROFILE,
    VAULT_ACCOUNT,
    VAULT_PROFILE,
    EmbeddedBackend,
    start_backend,
)
from runbook_lib.errors import AccountMismatchError, ProfileNotFoundError
from runbook_lib.params import load_params, parse_params

DRILL_PARAMETERS = Path(__file__).resolve().parent.parent / "parameters" / "drill.yaml"
# A second profile that reaches the vault account: the mistake of recovering into the same account.
VAULT_AGAIN_PROFILE = "drill-vault-again"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    config_file = tmp_path_factory.mktemp("accounts") / "aws-config"
    with start_backend(config_file=config_file) as running:
        with config_file.open("a") as config:
            config.write(
                f"\n[profile {VAULT_AGAIN_PROFILE}]\n"
                f"role_arn = arn:aws:iam::{VAULT_ACCOUNT}:role/another-operator\n"
                f"source_profile = {BASE_PROFILE}\n"
                f"region = us-east-1\nendpoint_url = {running.endpoint}\n"
            )
        yield running


@pytest.fixture
def drill_env(backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch) -> EmbeddedBackend:
    """The environment of a drill: AWS_CONFIG_FILE names the backend's config file."""
    for name, value in backend.environ().items():
        monkeypatch.setenv(name, value)
    return backend


def drill_data(**recovery: str) -> dict[str, Any]:
    """Return the drill parameter set as plain data, with recovery fields replaced."""
    data = yaml.safe_load(DRILL_PARAMETERS.read_text(encoding="utf-8"))
    data["recovery"].update(recovery)
    return data


# ------------------------------------------------------------------------ verify_identity


@pytest.mark.parametrize(("profile", "account"), [(VAULT_PROFILE, VAULT_ACCOUNT), (RECOVERY_PROFILE, RECOVERY_ACCOUNT)])
def test_verify_identity_returns_who_the_profile_is(profile: str, account: str, drill_env: EmbeddedBackend) -> None:
    identity = verify_identity(session_for(profile), account, "vault")
    assert identity.account == account
    assert identity.arn.startswith(f"arn:aws:sts::{account}:assumed-role/")


def test_verify_identity_names_profile_account_and_parameter(drill_env: EmbeddedBackend) -> None:
    with pytest.raises(AccountMismatchError) as raised:
        verify_identity(session_for(RECOVERY_PROFILE), "999999999999", "recovery")
    message = str(raised.value)
    for expected in (repr(RECOVERY_PROFILE), RECOVERY_ACCOUNT, "999999999999", "recovery.account_id"):
        assert expected in message


# -------------------------------------------------------------------------- open_sessions


def test_open_sessions_with_the_drill_parameters(drill_env: EmbeddedBackend) -> None:
    sessions = open_sessions(load_params(DRILL_PARAMETERS))
    assert (sessions.vault_identity.account, sessions.recovery_identity.account) == (VAULT_ACCOUNT, RECOVERY_ACCOUNT)
    assert (sessions.vault.profile_name, sessions.recovery.profile_name) == (VAULT_PROFILE, RECOVERY_PROFILE)
    assert sessions.recovery.region_name == "us-east-1"


def test_a_recovery_profile_reaching_the_vault_account_is_refused(drill_env: EmbeddedBackend) -> None:
    params = parse_params(drill_data(profile=VAULT_AGAIN_PROFILE))
    with pytest.raises(AccountMismatchError) as raised:
        open_sessions(params)
    message = str(raised.value)
    for expected in (repr(VAULT_AGAIN_PROFILE), VAULT_ACCOUNT, "recovery.account_id"):
        assert expected in message


def test_the_same_account_twice_is_refused(drill_env: EmbeddedBackend) -> None:
    # Validated parameters cannot name one account twice; open_sessions still refuses it.
    params = SimpleNamespace(
        region="us-east-1", recovery_region="us-east-1",
        vault=SimpleNamespace(profile=VAULT_PROFILE, account_id=VAULT_ACCOUNT),
        recovery=SimpleNamespace(profile=VAULT_AGAIN_PROFILE, account_id=VAULT_ACCOUNT),
    )
    with pytest.raises(AccountMismatchError, match=f"same account {VAULT_ACCOUNT}.*separate"):
        open_sessions(params)


def test_an_unknown_profile_is_named(drill_env: EmbeddedBackend) -> None:
    with pytest.raises(ProfileNotFoundError) as raised:
        session_for("no-such-profile")
    assert raised.value.profile == "no-such-profile"
    assert "AWS_CONFIG_FILE" in str(raised.value)


def test_open_sessions_names_an_unknown_recovery_profile(drill_env: EmbeddedBackend) -> None:
    with pytest.raises(ProfileNotFoundError) as raised:
        open_sessions(parse_params(drill_data(profile="drill-recovery-typo")))
    assert raised.value.profile == "drill-recovery-typo"


# ----------------------------------------------------------------------- S3 Control host


def test_s3control_client_reaches_the_backend(drill_env: EmbeddedBackend) -> None:
    s3control = make_client(session_for(VAULT_PROFILE), "s3control")
    sent: list[str] = []
    s3control.meta.events.register("before-send.s3-control.*", lambda request, **_: sent.append(request.url))
    block = {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
    }
    s3control.put_public_access_block(AccountId=VAULT_ACCOUNT, PublicAccessBlockConfiguration=block)
    answer = s3control.get_public_access_block(AccountId=VAULT_ACCOUNT)
    assert answer["PublicAccessBlockConfiguration"] == block
    reached = {(urlsplit(url).hostname, urlsplit(url).port, urlsplit(url).path.split("/")[1]) for url in sent}
    assert reached == {(drill_env.host, drill_env.port, "v20180820")}


def fake_request(url: str, account: str | bytes | None) -> SimpleNamespace:
    headers = {} if account is None else {"x-amz-account-id": account}
    return SimpleNamespace(url=url, headers=headers)


@pytest.mark.parametrize(
    ("url", "account", "expected"),
    [
        ("http://111111111111.127.0.0.1:5055/v20180820/jobs?jobStatuses=Active",
         "111111111111", "http://127.0.0.1:5055/v20180820/jobs?jobStatuses=Active"),
        ("http://111111111111.localhost:5055/v20180820/configuration/publicAccessBlock",
         b"111111111111", "http://localhost:5055/v20180820/configuration/publicAccessBlock"),
        ("https://111111111111.s3-control.us-east-1.amazonaws.com/v20180820/jobs",
         "111111111111", "https://111111111111.s3-control.us-east-1.amazonaws.com/v20180820/jobs"),
        ("https://111111111111.s3-control-fips.us-gov-west-1.amazonaws.com/v20180820/jobs",
         "111111111111", "https://111111111111.s3-control-fips.us-gov-west-1.amazonaws.com/v20180820/jobs"),
        ("http://222222222222.127.0.0.1:5055/v20180820/jobs",
         "111111111111", "http://222222222222.127.0.0.1:5055/v20180820/jobs"),
        ("http://111111111111.127.0.0.1:5055/v20180820/jobs", None, "http://111111111111.127.0.0.1:5055/v20180820/jobs"),
    ],
)
def test_strip_account_host_prefix(url: str, account: str | bytes | None, expected: str) -> None:
    request = fake_request(url, account)
    strip_account_host_prefix(request)
    assert request.url == expected
