"""What verifying a recovery costs by HEAD and by S3 Inventory, for phase 00's estimate and its advice.

List prices in USD (us-east-1), to be checked against the pricing pages on the day:

- HEAD: ListObjectVersions is a LIST request ($0.005 per 1,000, one per 1,000 versions) and each
  HeadObject a GET-class request ($0.0004 per 1,000), in both buckets;
- S3 Inventory: about $0.0025 per million objects listed (a secondary source; UNCONFIRMED against
  the pricing page), one report per bucket;
- Athena: $5 per TB scanned, at least 10 MB per query; the comparison reads both inventories
  about twice (details, counts), at about `PARQUET_BYTES_PER_VERSION` bytes a version (what the
  embedded backend's Parquet inventories weigh with the runbook's fields);
- DuckDB runs on the operator's machine: no AWS charge but the GETs of the inventory files.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PARQUET_BYTES_PER_VERSION", "VerificationCosts", "verification_costs"]

PRICE_PER_THOUSAND_LISTS = 0.005
PRICE_PER_THOUSAND_HEADS = 0.0004
PRICE_PER_MILLION_INVENTORIED = 0.0025
PRICE_PER_TB_SCANNED = 5.0
ATHENA_MINIMUM_BYTES = 10 * 1024 * 1024
PARQUET_BYTES_PER_VERSION = 60
# Planning assumption for HEAD throughput on AWS with the default 16 parallel requests.
ASSUMED_HEADS_PER_SECOND = 1000.0


@dataclass(frozen=True)
class VerificationCosts:
    """Cost and duration of each way of verifying, and the method the runbook advises."""

    versions: int
    head_usd: float
    head_hours: float
    inventory_usd: float
    athena_usd: float
    recommended: str

    def as_rows(self) -> list[dict[str, str]]:
        """Return the costs as rows of phase 00's estimate table."""
        return [
            {"quantity": "verification by HEAD, both buckets (USD; hours at ~1,000 HEAD/s)",
             "value": f"{self.head_usd:,.2f} ({self.head_hours:,.1f} h)"},
            {"quantity": "verification by S3 Inventory: reports (USD) + Athena (USD) or DuckDB (free)",
             "value": f"{self.inventory_usd:,.4f} + {self.athena_usd:,.4f}; first report within 48 h"},
            {"quantity": "recommended verification.method", "value": self.recommended},
        ]


def verification_costs(vault_versions: int, expected_versions: int, inventory_from: int) -> VerificationCosts:
    """Return what verifying costs for a vault of this many versions, and which method to use."""
    both = max(0, vault_versions) + max(0, expected_versions)
    head = both / 1000 * PRICE_PER_THOUSAND_HEADS + both / 1000 / 1000 * PRICE_PER_THOUSAND_LISTS
    inventory = both / 1e6 * PRICE_PER_MILLION_INVENTORIED
    scanned = max(ATHENA_MINIMUM_BYTES, 2 * both * PARQUET_BYTES_PER_VERSION)
    athena = 2 * scanned / 1e12 * PRICE_PER_TB_SCANNED
    recommended = "inventory" if vault_versions >= inventory_from else "head"
    return VerificationCosts(vault_versions, round(head, 4), both / ASSUMED_HEADS_PER_SECOND / 3600,
                             round(inventory, 6), round(athena, 6), recommended)
