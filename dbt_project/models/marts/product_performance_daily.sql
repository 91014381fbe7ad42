{{ config(materialized='incremental', incremental_strategy='replace_where', partition_by='order_date') }}

-- Sales per product and day, with the product's revenue rank within the day.
with by_product as (
    select
        order_date,
        product_id,
        category,
        count(*) as orders,
        cast(sum(quantity) as bigint) as units,
        count(distinct customer_id) as customers,
        cast(sum(amount_usd) as decimal(18, 2)) as revenue_usd
    from {{ ref('stg_orders') }}
    where {{ in_window('order_date') }}
    group by order_date, product_id, category
)

select
    order_date,
    product_id,
    category,
    orders,
    units,
    customers,
    revenue_usd,
    cast(revenue_usd / units as decimal(18, 2)) as avg_unit_price_usd,
    dense_rank() over (partition by order_date order by revenue_usd desc) as revenue_rank
from by_product
