"""The list prices the runbook's estimates use, in one place, with where they come from.

Figures are AWS list prices in USD for US East (N. Virginia), the first pricing tier (the first
50 TB a month). The storage rates are those of the Amazon S3 pricing page
(https://aws.amazon.com/s3/pricing/) as of May 2026, read from copies of that page, not from AWS's
price list API; the Batch Operations, request and KMS rates are the list prices phase 00's
estimate has used since it was written. AWS changes prices and they differ by Region: check the
pages for yours before you rely on a figure. They are estimates to decide with, not a bill.

Storage, per GB-month (GB = 2^30 bytes, a month = 365.25 / 12 days, as AWS bills storage):

| storage class | USD per GB-month | billed at least | notes |
|---|---|---|---|
| STANDARD | 0.023 | | |
| INTELLIGENT_TIERING | 0.023 | | Frequent Access tier, an upper bound (see below); plus monitoring |
| STANDARD_IA | 0.0125 | 128 KiB per object | |
| ONEZONE_IA | 0.01 | 128 KiB per object | |
| GLACIER_IR | 0.004 | 128 KiB per object | |
| GLACIER | 0.0036 | | plus 40 KiB per object: 32 KiB at this rate, 8 KiB at STANDARD's |
| DEEP_ARCHIVE | 0.00099 | | plus 40 KiB per object: 32 KiB at this rate, 8 KiB at STANDARD's |
| REDUCED_REDUNDANCY | 0.024 | | a legacy class; the last rate listed for it |

INTELLIGENT_TIERING is priced at its Frequent Access rate: objects of 128 KiB or more that nobody
reads move to cheaper tiers after 30 and 90 days, so the figure is an upper bound. Objects of
128 KiB or more also pay 0.0025 USD per 1,000 objects a month for monitoring; smaller ones are
not monitored and stay at the Frequent Access rate. Minimum storage durations (30, 90, 180 days)
are left out: locked copies stay longer than that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AS_OF",
    "BYTES_PER_GB",
    "DAYS_PER_MONTH",
    "PRICE_PER_BATCH_JOB",
    "PRICE_PER_MILLION_BATCH_OBJECTS",
    "PRICE_PER_TEN_THOUSAND_KMS_REQUESTS",
    "PRICE_PER_THOUSAND_PUTS",
    "REGION",
    "SOURCE",
    "STORAGE",
    "StoragePrice",
    "monthly_storage_usd",
    "monthly_storage_usd_each",
    "usd",
]

# Where the figures come from, shown with every estimate that uses them.
SOURCE = "AWS list prices, US East (N. Virginia), first tier, aws.amazon.com/s3/pricing and /kms/pricing"
AS_OF = "2026-05"
REGION = "us-east-1"

BYTES_PER_GB = 2**30
DAYS_PER_MONTH = 365.25 / 12
_KIB = 1024


@dataclass(frozen=True)
class StoragePrice:
    """What a storage class costs per month: the rate, and what each object is billed at least or on top."""

    usd_per_gb_month: float
    min_billable_bytes: int = 0
    overhead_bytes: int = 0  # billed at this class's rate, per object
    standard_overhead_bytes: int = 0  # billed at STANDARD's rate, per object
    monitoring_usd_per_thousand_objects: float = 0.0
    monitored_from_bytes: int = 0


STORAGE: dict[str, StoragePrice] = {
    "STANDARD": StoragePrice(0.023),
    "INTELLIGENT_TIERING": StoragePrice(0.023, monitoring_usd_per_thousand_objects=0.0025,
                                        monitored_from_bytes=128 * _KIB),
    "STANDARD_IA": StoragePrice(0.0125, min_billable_bytes=128 * _KIB),
    "ONEZONE_IA": StoragePrice(0.01, min_billable_bytes=128 * _KIB),
    "GLACIER_IR": StoragePrice(0.004, min_billable_bytes=128 * _KIB),
    "GLACIER": StoragePrice(0.0036, overhead_bytes=32 * _KIB, standard_overhead_bytes=8 * _KIB),
    "DEEP_ARCHIVE": StoragePrice(0.00099, overhead_bytes=32 * _KIB, standard_overhead_bytes=8 * _KIB),
    "REDUCED_REDUNDANCY": StoragePrice(0.024),
}

# Batch Operations, requests and KMS, for the recovery's own cost (phase 00's estimate).
PRICE_PER_BATCH_JOB = 0.25
PRICE_PER_MILLION_BATCH_OBJECTS = 1.00
PRICE_PER_THOUSAND_PUTS = 0.005
PRICE_PER_TEN_THOUSAND_KMS_REQUESTS = 0.03


def monthly_storage_usd(size: int, storage_class: str) -> float:
    """Return what keeping one object of `size` bytes costs a month in `storage_class`, monitoring included."""
    return float(monthly_storage_usd_each(np.array([size]), storage_class)[0])


def monthly_storage_usd_each(sizes: np.ndarray, storage_class: str) -> np.ndarray:
    """Return, for objects of `sizes` bytes, what keeping each costs a month in `storage_class`."""
    price = STORAGE[storage_class]
    sizes = np.asarray(sizes, dtype=np.int64)
    billed = np.maximum(sizes, price.min_billable_bytes) + price.overhead_bytes
    cost = billed / BYTES_PER_GB * price.usd_per_gb_month
    cost = cost + price.standard_overhead_bytes / BYTES_PER_GB * STORAGE["STANDARD"].usd_per_gb_month
    if price.monitoring_usd_per_thousand_objects:
        monitoring = price.monitoring_usd_per_thousand_objects / 1000
        cost = cost + np.where(sizes >= price.monitored_from_bytes, monitoring, 0.0)
    return np.asarray(cost, dtype=float)


def usd(amount: float) -> str:
    """Return an amount of dollars to the cent, or "under 0.01" for an amount too small to show but not zero."""
    return "under 0.01" if 0 < amount < 0.005 else f"{amount:,.2f}"
