"""Data contracts (pandera models) for every Bronze and Silver table, keyed by asset."""

import dagster as dg

from lakehouse.lib.contracts import bronze, silver
from lakehouse.lib.contracts.evaluate import column_schema

CONTRACTS = {
    "bronze/crm_customers": bronze.CrmCustomers,
    "bronze/orders": bronze.Orders,
    "bronze/fx_rates": bronze.FxRates,
    "silver/customers": silver.Customers,
    "silver/orders": silver.Orders,
    "silver/fx_rates": silver.FxRates,
    "bronze/clickstream_events": bronze.ClickstreamEvents,
    "bronze/support_ticket_changes": bronze.SupportTicketChanges,
    "silver/sessions": silver.Sessions,
    "silver/support_tickets": silver.SupportTickets,
}


def with_contract_schema(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The asset's contract as the column schema the UI shows (types, nullability, rules, descriptions)."""
    model = CONTRACTS.get(spec.key.to_user_string())
    return spec.merge_attributes(metadata={"dagster/column_schema": column_schema(model)}) if model else spec
