"""Gold: the business marts, built by dbt (dbt_project/) and wired into the asset graph by dagster-dbt."""
