{#- A `replace_where` incremental strategy for Delta: the run's window of the `partition_by` column
    is replaced by the model's rows in ONE commit (`INSERT INTO ... REPLACE WHERE`), so re-running a
    day replaces exactly that day, and a day with no rows any more is emptied. dbt-spark knows only
    append / merge / insert_overwrite / microbatch, so its two dispatching macros are extended here
    (root-project macros take precedence over the adapter's). -#}

{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
  {% if raw_strategy not in ['append', 'merge', 'insert_overwrite', 'microbatch', 'replace_where'] %}
    {% do exceptions.raise_compiler_error("Invalid incremental strategy provided: " ~ raw_strategy) %}
  {% endif %}
  {% if raw_strategy in ['merge', 'replace_where'] and file_format not in ['delta', 'iceberg', 'hudi'] %}
    {% do exceptions.raise_compiler_error(raw_strategy ~ " needs file_format 'delta', got " ~ file_format) %}
  {% endif %}
  {% if raw_strategy in ['insert_overwrite', 'microbatch'] and target.endpoint %}
    {% do exceptions.raise_compiler_error(raw_strategy ~ " cannot be used when connecting via endpoint") %}
  {% endif %}
  {% do return(raw_strategy) %}
{% endmacro %}


{% macro get_replace_where_sql(source, target) %}
  {%- set column = config.get('partition_by') -%}
  {%- if column is not string -%}
    {%- set column = column[0] -%}
  {%- endif -%}
  {#- Delta keeps partition columns last; select by name in the table's order. -#}
  {%- set names = adapter.get_columns_in_relation(source) | map(attribute='name') | list -%}
  {%- set ordered = (names | reject('equalto', column) | list) + [column] -%}
  insert into {{ target }} replace where {{ in_window(column) }}
  select {{ ordered | join(', ') }} from {{ source }}
{% endmacro %}


{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
  {%- if strategy == 'replace_where' -%}
    {{ get_replace_where_sql(source, target) }}
  {%- elif strategy == 'append' -%}
    {{ get_insert_into_sql(source, target) }}
  {%- elif strategy in ['insert_overwrite', 'microbatch'] -%}
    {{ get_insert_overwrite_sql(source, target, existing) }}
  {%- elif strategy == 'merge' -%}
    {{ get_merge_sql(target, source, unique_key, dest_columns=none, incremental_predicates=incremental_predicates) }}
  {%- else -%}
    {%- do exceptions.raise_compiler_error("No known SQL for the incremental strategy provided: " ~ strategy) -%}
  {%- endif -%}
{% endmacro %}
