"""boto3 sessions for the vault and recovery accounts, and the one botocore config they share."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.exceptions
import botocore.handlers
from botocore.config import Config

from runbook_lib.errors import AccountMismatchError, ProfileNotFoundError

if TYPE_CHECKING:
    from runbook_lib.call_log import CallLog

_Answer = TypeVar("_Answer")

__all__ = [
    "APP_ID",
    "THROTTLING_CODES",
    "AccountSessions",
    "Identity",
    "client_config",
    "error_code",
    "is_throttling",
    "make_client",
    "open_sessions",
    "retry_throttled",
    "session_for",
    "strip_account_host_prefix",
    "verify_identity",
    "without_metadata",
]

# Parallel HEADs and the Batch Replication watcher share one pool per client.
MAX_POOL_CONNECTIONS = 64
# Sent in the User-Agent of every request (as `app/<id>`), so CloudTrail's userAgent shows which
# calls the runbook made.
APP_ID = "s3-vault-recovery-runbook"


def client_config(max_pool_connections: int = MAX_POOL_CONNECTIONS) -> Config:
    """Return the botocore config every client uses: adaptive retries and a pool sized for threads."""
    return Config(
        retries={"mode": "adaptive", "max_attempts": 10},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=60,
        user_agent_appid=APP_ID,  # type: ignore[call-arg]  # botocore has it; its stubs lag
    )


def without_metadata(answer: Mapping[str, Any]) -> dict[str, Any]:
    """Return an AWS answer as plain data, without the request's ResponseMetadata (to compare or keep it)."""
    return {key: value for key, value in answer.items() if key != "ResponseMetadata"}


def error_code(error: botocore.exceptions.ClientError) -> str:
    """Return the AWS error code of a failed call ("" when the response carries none)."""
    return str(error.response.get("Error", {}).get("Code", ""))


# Answers that mean "too many requests, try again later", never "you may not": HEAD answers carry no
# body, so S3's SlowDown reaches botocore as a bare "503".
THROTTLING_CODES = frozenset({
    "SlowDown", "503", "429", "ServiceUnavailable", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottled", "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
})
_THROTTLING_STATUSES = frozenset({429, 503})


def is_throttling(error: BaseException) -> bool:
    """Return whether a failed call was throttled (retry later), so that it is never read as a denial."""
    if not isinstance(error, botocore.exceptions.ClientError):
        return False
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(error) in THROTTLING_CODES or status in _THROTTLING_STATUSES


def retry_throttled(
    call: Callable[..., _Answer], *, attempts: int, pause: float, cap: float,
    sleep: Callable[[float], Any] = time.sleep, **arguments: Any,
) -> _Answer:
    """Return the call's answer, calling again after a growing, jittered pause while AWS throttles it.

    Throttling that outlasts `attempts` calls is raised as the last throttling ClientError, for the
    caller to turn into an error that names its own situation; any other error is raised at once.
    """
    for attempt in range(attempts):
        try:
            return call(**arguments)
        except botocore.exceptions.ClientError as error:
            if not is_throttling(error) or attempt + 1 == attempts:
                raise
        sleep(min(cap, pause * 2**attempt) * (0.5 + random.random() / 2))
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def strip_account_host_prefix(request: Any, **_: Any) -> None:
    """Drop the `{AccountId}.` label botocore prepends to a custom S3 Control endpoint's host.

    botocore's s3control endpoint rules always prefix the account id, which cannot resolve for a
    custom endpoint such as the embedded backend's 127.0.0.1. On AWS's own endpoints the prefix is
    required, so only hosts that are IP addresses or `localhost` are touched.
    """
    parts = urlsplit(request.url)
    account = request.headers.get("x-amz-account-id")
    if isinstance(account, bytes):
        account = account.decode()
    if not account or not parts.netloc.startswith(account + "."):
        return
    host = parts.netloc[len(account) + 1 :]
    bare = host.rsplit(":", 1)[0]
    if bare == "localhost" or bare.replace(".", "").isdigit():
        request.url = urlunsplit(parts._replace(netloc=host))


def make_client(session: boto3.Session, service: str, **kwargs: Any) -> Any:
    """Return a client of `session` with the shared config and the fixes our endpoints need."""
    kwargs.setdefault("config", client_config())
    # The service name is chosen at run time; RunContext's overloads give callers the typed client.
    client = session.client(service, **kwargs)  # type: ignore[call-overload]
    if service == "s3control":
        client.meta.events.register("before-sign.s3-control.*", strip_account_host_prefix)
    if service == "s3" and _is_local(client.meta.endpoint_url):
        # The embedded backend answers 100-continue slowly; AWS does not need it either for small bodies.
        client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
    return client


def _is_local(endpoint: str | None) -> bool:
    host = urlsplit(endpoint or "").hostname or ""
    return host in ("127.0.0.1", "localhost")


def session_for(profile: str, region: str | None = None) -> boto3.Session:
    """Return a boto3 session for a named profile, with a clear error when the profile is unknown."""
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except botocore.exceptions.ProfileNotFound as error:
        raise ProfileNotFoundError(
            f"AWS profile {profile!r} is not configured. Add it to your AWS config file "
            "(or set AWS_CONFIG_FILE to the file the embedded backend wrote), then run again.",
            profile,
        ) from error
    # Also on the clients botocore makes for itself, such as the one that assumes the profile's role.
    session._session.set_config_variable("user_agent_appid", APP_ID)
    return session


@dataclass(frozen=True)
class Identity:
    """Who a session acts as: account, ARN and user id from STS GetCallerIdentity."""

    account: str
    arn: str
    user_id: str


def verify_identity(session: boto3.Session, expected_account: str, label: str) -> Identity:
    """Return the session's caller identity, or raise if it is not in the expected account."""
    sts = make_client(session, "sts")
    try:
        answer = sts.get_caller_identity()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise AccountMismatchError(
            f"cannot determine who the {label} profile {session.profile_name!r} is: {error}. "
            "Check that its credentials are valid and not expired."
        ) from error
    identity = Identity(account=answer["Account"], arn=answer["Arn"], user_id=answer["UserId"])
    if identity.account != expected_account:
        raise AccountMismatchError(
            f"the {label} profile {session.profile_name!r} acts in account {identity.account} "
            f"({identity.arn}), but the parameters say {label}.account_id is {expected_account}. "
            f"Use a profile for account {expected_account}, or correct {label}.account_id."
        )
    return identity


@dataclass(frozen=True)
class AccountSessions:
    """The two sessions of a recovery, each checked to be in the account the parameters name."""

    vault: boto3.Session
    recovery: boto3.Session
    vault_identity: Identity
    recovery_identity: Identity


def open_sessions(params: Any, call_log: CallLog | None = None) -> AccountSessions:
    """Return verified sessions for the vault and recovery accounts the parameters name.

    With a call log, every call the sessions make is recorded in it, the identity checks included.
    """
    vault = session_for(params.vault.profile, params.region)
    recovery = session_for(params.recovery.profile, params.recovery_region)
    if call_log is not None:
        call_log.attach(vault, side="vault", account=params.vault.account_id)
        call_log.attach(recovery, side="recovery", account=params.recovery.account_id)
    vault_identity = verify_identity(vault, params.vault.account_id, "vault")
    recovery_identity = verify_identity(recovery, params.recovery.account_id, "recovery")
    if vault_identity.account == recovery_identity.account:
        raise AccountMismatchError(
            "the vault and recovery profiles reach the same account "
            f"{vault_identity.account}; recovery needs a separate, clean account."
        )
    return AccountSessions(vault, recovery, vault_identity, recovery_identity)
