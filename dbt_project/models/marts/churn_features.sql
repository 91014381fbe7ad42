{{ config(materialized='incremental', incremental_strategy='replace_where', partition_by='snapshot_date') }}

-- Feature table for churn models: one row per customer per day, using only what was known at the
-- end of that day (orders and sessions up to and including snapshot_date).
-- Its cost is linear in history: each customer's figures are running sums over a calendar of every
-- day from 29 days before the window, or before the signup if later (so a 7- or 30-day sum is a frame of
-- rows), on top of what came before the customer's first calendar day. Joining each day with all earlier
-- orders instead grew with days x orders.
with days as (
    select date_day as snapshot_date from {{ ref('int_days') }}
),

bounds as (
    select
        date_sub(min(snapshot_date), 29) as first_date,
        max(snapshot_date) as last_date
    from days
),

calendar as (
    select explode(sequence(first_date, last_date)) as calendar_date
    from bounds
),

customers as (
    select
        customer_id,
        country,
        signup_date
    from {{ ref('stg_customers') }}
    where is_current
),

order_days as (
    select
        customer_id,
        order_date,
        count(order_id) as orders,
        sum(amount_usd) as revenue_usd
    from {{ ref('stg_orders') }}
    group by customer_id, order_date
),

session_days as (
    select
        user_id as customer_id,
        session_date,
        count(*) as sessions
    from {{ ref('stg_sessions') }}
    group by user_id, session_date
),

before_calendar as (
    select
        order_days.customer_id,
        sum(order_days.orders) as orders,
        sum(order_days.revenue_usd) as revenue_usd,
        max(order_days.order_date) as last_order_date
    from order_days
    inner join customers on order_days.customer_id = customers.customer_id
    cross join bounds
    where order_days.order_date < greatest(bounds.first_date, date_sub(customers.signup_date, 29))
    group by order_days.customer_id
),

customer_days as (
    select
        calendar.calendar_date,
        customers.customer_id,
        coalesce(order_days.orders, 0) as orders,
        coalesce(order_days.revenue_usd, 0) as revenue_usd,
        order_days.order_date,
        coalesce(session_days.sessions, 0) as sessions
    from calendar
    cross join customers
    left join order_days
        on customers.customer_id = order_days.customer_id and calendar.calendar_date = order_days.order_date
    left join session_days
        on customers.customer_id = session_days.customer_id and calendar.calendar_date = session_days.session_date
    where calendar.calendar_date >= date_sub(customers.signup_date, 29)
),

running as (
    select
        calendar_date,
        customer_id,
        sum(orders) over (
            partition by customer_id order by calendar_date rows between unbounded preceding and current row
        ) as orders_in_calendar,
        sum(revenue_usd) over (
            partition by customer_id order by calendar_date rows between unbounded preceding and current row
        ) as revenue_usd_in_calendar,
        max(order_date) over (
            partition by customer_id order by calendar_date rows between unbounded preceding and current row
        ) as last_order_date_in_calendar,
        sum(orders) over (
            partition by customer_id order by calendar_date rows between 6 preceding and current row
        ) as orders_7d,
        sum(orders) over (
            partition by customer_id order by calendar_date rows between 29 preceding and current row
        ) as orders_30d,
        sum(revenue_usd) over (
            partition by customer_id order by calendar_date rows between 29 preceding and current row
        ) as revenue_usd_30d,
        sum(sessions) over (
            partition by customer_id order by calendar_date rows between 6 preceding and current row
        ) as sessions_7d,
        sum(sessions) over (
            partition by customer_id order by calendar_date rows between 29 preceding and current row
        ) as sessions_30d
    from customer_days
)

select
    days.snapshot_date,
    customers.customer_id,
    customers.country,
    datediff(days.snapshot_date, customers.signup_date) as tenure_days,
    coalesce(before_calendar.orders, 0) + running.orders_in_calendar as orders_lifetime,
    cast(coalesce(before_calendar.revenue_usd, 0) + running.revenue_usd_in_calendar as decimal(18, 2))
        as revenue_usd_lifetime,
    running.orders_7d,
    running.orders_30d,
    cast(running.revenue_usd_30d as decimal(18, 2)) as revenue_usd_30d,
    datediff(
        days.snapshot_date, coalesce(running.last_order_date_in_calendar, before_calendar.last_order_date)
    ) as days_since_last_order,
    running.sessions_7d,
    running.sessions_30d,
    (running.orders_7d > 0 or running.sessions_7d > 0) as is_active_7d
from days
inner join running on days.snapshot_date = running.calendar_date
inner join customers on running.customer_id = customers.customer_id
left join before_calendar on running.customer_id = before_calendar.customer_id
where customers.signup_date <= days.snapshot_date and {{ in_window('days.snapshot_date') }}
