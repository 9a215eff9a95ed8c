{#- Generic data test: no customer holds more values of a type than the type's max_per_customer
    (identity_id_types var). Used on marts.customer_identifiers. -#}
{% test identity_limits_hold(model, customer_column='customer_id', type_column='id_type') %}
    select
        {{ customer_column }} as customer_id,
        {{ type_column }} as id_type,
        count(*) as values_held
    from {{ model }}
    group by {{ customer_column }}, {{ type_column }}
    having count(*) > {{ identity_max_per_customer(type_column) }}
{% endtest %}
