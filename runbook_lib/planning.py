"""The read-only mode of the phases' own code: each write a step would make, collected instead of made.

A run context that carries a `Plan` (`RunContext.plan`) is a planning context. Every `ensure_*`
step, the recovery job's creation and cleanup read what exists and compare it with what the run
wants, exactly as they do in a run; where a run would call AWS to create or change something,
they call `Plan.intend` with the call and the document it would write, and carry on as if the
call had been made. Their ledger is a copy that is never saved (`Ledger.planning_copy`), so
later phases of the same plan see what earlier ones would have recorded.

Later phases depend on what earlier ones create. A resource the plan would create is known by the
name the run gives it; a value AWS assigns when it is created (a KMS key id, a job id, a queue
URL) is not known yet and is written `known-after-phase-NN` (`known_after`), inside an ARN of the
right form where one is needed. What the plan would create is remembered with its document, so a
later step reads that document instead of asking AWS about something that does not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Plan", "PlannedWrite", "known_after"]


def known_after(phase: str) -> str:
    """Return the stand-in for a value AWS assigns only when phase `phase` creates the resource."""
    return f"known-after-phase-{phase}"


@dataclass(frozen=True)
class PlannedWrite:
    """One call a phase would make to create or change something, and what it would write."""

    side: str  # vault | recovery: the account whose session would make the call
    service: str  # as botocore names it: s3, kms, iam, ...
    operation: str  # as AWS names it: PutKeyPolicy, CreateBucket, ...
    identifier: str  # what it acts on: bucket, key ARN, role ARN, ...
    document: Any = None  # the document or settings it would write (never a secret)
    found: Any = None  # the document it would replace, as read now (None: there is none)

    def as_dict(self) -> dict[str, Any]:
        """Return the write as plain JSON-ready data."""
        return {"side": self.side, "service": self.service, "operation": self.operation,
                "identifier": self.identifier, "document": self.document, "found": self.found}


@dataclass
class Plan:
    """The writes collected while steps run in planning mode, and the resources they would create."""

    writes: list[PlannedWrite] = field(default_factory=list)
    # Identifier of each resource this plan would create -> the document it would be created with.
    _new: dict[str, Any] = field(default_factory=dict, repr=False)

    def intend(
        self, side: str, service: str, operation: str, identifier: str, document: Any = None, *,
        found: Any = None, creates: bool = False,
    ) -> None:
        """Record a write instead of making it; `creates` marks `identifier` as a resource the plan would create."""
        self.writes.append(PlannedWrite(side, service, operation, identifier, document, found))
        if creates:
            self._new[identifier] = document

    def creates(self, identifier: str) -> bool:
        """Return whether this plan would create the resource (so AWS cannot be asked about it yet)."""
        return identifier in self._new

    def document_of(self, identifier: str) -> Any:
        """Return the document a resource this plan creates would be created with."""
        return self._new[identifier]
