with source as (
    select * from {{ source('silver', 'sessions') }}
),

renamed as (
    select
        user_id,
        session_start as session_started_at,
        session_end as session_ended_at,
        to_date(session_start) as session_date,
        cast(unix_timestamp(session_end) - unix_timestamp(session_start) as bigint) as session_length_seconds,
        page_count,
        coalesce(is_bounce, false) as is_bounce
    from source
)

select * from renamed
