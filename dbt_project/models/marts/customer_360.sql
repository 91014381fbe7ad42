-- One row per current customer: masked profile, lifetime value, orders, sessions, tickets, segment.
with customers as (
    select *
    from {{ ref('stg_customers') }}
    where is_current
),

orders as (
    select * from {{ ref('int_customer_orders') }}
),

activity as (
    select * from {{ ref('int_customer_activity') }}
),

segments as (
    select
        customer_id,
        segment,
        rfm_score
    from {{ ref('rfm_segments') }}
)

select
    customers.customer_id,
    customers.name_initials,
    customers.email_masked,
    customers.phone_masked,
    customers.country,
    customers.signup_date,
    coalesce(orders.orders_count, 0) as orders_count,
    coalesce(orders.lifetime_value_usd, cast(0 as decimal(18, 2))) as lifetime_value_usd,
    orders.first_order_at,
    orders.last_order_at,
    coalesce(activity.sessions_count, 0) as sessions_count,
    activity.last_session_at,
    coalesce(activity.tickets_open, 0) as tickets_open,
    coalesce(activity.tickets_closed, 0) as tickets_closed,
    coalesce(segments.segment, 'no_orders') as segment,
    segments.rfm_score
from customers
left join orders on customers.customer_id = orders.customer_id
left join activity on customers.customer_id = activity.customer_id
left join segments on customers.customer_id = segments.customer_id
