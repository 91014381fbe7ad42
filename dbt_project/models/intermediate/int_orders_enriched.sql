-- Orders with the customer's country as of the order: the SCD2 version valid at ordered_at, or the
-- customer's first version for orders placed before it (a customer can order on its signup day
-- before the CRM export's timestamp).
-- Only the run's window: ranked per order, the window's filter cannot be pushed below the ranking, and
-- filtered afterwards each daily run ranked every order there is.
with orders as (
    select * from {{ ref('stg_orders') }}
    where {{ in_window('order_date') }}
),

versions as (
    select
        customer_id,
        country,
        valid_from
    from {{ ref('stg_customers') }}
),

ranked as (
    select
        orders.*,
        versions.country,
        row_number() over (
            partition by orders.order_id
            order by
                case when versions.valid_from <= orders.ordered_at then 0 else 1 end,
                case when versions.valid_from <= orders.ordered_at then versions.valid_from end desc,
                versions.valid_from
        ) as version_rank
    from orders
    left join versions on orders.customer_id = versions.customer_id
)

select
    order_id,
    customer_id,
    ordered_at,
    order_date,
    product_id,
    category,
    quantity,
    amount,
    currency,
    amount_usd,
    status,
    country
from ranked
where version_rank = 1
