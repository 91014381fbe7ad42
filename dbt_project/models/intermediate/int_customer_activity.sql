-- Sessions and support tickets per customer (empty until the streaming Silver tables exist).
with sessions as (
    select
        user_id as customer_id,
        count(*) as sessions_count,
        max(session_started_at) as last_session_at
    from {{ ref('stg_sessions') }}
    group by user_id
),

tickets as (
    select
        customer_id,
        sum(case when status <> 'closed' then 1 else 0 end) as tickets_open,
        sum(case when status = 'closed' then 1 else 0 end) as tickets_closed
    from {{ ref('stg_support_tickets') }}
    where not is_deleted
    group by customer_id
),

customers as (
    select customer_id from sessions
    union
    select customer_id from tickets
)

select
    customers.customer_id,
    coalesce(sessions.sessions_count, 0) as sessions_count,
    sessions.last_session_at,
    coalesce(tickets.tickets_open, 0) as tickets_open,
    coalesce(tickets.tickets_closed, 0) as tickets_closed
from customers
left join sessions on customers.customer_id = sessions.customer_id
left join tickets on customers.customer_id = tickets.customer_id
