"""Independent recomputation of profile facts from the generator's frames, for the profile tests.

Nothing here reads a dbt model of issue 5: records are tied to customers through identity's
record map only, and every trait is recomputed with polars from the generated source frames.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import polars as pl

from orchestration.demo.generator import TRUTH_COLUMN, DemoData

# (staging model, generator table, record key column) of every identity-bearing record
RECORD_SOURCES = [
    ("stg_app__users", "app.users", "id", "app"),
    ("stg_hubspot__contacts", "hubspot.contacts", "id", "hubspot"),
    ("stg_stripe__customers", "stripe.customers", "id", "stripe"),
    ("stg_zendesk__users", "zendesk.users", "id", "zendesk"),
    ("stg_events__events", "events.events", "message_id", "events"),
    ("stg_mailchimp__members", "mailchimp.members", "member_key", "mailchimp"),
    ("stg_klaviyo__profiles", "klaviyo.profiles", "id", "klaviyo"),
]
OPEN_TICKET_STATUSES = ["new", "open", "pending", "hold"]


def naive(frame: pl.DataFrame) -> pl.DataFrame:
    """Warehouse timestamps are naive UTC; compare like with like."""
    return frame.with_columns(pl.col(pl.Datetime).dt.replace_time_zone(None))


def query(db_path, sql: str) -> pl.DataFrame:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def record_customers(db_path) -> pl.DataFrame:
    return query(
        db_path,
        "select record_model, record_key, customer_id from identity.int_identity__record_customers",
    )


def keyed(data: DemoData, table: str, key: str) -> pl.DataFrame:
    """A generator frame with its record key as the warehouse's varchar record_key."""
    return naive(data.tables[table]).with_columns(record_key=pl.col(key).cast(pl.Utf8))


