"""The Snowflake resource: dagster-snowflake's SnowflakeResource, built when a run first connects.

Importing dagster_snowflake pulls in snowflake.core and Snowpark, about 5 s on a small machine; every
process that loads the code location (the UI's code server, each run, `dagster asset list`, the
tests) would pay that, though only the publish assets ever connect. This resource has the same
settings (the standard SNOWFLAKE_* variables, as dg.EnvVar: resolved when a run starts, and shown
in the UI by name, not value) and hands them to a SnowflakeResource inside the run."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import Field


class LazySnowflakeResource(dg.ConfigurableResource):
    """A Snowflake connection through dagster-snowflake's SnowflakeResource, imported on first use."""

    account: str = Field(description="Account identifier, e.g. `acme-eu1` (SNOWFLAKE_ACCOUNT)")
    user: str = Field(description="User login name (SNOWFLAKE_USER)")
    password: str | None = Field(default=None, description="User password (SNOWFLAKE_PASSWORD)")
    database: str | None = Field(default=None, description="Default database (SNOWFLAKE_DATABASE)")
    schema_: str | None = Field(default=None, alias="schema", description="Default schema (SNOWFLAKE_SCHEMA)")
    warehouse: str | None = Field(default=None, description="Default warehouse (SNOWFLAKE_WAREHOUSE)")
    role: str | None = Field(default=None, description="Role, else the user's default (SNOWFLAKE_ROLE)")

    def snowflake_resource(self) -> Any:
        """The dagster_snowflake.SnowflakeResource with these settings (config resolved: plain values)."""
        from dagster_snowflake import SnowflakeResource

        given = {
            "account": self.account,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "schema": self.schema_,
            "warehouse": self.warehouse,
            "role": self.role,
        }
        return SnowflakeResource(**{k: v for k, v in given.items() if v is not None})

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        """A snowflake.connector connection, committed and closed on exit (SnowflakeResource.get_connection)."""
        with self.snowflake_resource().get_connection() as conn:
            yield conn
