"""The embedded AWS for drills and tests: moto plus our S3 Batch Operations and replication emulation."""

from __future__ import annotations

from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.server import EmbeddedBackend, start_backend

__all__ = ["EmbeddedBackend", "Faults", "start_backend"]
