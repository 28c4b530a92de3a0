"""Access Analyzer's routes the embedded backend serves, and how a request is known to be one of them.

    POST /policy/validation                ValidatePolicy
    POST /policy/check-no-new-access       CheckNoNewAccess
    POST /policy/check-access-not-granted  CheckAccessNotGranted

The server's middleware sends a request here when it is signed for the service `access-analyzer`
(the credential scope of its Authorization header), wherever it was sent.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["ROUTES", "SIGNING_NAME", "is_access_analyzer_request"]

SIGNING_NAME = "access-analyzer"
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/policy/validation"): "ValidatePolicy",
    ("POST", "/policy/check-no-new-access"): "CheckNoNewAccess",
    ("POST", "/policy/check-access-not-granted"): "CheckAccessNotGranted",
}
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/(?P<service>[^/,\s]+)/aws4_request")


def is_access_analyzer_request(environ: dict[str, Any]) -> bool:
    """Return True when the request was signed for Access Analyzer."""
    scope = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    return scope is not None and scope.group("service") == SIGNING_NAME
