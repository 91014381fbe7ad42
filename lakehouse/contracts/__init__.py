"""Data contracts (pandera models) for every Bronze and Silver table, keyed by asset."""

from lakehouse.contracts import bronze, silver

CONTRACTS = {
    "bronze/crm_customers": bronze.CrmCustomers,
    "bronze/orders": bronze.Orders,
    "bronze/fx_rates": bronze.FxRates,
    "silver/customers": silver.Customers,
    "silver/orders": silver.Orders,
    "silver/fx_rates": silver.FxRates,
}
