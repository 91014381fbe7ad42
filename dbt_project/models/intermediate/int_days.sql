-- The days of the run's partition window that have any data (orders, signups or sessions).
with days as (
    select order_date as date_day from {{ ref('stg_orders') }}
    union
    select signup_date from {{ ref('stg_customers') }}
    union
    select session_date from {{ ref('stg_sessions') }}
)

select date_day
from days
where date_day is not null and {{ in_window('date_day') }}
