{{ config(materialized='incremental', incremental_strategy='replace_where', partition_by='date_day') }}

-- One row per day: users, sessions and sales.
with days as (
    select date_day from {{ ref('int_days') }}
),

orders as (
    select
        order_date as date_day,
        count(*) as orders,
        count(distinct customer_id) as buyers,
        cast(sum(amount_usd) as decimal(18, 2)) as revenue_usd
    from {{ ref('stg_orders') }}
    where {{ in_window('order_date') }}
    group by order_date
),

sessions as (
    select
        session_date as date_day,
        count(*) as sessions,
        sum(case when is_bounce then 1 else 0 end) as bounces,
        avg(session_length_seconds) as avg_session_length_seconds
    from {{ ref('stg_sessions') }}
    where {{ in_window('session_date') }}
    group by session_date
),

-- Active: anyone who had a session or placed an order that day.
active as (
    select
        date_day,
        count(distinct user_id) as active_users
    from (
        select
            session_date as date_day,
            user_id
        from {{ ref('stg_sessions') }}
        where {{ in_window('session_date') }}
        union all
        select
            order_date,
            customer_id
        from {{ ref('stg_orders') }}
        where {{ in_window('order_date') }}
    ) as activity
    group by date_day
),

signups as (
    select
        signup_date as date_day,
        count(distinct customer_id) as new_users
    from {{ ref('stg_customers') }}
    where {{ in_window('signup_date') }}
    group by signup_date
)

select
    days.date_day,
    coalesce(active.active_users, 0) as active_users,
    coalesce(signups.new_users, 0) as new_users,
    coalesce(sessions.sessions, 0) as sessions,
    cast(sessions.bounces / sessions.sessions as double) as bounce_rate,
    cast(sessions.avg_session_length_seconds as double) as avg_session_length_seconds,
    coalesce(orders.orders, 0) as orders,
    coalesce(orders.buyers, 0) as buyers,
    coalesce(orders.revenue_usd, cast(0 as decimal(18, 2))) as revenue_usd,
    cast(orders.revenue_usd / orders.orders as decimal(18, 2)) as avg_order_value_usd
from days
left join active on days.date_day = active.date_day
left join signups on days.date_day = signups.date_day
left join sessions on days.date_day = sessions.date_day
left join orders on days.date_day = orders.date_day
