-- Business rule: the day's orders and revenue in daily_kpis equal the sums of revenue_daily.
{{ config(meta={'dagster': {'ref': {'name': 'daily_kpis'}}}) }}

with revenue as (
    select
        order_date,
        sum(orders) as orders,
        sum(revenue_usd) as revenue_usd
    from {{ ref('revenue_daily') }}
    where {{ in_window('order_date') }}
    group by order_date
)

select
    kpis.date_day,
    kpis.orders,
    revenue.orders as revenue_daily_orders
from {{ ref('daily_kpis') }} as kpis
inner join revenue on kpis.date_day = revenue.order_date
where kpis.orders <> revenue.orders or kpis.revenue_usd <> revenue.revenue_usd
