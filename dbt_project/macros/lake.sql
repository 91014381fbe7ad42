{#- Where the lake is, and how the Spark Connect session learns its table names.

    The session catalog is in memory and lives as long as one dbt invocation, so every run starts by
    registering, by path, the Silver tables (dbt sources) and the Gold models already written. A
    source whose Delta table does not exist yet (e.g. Silver sessions before any clickstream has
    arrived) is registered as an empty view with the columns declared in its `empty_fallback` meta,
    so the marts still build.

    Which tables exist comes from the run value `lake_tables` ("layer/name", read from the Delta logs
    with delta-rs by Dagster, or by `lakehouse dbt-vars` for a run by hand), not from the engine: engines
    answer differently for a missing path (Sail lists no files, Apache Spark fails the query). -#}

{#- The run value `lake_root` (Dagster passes its DeltaLake resource's root; so does `lakehouse dbt-vars`),
    else LAKEHOUSE_LAKE_ROOT, else $LAKEHOUSE_HOME/lake. Read at execution only (macros/run_values.sql). -#}
{% macro lake_root() -%}
  {{ return((run_value('lake_root') or env_var('LAKEHOUSE_LAKE_ROOT', env_var('LAKEHOUSE_HOME', '.lakehouse') ~ '/lake')).rstrip('/')) }}
{%- endmacro %}


{#- Marts are Delta tables at <lake_root>/gold/<model>. dbt-spark's own clause takes a `location_root`
    config, which dbt fixes when it parses: the root must be the run's. -#}
{% macro spark__location_clause() %}
  location '{{ lake_root() }}/gold/{{ model["alias"] }}'
{%- endmacro %}


{% macro delta_table_exists(layer, name) -%}
  {% set tables = run_value('lake_tables') %}
  {% if tables is none %}
    {{ exceptions.raise_compiler_error("var lake_tables missing: run dbt through Dagster, or by hand with "
                                       "--vars \"$(lakehouse dbt-vars --start DAY --end DAY)\"") }}
  {% endif %}
  {{ return((layer ~ '/' ~ name) in tables) }}
{%- endmacro %}


{% macro empty_relation_sql(columns) -%}
  select
  {%- for name, column in columns.items() %}
    cast(null as {{ column.data_type }}) as {{ name }}{{ "," if not loop.last }}
  {%- endfor %}
  where false
{%- endmacro %}


{% macro register_lake_tables() %}
  {% if execute %}
    {% set root = lake_root() %}
    {% set registered = [] %}
    {% for source in graph.sources.values() %}
      {% do run_query("create schema if not exists " ~ source.schema) %}
      {% set path = root ~ '/' ~ source.schema ~ '/' ~ source.identifier %}
      {% set relation = source.schema ~ '.' ~ source.identifier %}
      {% if delta_table_exists(source.schema, source.identifier) %}
        {% do run_query("create table if not exists " ~ relation ~ " using delta location '" ~ path ~ "'") %}
        {% do registered.append(relation) %}
      {% elif source.meta.get('empty_fallback') %}
        {% do run_query("create or replace view " ~ relation ~ " as " ~ empty_relation_sql(source.columns)) %}
        {% do registered.append(relation ~ ' (empty: no Delta table at ' ~ path ~ ')') %}
      {% else %}
        {{ exceptions.raise_compiler_error("Silver table missing: no Delta table at " ~ path) }}
      {% endif %}
    {% endfor %}
    {% for node in graph.nodes.values() if node.resource_type == 'model' and node.config.materialized in ('table', 'incremental') %}
      {% do run_query("create schema if not exists " ~ node.schema) %}
      {% set path = root ~ '/gold/' ~ node.alias %}
      {% if delta_table_exists('gold', node.alias) %}
        {% do run_query("create table if not exists " ~ node.schema ~ "." ~ node.alias ~ " using delta location '" ~ path ~ "'") %}
        {#- dbt filled its relation cache before this hook ran: tell it the model exists, so an
            incremental model takes the incremental path instead of being created afresh. -#}
        {% do adapter.cache_added(api.Relation.create(schema=node.schema, identifier=node.alias, type='table', is_delta=true)) %}
        {% do registered.append(node.schema ~ '.' ~ node.alias) %}
      {% endif %}
    {% endfor %}
    {% do log("registered in the session: " ~ registered | join(", "), info=True) %}
  {% endif %}
{% endmacro %}
