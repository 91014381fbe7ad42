-- Recency / frequency / monetary quintiles (5 = best) and a named segment for every current
-- customer with at least one order, as of the last order day in Silver.
with customers as (
    select customer_id
    from {{ ref('stg_customers') }}
    where is_current
),

stats as (
    select stats.*
    from {{ ref('int_customer_orders') }} as stats
    inner join customers on stats.customer_id = customers.customer_id
),

as_of as (
    select max(order_date) as as_of_date from {{ ref('stg_orders') }}
),

measured as (
    select
        stats.customer_id,
        as_of.as_of_date,
        datediff(as_of.as_of_date, stats.last_order_date) as recency_days,
        stats.orders_count as frequency,
        stats.lifetime_value_usd as monetary_usd
    from stats
    cross join as_of
),

scored as (
    select
        *,
        ntile(5) over (order by recency_days desc, customer_id asc) as r_score,
        ntile(5) over (order by frequency, customer_id) as f_score,
        ntile(5) over (order by monetary_usd, customer_id) as m_score
    from measured
)

select
    customer_id,
    as_of_date,
    recency_days,
    frequency,
    monetary_usd,
    r_score,
    f_score,
    m_score,
    concat(r_score, f_score, m_score) as rfm_score,
    case
        when r_score >= 4 and f_score >= 4 and m_score >= 4 then 'champions'
        when r_score >= 3 and f_score >= 4 then 'loyal'
        when r_score >= 4 and f_score <= 2 then 'new_customers'
        when r_score <= 2 and f_score >= 3 then 'at_risk'
        when r_score <= 2 and f_score <= 2 then 'hibernating'
        else 'needs_attention'
    end as segment
from scored
