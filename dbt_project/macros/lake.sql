{#- Where the lake is, and how the Spark Connect session learns its table names.

    The session catalog is in memory and lives as long as one dbt invocation, so every run starts by
    registering, by path, the Silver tables (dbt sources) and the Gold models already written. A
    source whose Delta table does not exist yet (e.g. Silver sessions before any clickstream has
    arrived) is registered as an empty view with the columns declared in its `empty_fallback` meta,
    so the marts still build. -#}

{% macro lake_root() -%}
  {{ return(env_var('LAKEHOUSE_LAKE_ROOT', env_var('LAKEHOUSE_HOME', '.lakehouse') ~ '/lake').rstrip('/')) }}
{%- endmacro %}


{% macro delta_table_exists(path) -%}
  {#- Listing `_delta_log` with the binaryFile reader returns no rows (no error) when it is missing. -#}
  {% set result = run_query("select count(*) as n from binaryFile.`" ~ path ~ "/_delta_log`") %}
  {{ return(result.columns[0].values()[0] > 0) }}
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
      {% if delta_table_exists(path) %}
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
      {% if delta_table_exists(path) %}
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
