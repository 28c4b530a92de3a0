"""S3 vault recovery runbook: recover Object Lock golden copies with S3 Batch Replication and prove it."""

from __future__ import annotations

from runbook_lib.errors import ParameterError, RunbookError

__all__ = ["ParameterError", "RunbookError", "__version__"]
__version__ = "0.1.0"
