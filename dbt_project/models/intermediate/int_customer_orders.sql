-- Lifetime order figures per customer.
select
    customer_id,
    count(*) as orders_count,
    cast(sum(amount_usd) as decimal(18, 2)) as lifetime_value_usd,
    min(ordered_at) as first_order_at,
    max(ordered_at) as last_order_at,
    max(order_date) as last_order_date
from {{ ref('stg_orders') }}
group by customer_id
