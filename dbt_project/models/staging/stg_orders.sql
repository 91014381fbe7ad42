with source as (
    select * from {{ source('silver', 'orders') }}
),

renamed as (
    select
        order_id,
        customer_id,
        order_ts as ordered_at,
        order_date,
        product_id,
        category,
        quantity,
        amount,
        currency,
        amount_usd,
        status
    from source
)

select * from renamed
