{#- The values of one run: the partition window (start_date, end_date), the lake's root (lake_root) and
    the tables it holds (lake_tables).

    Dagster passes them as environment variables LAKEHOUSE_DBT_<NAME> (JSON), read only at execution:
    dbt re-parses the whole project whenever a --vars value changes, and reparses a file whose
    env_var() it saw while parsing, so values read either way would cost every run a full parse
    (seconds). By hand, `--vars` works as well (`lakehouse dbt-vars`). -#}

{% macro run_value(name) -%}
  {%- set passed = env_var('LAKEHOUSE_DBT_' ~ name | upper, '') if execute else '' -%}
  {{ return(fromjson(passed) if passed else var(name, none)) }}
{%- endmacro %}
