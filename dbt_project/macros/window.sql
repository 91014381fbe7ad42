{#- The partition window a run rebuilds: [start_date, end_date) (macros/run_values.sql). -#}

{% macro window_start() -%}'{{ run_value("start_date") }}'{%- endmacro %}

{% macro window_end() -%}'{{ run_value("end_date") }}'{%- endmacro %}

{% macro in_window(column) -%}
  {{ column }} >= date{{ window_start() }} and {{ column }} < date{{ window_end() }}
{%- endmacro %}
