-- Business rule: customer_360 has exactly one row per current Silver customer, and its lifetime
-- value adds up to the USD total of all Silver orders. Returns a row when either breaks.
{{ config(meta={'dagster': {'ref': {'name': 'customer_360'}}}) }}

with gold as (
    select
        count(*) as customers,
        sum(lifetime_value_usd) as lifetime_value_usd
    from {{ ref('customer_360') }}
),

silver_customers as (
    select count(distinct customer_id) as customers
    from {{ source('silver', 'customers') }}
    where is_current
),

silver_orders as (
    select coalesce(sum(amount_usd), 0) as lifetime_value_usd from {{ source('silver', 'orders') }}
)

select
    gold.*,
    silver_customers.customers as silver_customers,
    silver_orders.lifetime_value_usd as silver_value_usd
from gold cross join silver_customers cross join silver_orders
where
    gold.customers <> silver_customers.customers
    or gold.lifetime_value_usd <> silver_orders.lifetime_value_usd
