{#- What an incremental run of int_identity__components_unchecked redoes, and how.

    The new links of this load are grouped into clusters, each existing component counting as one
    node (a small connected-components run over the new links only). Then every existing component
    a cluster or a first sighting reaches is either
      - re-stitched (connected components again, and every downstream model redoes it whole): a
        cluster reaching two components (a merge) or none (a new customer), a new identifier of a
        once-per-customer type, a link with a shared end (a newly shared identifier leaves its
        component), a new identifier into a component the once-per-customer rule split, or a
        component rewritten since the last identity run that finished;
      - reordered (kept as it is, new identifiers added; its customer, anchor and ranks are
        redone, but its identifiers keep their customer, so records are not): a new identifier
        that would rename the component (named by its smallest node_id), come before its anchor
        or take a group over its type's limit, or an identifier first seen earlier than known that
        may become the anchor or sits in a group over its limit;
      - or left alone, its new identifiers attached (downstream takes each alone: its customer is
        the component's, its rank 1).
    An identifier first seen earlier than known in a component left alone orders nothing; the
    downstream refresh of identifiers seen again updates it. Links within one component change
    nothing.

    Writes connection-local tables the model reads (its post-hook drops them):
      int_identity__components_unchecked__region (node_id): the identifiers to re-stitch;
      int_identity__components_unchecked__kept (node_id, component_id, reordered): the others.
    `state` maps the downstream model names to their relations, read as the last run left them
    (like the registry). -#}
{% macro identity_attach_region(watermark_sql, state) %}
    {%- set work = 'int_identity__components_unchecked' %}
    {%- set t = 'temp.main.' ~ work %}
    {#- identity_completed_watermark(), read here without a ref to this model itself -#}
    {%- set runs = adapter.get_relation(database=this.database, schema=this.schema, identifier='int_identity__runs') %}
    {%- set completed = identity_watermark(runs, 'watermark') %}
    {%- set components = state['int_identity__components'] %}
    {%- set customer_ids = state['int_identity__customer_ids'] %}
    {%- set ranked = state['int_identity__customer_identifiers_ranked'] %}
    {% call statement('identity_region_seeds') %}
        -- links first made by this load
        create or replace temp table {{ work }}__new_edges as
        select node_a, node_b
        from {{ ref('int_identity__edges') }}
        where first_loaded_at > {{ watermark_sql }};

        -- identifiers this load created (component_id null) or saw earlier than known
        create or replace temp table {{ work }}__reshaped as
        select i.node_id, i.id_type, i.max_per_customer, i.first_seen_at, u.component_id
        from {{ ref('int_identity__identifiers') }} as i
        left join {{ this }} as u on u.node_id = i.node_id
        where i.shape_loaded_at > {{ watermark_sql }};

        -- the ends of the new links and their components before this run (null: new)
        create or replace temp table {{ work }}__ends as
        select
            n.node_id,
            u.component_id,
            n.node_id in (select node_id from {{ ref('int_identity__shared_identifiers') }}) as is_shared
        from (
            select node_a as node_id from {{ t }}__new_edges
            union
            select node_b from {{ t }}__new_edges
        ) as n
        left join {{ this }} as u on u.node_id = n.node_id;

        -- the new links between keys: an existing component (its component_id) or a new
        -- identifier (itself)
        create or replace temp table {{ work }}__links as
        select
            coalesce(a.component_id, a.node_id) as key_a,
            coalesce(b.component_id, b.node_id) as key_b,
            a.is_shared or b.is_shared as has_shared_end
        from {{ t }}__new_edges as e
        inner join {{ t }}__ends as a on a.node_id = e.node_a
        inner join {{ t }}__ends as b on b.node_id = e.node_b
    {% endcall %}

    {#- clusters of new links; a link with a shared end never links anything -#}
    {%- set link_edges_sql %}
        select key_a as node_a, key_b as node_b from {{ t }}__links where not has_shared_end
    {%- endset %}
    {%- set clusters = identity_connected_components(link_edges_sql, work ~ '__links') %}

    {% call statement('identity_region') %}
        -- every key on a new link (an existing component or a new identifier) and its cluster,
        -- named by its smallest key
        create or replace temp table {{ work }}__keys as
        select k.key, k.is_old, coalesce(c.component_id, k.key) as cluster, r.max_per_customer
        from (
            select distinct
                coalesce(component_id, node_id) as key,
                component_id is not null as is_old
            from {{ t }}__ends
        ) as k
        left join {{ clusters }} as c on c.node_id = k.key
        left join {{ t }}__reshaped as r on r.node_id = k.key and not k.is_old;

        -- components to re-stitch (with the new identifiers of their clusters)
        create or replace temp table {{ work }}__restitch as
        with

        clusters as (
            select
                cluster,
                count(*) filter (where is_old) as old_components,
                count(*) filter (where not is_old) as new_identifiers,
                bool_or(not is_old and max_per_customer = 1) as brings_once_per_customer
            from {{ t }}__keys
            group by cluster
        ),

        shared_links as (
            select key_a, key_b from {{ t }}__links where has_shared_end
        ),

        forced as (
            -- a link with a shared end: a newly shared identifier leaves its component
            select key_a as key from shared_links
            union all
            select key_b from shared_links
            union all
            -- a component any row of which was rewritten since the last finished run (that run
            -- may have attached identifiers the downstream state does not know yet): redone whole
            select distinct u.component_id from {{ this }} as u
            where u.watermark > {{ completed }}
                and (
                    u.component_id in (select key from {{ t }}__keys where is_old)
                    or u.component_id in (select component_id from {{ t }}__reshaped)
                )
            union all
            -- new identifiers into a component split by the once-per-customer rule: they may
            -- join its kept parts
            select u.component_id
            from {{ components }} as c
            inner join {{ this }} as u on u.node_id = c.node_id
            where c.holdback_reason = 'conflicting_anchors'
                and u.component_id in (
                    select k.key from {{ t }}__keys as k
                    inner join clusters as cl on cl.cluster = k.cluster
                    where k.is_old and cl.new_identifiers > 0
                )
            union all
            -- a merge, a new customer, or a new once-per-customer identifier
            select k.key from {{ t }}__keys as k
            inner join clusters as cl on cl.cluster = k.cluster
            where cl.old_components <> 1 or cl.brings_once_per_customer
        )

        select distinct k.key
        from {{ t }}__keys as k
        where k.cluster in (
            select cluster from {{ t }}__keys where key in (select key from forced)
        )
        union
        select key from forced;

        -- components kept as they are but whose anchor or ranks are redone (reordered), and new
        -- identifiers attached alone
        create or replace temp table {{ work }}__reorder as
        with

        -- new identifiers of clusters reaching exactly one existing component not re-stitched
        candidates as (
            select
                k.key as node_id,
                o.key as component_id,
                r.node_id is not null as is_known,
                r.id_type,
                r.max_per_customer,
                r.first_seen_at
            from {{ t }}__keys as k
            inner join {{ t }}__keys as o on o.cluster = k.cluster and o.is_old
            left join {{ t }}__reshaped as r on r.node_id = k.key
            where not k.is_old
                and k.cluster not in (
                    select k2.cluster from {{ t }}__keys as k2
                    where k2.key in (select key from {{ t }}__restitch)
                )
        ),

        anchors as (
            select ci.component_id, a.first_seen_at
            from {{ customer_ids }} as ci
            inner join {{ ref('int_identity__identifiers') }} as a
                on a.node_id = {{ identity_node_id('ci.anchor_type', 'ci.anchor_value') }}
            where ci.component_id in (select component_id from candidates)
        ),

        held as (
            select u.component_id, r.id_type, count(*) as identifiers
            from {{ this }} as u
            inner join {{ ranked }} as r on r.node_id = u.node_id
            where u.component_id in (select component_id from candidates)
            group by u.component_id, r.id_type
        ),

        added as (
            select component_id, id_type, min(max_per_customer) as max_per_customer, count(*) as identifiers
            from candidates
            group by component_id, id_type
        ),

        -- identifiers first seen earlier than known, with their customer as the last run left it
        moved as (
            select
                m.node_id,
                m.first_seen_at,
                m.component_id,
                ci.component_id as customer_component,
                a.first_seen_at as anchor_first_seen_at,
                r.node_id as ranked_node,
                r.customer_id,
                r.id_type
            from {{ t }}__reshaped as m
            inner join {{ components }} as f on f.node_id = m.node_id
            left join {{ customer_ids }} as ci on ci.component_id = f.component_id
            left join {{ ref('int_identity__identifiers') }} as a
                on a.node_id = {{ identity_node_id('ci.anchor_type', 'ci.anchor_value') }}
            left join {{ ranked }} as r on r.node_id = m.node_id
            where m.component_id is not null
                and m.component_id not in (select key from {{ t }}__restitch)
                and f.holdback_reason is null
        ),

        over_limit as (
            select distinct customer_id, id_type from {{ ranked }} where not within_limit
        )

        -- a new identifier that would rename the component or come before its anchor (or, never
        -- expected, one the identifiers do not list as new: checked rather than trusted)
        select c.component_id
        from candidates as c
        left join anchors as a on a.component_id = c.component_id
        where not coalesce(
            c.is_known
            and c.node_id > c.component_id
            and a.first_seen_at is not null
            and (c.first_seen_at is null or c.first_seen_at > a.first_seen_at),
            false
        )
        union
        -- new identifiers that would take a group over its limit
        select ad.component_id
        from added as ad
        left join held as h on h.component_id = ad.component_id and h.id_type = ad.id_type
        where ad.identifiers + coalesce(h.identifiers, 0) > ad.max_per_customer
        union
        -- a first sighting that may make a new anchor or reorder a group over its limit
        select m.component_id
        from moved as m
        where m.customer_component is null
            or m.anchor_first_seen_at is null
            or m.first_seen_at is null
            or m.first_seen_at <= m.anchor_first_seen_at
            or m.ranked_node is null
            or exists (
                select 1 from over_limit as o
                where o.customer_id = m.customer_id and o.id_type = m.id_type
            );

        create or replace temp table {{ work }}__region as
        select node_id from {{ this }}
        where component_id in (select key from {{ t }}__restitch)
        union
        -- an anti-join probing the table with the few keys (NOT IN would hash all its node_ids)
        select r.key from {{ t }}__restitch as r
        where not exists (select 1 from {{ this }} as c where c.node_id = r.key)
        union
        -- new identifiers on no link (a lone first sighting)
        select node_id from {{ t }}__reshaped
        where component_id is null and node_id not in (select node_id from {{ t }}__ends);

        -- rows written as they are (component_id: the cluster's smallest key, which a new
        -- identifier may be): reordered ones whole, attached ones alone
        create or replace temp table {{ work }}__kept as
        select u.node_id, coalesce(k.cluster, u.component_id) as component_id, true as reordered
        from {{ this }} as u
        left join {{ t }}__keys as k on k.key = u.component_id
        where u.component_id in (select component_id from {{ t }}__reorder)
        union all
        select k.key, k.cluster, o.key in (select component_id from {{ t }}__reorder)
        from {{ t }}__keys as k
        inner join {{ t }}__keys as o on o.cluster = k.cluster and o.is_old
        where not k.is_old
            and k.key not in (select key from {{ t }}__restitch)
    {% endcall %}
{% endmacro %}
