-- Every version of every customer, PII masked: nothing below this model sees a raw email, phone or name.
with source as (
    select * from {{ source('silver', 'customers') }}
),

renamed as (
    select
        customer_id,
        {{ name_initials('first_name', 'last_name') }} as name_initials,
        {{ mask_email('email') }} as email_masked,
        {{ mask_phone('phone') }} as phone_masked,
        country,
        signup_date,
        valid_from,
        valid_to,
        is_current
    from source
)

select * from renamed
