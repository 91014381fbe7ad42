with source as (
    select * from {{ source('silver', 'support_tickets') }}
),

renamed as (
    select
        ticket_id,
        customer_id,
        lower(status) as status,
        coalesce(is_deleted, false) as is_deleted
    from source
)

select * from renamed
