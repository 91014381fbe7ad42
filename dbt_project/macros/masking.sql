{#- PII masking, applied in staging so no raw email, phone or name ever reaches a Gold table. -#}

{#- ada.lovelace12@example.com -> a***@e***.com -#}
{% macro mask_email(column) -%}
  case when {{ column }} is null or trim({{ column }}) = '' then null
       else concat(
         substr(substring_index({{ column }}, '@', 1), 1, 1), '***@',
         substr(substring_index({{ column }}, '@', -1), 1, 1), '***.',
         substring_index({{ column }}, '.', -1))
  end
{%- endmacro %}

{#- +1-555-123-4567 -> ***-4567 (the last 4 digits) -#}
{% macro mask_phone(column) -%}
  case when {{ column }} is null or trim({{ column }}) = '' then null
       else concat('***-', substr(regexp_replace({{ column }}, '[^0-9]', ''), -4, 4))
  end
{%- endmacro %}

{#- Ada, Lovelace -> A. L. -#}
{% macro name_initials(first_name, last_name) -%}
  nullif(trim(concat_ws(' ',
    case when trim({{ first_name }}) <> '' then concat(upper(substr(trim({{ first_name }}), 1, 1)), '.') end,
    case when trim({{ last_name }}) <> '' then concat(upper(substr(trim({{ last_name }}), 1, 1)), '.') end
  )), '')
{%- endmacro %}
