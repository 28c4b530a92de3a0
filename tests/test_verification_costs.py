"""Phase 00's advice on how to verify: the cost of HEAD against S3 Inventory, and the method it recommends."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_lib.preflight import Estimate
from runbook_lib.verification_costs import verification_costs


@pytest.mark.parametrize(("versions", "head", "inventory"), [
    (10**6, 0.81, 0.005), (10**8, 81.0, 0.5), (10**9, 810.0, 5.0),
])
def test_costs_at_scale_are_what_the_readme_quotes(versions: int, head: float, inventory: float) -> None:
    costs = verification_costs(versions, versions, inventory_from=10**6)
    assert costs.head_usd == pytest.approx(head, rel=0.02)
    assert costs.inventory_usd == pytest.approx(inventory, rel=0.02)
    # Athena reads the Parquet inventories: cents at 10^8, about a dollar at 10^9, never free.
    assert 0 < costs.athena_usd < costs.head_usd / 100
    assert costs.recommended == "inventory"


def test_small_vaults_are_verified_by_head_and_the_estimate_says_so() -> None:
    costs = verification_costs(5_000, 4_000, inventory_from=10**6)
    assert costs.recommended == "head"
    rows = Estimate(5_000, 10, 1, 1, 1, 4_000, 1, 0.0, 0.0, verification=costs.__dict__).as_rows()
    assert rows[-1] == {"quantity": "recommended verification.method", "value": "head"}
    assert any("S3 Inventory" in row["quantity"] for row in rows)


def _usd(amount: float) -> str:
    """Return an amount as the README writes it: dollars, no trailing zeros."""
    return "$" + f"{amount:,.4f}".rstrip("0").rstrip(".")


@pytest.mark.parametrize(("versions", "label"), [(10**6, "10^6"), (10**8, "10^8"), (10**9, "10^9")])
def test_the_readme_s_cost_table_is_the_module_s(versions: int, label: str) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith(f"| {label} | $"))
    head, inventory, athena = (cell.strip() for cell in row.split("|")[2:5])
    costs = verification_costs(versions, versions, inventory_from=10**6)
    assert head.startswith(f"{_usd(costs.head_usd)}; {costs.head_hours:,.0f} h") or head.startswith(
        f"{_usd(costs.head_usd)}; {costs.head_hours:,.1f} h"), row
    assert inventory.startswith(_usd(costs.inventory_usd)), row
    assert athena.startswith(_usd(costs.athena_usd) + " "), row
