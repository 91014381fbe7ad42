{#- The partition window a run rebuilds: [start_date, end_date), from dbt vars (Dagster passes the
    run's partition window). -#}

{% macro window_start() -%}'{{ var("start_date") }}'{%- endmacro %}

{% macro window_end() -%}'{{ var("end_date") }}'{%- endmacro %}

{% macro in_window(column) -%}
  {{ column }} >= date{{ window_start() }} and {{ column }} < date{{ window_end() }}
{%- endmacro %}
