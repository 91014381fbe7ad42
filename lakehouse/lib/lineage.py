"""Column lineage of a SQL query, with sqlglot: which upstream columns each column it selects is computed from.

The Gold marts' lineage comes from here, over dbt's compiled SQL (the ephemeral staging and intermediate
models inlined as CTEs, so each column is traced through them to the tables the query reads). dagster-dbt's
own `fetch_column_metadata()` asks the adapter for the upstream tables' columns in a Spark session of its
own, and our engines' session catalogs hold no tables there (dbt registers them in its own session), so
the upstream schemas are given here instead: the Silver contracts and the marts' Delta schemas."""

from collections.abc import Mapping

import dagster as dg
from sqlglot import exp, parse_one
from sqlglot.lineage import lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

DIALECT = "spark"


def relation(name: str) -> str:
    """`schema.table` as sqlglot normalises it (unquoted, lower case), to match a query's tables with their names."""
    table = exp.to_table(name, dialect=DIALECT)
    return f"{table.db}.{table.name}".lower()


def column_lineage(
    sql: str, schemas: Mapping[str, Mapping[str, str]], assets: Mapping[str, dg.AssetKey]
) -> dg.TableColumnLineage:
    """Each column `sql` selects -> the upstream columns it is computed from. `schemas` gives the columns (name ->
    SQL type) of every table `sql` reads, by `schema.table`; `assets` the asset each of those tables is."""
    schema = MappingSchema(dialect=DIALECT)
    for name, columns in schemas.items():
        schema.add_table(relation(name), dict(columns), dialect=DIALECT)
    assets = {relation(name): key for name, key in assets.items()}
    # Qualified first, which fails on a column none of the tables has (lineage() would leave it out silently).
    qualified = qualify(parse_one(sql, dialect=DIALECT), schema=schema, dialect=DIALECT).sql(dialect=DIALECT)
    # All columns in one walk; untrimmed (trimming only tidies the SQL each node shows, and costs 5x the time).
    traced = lineage(None, qualified, schema, dialect=DIALECT, trim_selects=False)
    deps = {}
    for column, root in traced.items():
        found = set()
        for node in root.walk():
            table = None if node.downstream else node.expression.find(exp.Table)  # a leaf: a column of a table
            if table is not None:
                name = f"{table.db}.{table.name}".lower()
                if name not in assets:
                    raise ValueError(f"the query reads {name}, which is none of the tables given: {sorted(assets)}")
                found.add(dg.TableColumnDep(assets[name], exp.to_column(node.name).name))
        deps[column] = list(found)
    return dg.TableColumnLineage(deps)
