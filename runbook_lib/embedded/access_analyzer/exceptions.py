"""What Access Analyzer answers when it refuses a call: code, message, HTTP status.

    BackendError (runbook_lib.errors)
    └── AccessAnalyzerError          a call is refused: code, message, HTTP status
        ├── ValidationException      400: a member is missing or breaks the model's constraints
        ├── InvalidParameterException 400: a policy document that is not a JSON policy
        └── UnprocessableEntityException 422: a policy the embedded evaluator cannot decide
"""

from __future__ import annotations

from typing import Any

from runbook_lib.errors import BackendError

__all__ = [
    "AccessAnalyzerError",
    "InvalidParameterException",
    "UnprocessableEntityException",
    "ValidationException",
]


class AccessAnalyzerError(BackendError):
    """An Access Analyzer API error: the code, message and HTTP status the caller receives."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}")

    def body(self) -> dict[str, Any]:
        """Return the error's JSON document."""
        return {"message": self.message}


class ValidationException(AccessAnalyzerError):
    """A request member is missing or breaks a constraint of botocore's model (400); `field` names it."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field
        super().__init__("ValidationException", message, 400)

    def body(self) -> dict[str, Any]:
        """Return the error's JSON document, with the field that failed."""
        document: dict[str, Any] = {"message": self.message, "reason": "fieldValidationFailed"}
        if self.field:
            document["fieldList"] = [{"name": self.field, "message": self.message}]
        return document


class InvalidParameterException(AccessAnalyzerError):
    """A policy document is not JSON, or not a policy (400)."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidParameterException", message, 400)


class UnprocessableEntityException(AccessAnalyzerError):
    """A policy uses what the embedded evaluator does not decide, so no answer would be honest (422)."""

    def __init__(self, message: str) -> None:
        super().__init__("UnprocessableEntityException", message, 422)
