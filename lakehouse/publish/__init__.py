"""Publishing Gold to warehouses for analysts: `publish/snowflake/*`."""
