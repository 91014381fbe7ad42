{{ config(materialized='incremental', incremental_strategy='replace_where', partition_by='order_date') }}

-- Revenue per day, customer country (as of the order), product category and order currency.
select
    order_date,
    coalesce(country, 'unknown') as country,
    category,
    currency,
    count(*) as orders,
    cast(sum(quantity) as bigint) as units,
    cast(sum(amount) as decimal(18, 2)) as revenue,
    cast(sum(amount_usd) as decimal(18, 2)) as revenue_usd
from {{ ref('int_orders_enriched') }}
where {{ in_window('order_date') }}
group by order_date, coalesce(country, 'unknown'), category, currency
