-- Business rule: for every day of the run's window, revenue_daily holds exactly the day's Silver
-- orders (count and USD total). Returns the days that disagree.
{{ config(meta={'dagster': {'ref': {'name': 'revenue_daily'}}}) }}

with gold as (
    select
        order_date,
        sum(orders) as orders,
        sum(revenue_usd) as revenue_usd
    from {{ ref('revenue_daily') }}
    where {{ in_window('order_date') }}
    group by order_date
),

silver as (
    select
        order_date,
        count(*) as orders,
        sum(amount_usd) as revenue_usd
    from {{ source('silver', 'orders') }}
    where {{ in_window('order_date') }}
    group by order_date
)

select
    coalesce(gold.order_date, silver.order_date) as order_date,
    gold.orders,
    silver.orders as silver_orders,
    gold.revenue_usd,
    silver.revenue_usd as silver_revenue_usd
from gold
full outer join silver on gold.order_date = silver.order_date
where not (gold.orders <=> silver.orders) or not (gold.revenue_usd <=> silver.revenue_usd)
