{{ config(materialized='incremental', incremental_strategy='replace_where', partition_by='snapshot_date') }}

-- Feature table for churn models: one row per customer per day, using only what was known at the
-- end of that day (orders and sessions up to and including snapshot_date).
with days as (
    select date_day as snapshot_date from {{ ref('int_days') }}
),

customers as (
    select
        customer_id,
        country,
        signup_date
    from {{ ref('stg_customers') }}
    where is_current
),

spine as (
    select
        days.snapshot_date,
        customers.*
    from days
    cross join customers
    where customers.signup_date <= days.snapshot_date
),

orders as (
    select
        spine.snapshot_date,
        spine.customer_id,
        count(o.order_id) as orders_lifetime,
        cast(coalesce(sum(o.amount_usd), 0) as decimal(18, 2)) as revenue_usd_lifetime,
        count(case when o.order_date > date_sub(spine.snapshot_date, 7) then o.order_id end) as orders_7d,
        count(case when o.order_date > date_sub(spine.snapshot_date, 30) then o.order_id end) as orders_30d,
        cast(
            coalesce(sum(case when o.order_date > date_sub(spine.snapshot_date, 30) then o.amount_usd end), 0)
            as decimal(18, 2)
        ) as revenue_usd_30d,
        max(o.order_date) as last_order_date
    from spine
    left join {{ ref('stg_orders') }} as o
        on spine.customer_id = o.customer_id and spine.snapshot_date >= o.order_date
    group by spine.snapshot_date, spine.customer_id
),

sessions as (
    select
        spine.snapshot_date,
        spine.customer_id,
        count(case when s.session_date > date_sub(spine.snapshot_date, 7) then 1 end) as sessions_7d,
        count(case when s.session_date > date_sub(spine.snapshot_date, 30) then 1 end) as sessions_30d
    from spine
    inner join {{ ref('stg_sessions') }} as s
        on spine.customer_id = s.user_id and spine.snapshot_date >= s.session_date
    group by spine.snapshot_date, spine.customer_id
)

select
    spine.snapshot_date,
    spine.customer_id,
    spine.country,
    datediff(spine.snapshot_date, spine.signup_date) as tenure_days,
    orders.orders_lifetime,
    orders.revenue_usd_lifetime,
    orders.orders_7d,
    orders.orders_30d,
    orders.revenue_usd_30d,
    datediff(spine.snapshot_date, orders.last_order_date) as days_since_last_order,
    coalesce(sessions.sessions_7d, 0) as sessions_7d,
    coalesce(sessions.sessions_30d, 0) as sessions_30d,
    (orders.orders_7d > 0 or coalesce(sessions.sessions_7d, 0) > 0) as is_active_7d
from spine
inner join orders on spine.snapshot_date = orders.snapshot_date and spine.customer_id = orders.customer_id
left join sessions on spine.snapshot_date = sessions.snapshot_date and spine.customer_id = sessions.customer_id
where {{ in_window('spine.snapshot_date') }}