def customer_of(rc: pl.DataFrame, model: str, frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """Attach customer_id to rows whose parent record (column ``key``) is a record of ``model``."""
    mapping = rc.filter(pl.col("record_model") == model).select(
        pl.col("record_key").alias("_parent_key"), "customer_id"
    )
    return frame.with_columns(_parent_key=pl.col(key).cast(pl.Utf8)).join(
        mapping, on="_parent_key", how="left"
    )


def customer_persons(data: DemoData, rc: pl.DataFrame) -> pl.DataFrame:
    """customer_id -> the set of true people whose records identity put in it."""
    parts = []
    for model, table, key, source in RECORD_SOURCES:
        frame = keyed(data, table, key).select("record_key", TRUTH_COLUMN)
        parts.append(
            frame.join(rc.filter(pl.col("record_model") == model), on="record_key").select(
                "customer_id", TRUTH_COLUMN, pl.lit(source).alias("source")
            )
        )
    return pl.concat(parts)


def pure_customers(data: DemoData, rc: pl.DataFrame) -> pl.DataFrame:
    """Customers whose records all belong to one true person, with that person and their sources."""
    links = customer_persons(data, rc)
    per = links.group_by("customer_id").agg(
        pl.col(TRUTH_COLUMN).n_unique().alias("n_people"),
        pl.col(TRUTH_COLUMN).first().alias(TRUTH_COLUMN),
        pl.col("source").unique().sort().alias("sources"),
    )
    return per.filter(pl.col("n_people") == 1).drop("n_people")


def purchases(data: DemoData, rc: pl.DataFrame) -> pl.DataFrame:
    """Counted purchases: completed product orders and succeeded, unrefunded charges."""
    orders = customer_of(rc, "stg_app__users", naive(data.tables["app.orders"]), "user_id")
    orders = orders.filter(pl.col("status") == "completed").select(
        "customer_id", pl.col("amount").alias("revenue"), pl.col("created_at").alias("at")
    )
    charges = customer_of(
        rc, "stg_stripe__customers", naive(data.tables["stripe.charges"]), "customer"
    )
    charges = charges.filter(pl.col("paid") & ~pl.col("refunded")).select(
        "customer_id",
        (pl.col("amount") / 100.0).alias("revenue"),
        pl.col("created").alias("at"),
    )
    return pl.concat([orders, charges])


def order_traits(data: DemoData, rc: pl.DataFrame) -> pl.DataFrame:
    return (
        purchases(data, rc)
        .group_by("customer_id")
        .agg(
            pl.len().alias("order_count"),
            pl.col("revenue").sum().round(2).alias("lifetime_value"),
            pl.col("at").max().alias("last_order_at"),
        )
    )


def ticket_traits(data: DemoData, rc: pl.DataFrame, as_of: dt.datetime) -> pl.DataFrame:
    tickets = customer_of(
        rc, "stg_zendesk__users", naive(data.tables["zendesk.tickets"]), "requester_id"
    )
    since = as_of - dt.timedelta(days=90)
    return tickets.group_by("customer_id").agg(
        pl.col("status").is_in(OPEN_TICKET_STATUSES).sum().alias("open_ticket_count"),
        (pl.col("created_at") > since).sum().alias("tickets_90d"),
    )


def activity_traits(data: DemoData, rc: pl.DataFrame, as_of: dt.datetime) -> pl.DataFrame:
    """Page views and 30-minute-gap sessions in the 30 days up to as_of."""
    events = customer_of(
        rc, "stg_events__events", naive(data.tables["events.events"]), "message_id"
    )
    events = events.filter(pl.col("timestamp") <= as_of).sort("customer_id", "timestamp")
    starts = events.with_columns(prev=pl.col("timestamp").shift(1).over("customer_id")).filter(
        pl.col("prev").is_null() | (pl.col("timestamp") - pl.col("prev") > dt.timedelta(minutes=30))
    )
    since = as_of - dt.timedelta(days=30)
    sessions = (
        starts.filter(pl.col("timestamp") > since)
        .group_by("customer_id")
        .agg(pl.len().alias("sessions_30d"))
    )
    views = (
        events.filter((pl.col("timestamp") > since) & pl.col("type").is_in(["page", "screen"]))
        .group_by("customer_id")
        .agg(pl.len().alias("page_views_30d"))
    )
    return sessions.join(views, on="customer_id", how="full", coalesce=True).fill_null(0)


def consent_decisions(data: DemoData, rc: pl.DataFrame) -> pl.DataFrame:
    """Every email-marketing decision: app opt-in, CRM opt-out (inverted), consent events,
    email-tool unsubscribes and non-API subscriptions (Mailchimp, Klaviyo)."""
    app = customer_of(rc, "stg_app__users", naive(data.tables["app.users"]), "id").select(
        "customer_id",
        pl.col("marketing_opt_in").alias("granted"),
        pl.col("updated_at").alias("decided_at"),
        pl.lit("app").alias("source"),
        pl.lit(3).alias("rank"),
    )
    crm = customer_of(
        rc, "stg_hubspot__contacts", naive(data.tables["hubspot.contacts"]), "id"
    ).select(
        "customer_id",
        (~pl.col("hs_email_optout")).alias("granted"),
        pl.col("lastmodifieddate").alias("decided_at"),
        pl.lit("hubspot").alias("source"),
        pl.lit(2).alias("rank"),
    )
    events = naive(data.tables["events.events"]).filter(pl.col("event") == "Consent Updated")
    events = customer_of(rc, "stg_events__events", events, "message_id").with_columns(
        granted=pl.col("properties").map_elements(
            lambda p: json.loads(p)["categories"]["email_marketing"], return_dtype=pl.Boolean
        )
    )
    events = events.select(
        "customer_id",
        "granted",
        pl.col("timestamp").alias("decided_at"),
        pl.lit("events").alias("source"),
        pl.lit(1).alias("rank"),
    )
    members = customer_of(
        rc, "stg_mailchimp__members", naive(data.tables["mailchimp.members"]), "member_key"
    )
    subscribed = pl.col("status") == "subscribed"
    mailchimp = members.filter(
        (pl.col("status") == "unsubscribed") | (subscribed & (pl.col("source") != "API - Generic"))
    ).select(
        "customer_id",
        subscribed.alias("granted"),
        pl.when(subscribed)
        .then(pl.coalesce("timestamp_opt", "last_changed"))
        .otherwise(pl.col("last_changed"))
        .alias("decided_at"),
        pl.lit("mailchimp").alias("source"),
        pl.lit(3).alias("rank"),
    )
    profiles = customer_of(
        rc, "stg_klaviyo__profiles", naive(data.tables["klaviyo.profiles"]), "id"
    )
    state = pl.col("email_marketing_consent")
    klaviyo = profiles.filter(
        (state == "UNSUBSCRIBED")
        | ((state == "SUBSCRIBED") & (pl.col("email_marketing_method") != "API"))
    ).select(
        "customer_id",
        (state == "SUBSCRIBED").alias("granted"),
        pl.col("email_marketing_consent_timestamp").alias("decided_at"),
        pl.lit("klaviyo").alias("source"),
        pl.lit(3).alias("rank"),
    )
    return pl.concat([app, crm, events, mailchimp, klaviyo])


def latest_consent(data: DemoData, rc: pl.DataFrame) -> pl.DataFrame:
    return (
        consent_decisions(data, rc)
        .sort(["customer_id", "decided_at", "rank"], descending=[False, True, False])
        .group_by("customer_id", maintain_order=True)
        .first()
    )


def ntile(n_rows: int, buckets: int) -> list[int]:
    """SQL ntile(): the first n % buckets buckets get one extra row."""
    size, extra = divmod(n_rows, buckets)
    out: list[int] = []
    for bucket in range(1, buckets + 1):
        out += [bucket] * (size + (1 if bucket <= extra else 0))
    return out
