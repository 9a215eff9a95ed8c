"""Profiles, traits, events, consent and segments on demo data, checked against independent truth.

One dbt build of the real project per module; every expected value is recomputed here from the
generator's frames (and identity's record map), never copied from the models under test.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from orchestration.demo.generator import TRUTH_COLUMN
from orchestration.demo.warehouse import load_raw
from tests.conftest import AS_OF, run_dbt
from tests.profiles import truth

NOW = AS_OF.replace(tzinfo=None)
SHIPPED_SEGMENTS = [
    "at_risk_customers",
    "high_value_customers",
    "new_signups_this_week",
    "support_heavy_customers",
    "trial_users_visited_pricing",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_demo):
    db_path = tmp_path_factory.mktemp("profiles") / "cdp.duckdb"
    load_raw(db_path, small_demo)
    run_dbt(
        db_path,
        "build",
        "--vars",
        json.dumps({"cdp_as_of": AS_OF.strftime("%Y-%m-%d")}),
    )
    return db_path


@pytest.fixture(scope="module")
def rc(built):
    return truth.record_customers(built)


@pytest.fixture(scope="module")
def customers(built):
    return truth.query(built, "select * from marts.customers")


@pytest.fixture(scope="module")
def pure(small_demo, rc, customers):
    """Customers identity resolved to exactly one true person, joined to that person's truth."""
    people = small_demo.people.select(
        TRUTH_COLUMN,
        pl.col("first_name").alias("true_first_name"),
        pl.col("last_name").alias("true_last_name"),
        pl.col("email").alias("true_email"),
        pl.col("work_email").alias("true_work_email"),
        pl.col("phone_e164").alias("true_phone"),
        pl.col("plan").alias("true_plan"),
    )
    frame = truth.pure_customers(small_demo, rc).join(people, on=TRUTH_COLUMN)
    return frame.join(customers, on="customer_id")


def test_one_profile_per_customer(customers, rc) -> None:
    assert customers["customer_id"].n_unique() == customers.height
    assert set(customers["customer_id"]) == set(rc["customer_id"])


def test_most_profiles_are_single_people(pure, customers) -> None:
    # the survivorship checks below run on these; identity quality is tested by identity
    assert pure.height >= 0.8 * customers.height


def test_names_survive_from_crm_then_billing_then_support(pure) -> None:
    named = pure.filter(
        pl.col("sources").list.set_intersection(["hubspot", "stripe", "zendesk", "app"]).list.len()
        > 0
    )
    assert named.height > 100
    assert named["first_name"].to_list() == named["true_first_name"].to_list()
    assert named["last_name"].to_list() == named["true_last_name"].to_list()
    # the winning source is the best-ranked source the customer has
    order = ["hubspot", "stripe", "zendesk", "app"]
    expected = [next(s for s in order if s in srcs) for srcs in named["sources"].to_list()]
    assert named["first_name_source"].to_list() == expected


def test_email_prefers_the_product_database(pure) -> None:
    with_app = pure.filter(pl.col("sources").list.contains("app"))
    assert with_app.height > 100
    assert with_app["email"].to_list() == with_app["true_email"].to_list()
    assert set(with_app["email_source"]) == {"app"}
    # without a product account the email comes from billing, the CRM or support: a true address
    others = pure.filter(~pl.col("sources").list.contains("app") & pl.col("email").is_not_null())
    assert others.height > 0
    assert all(
        e in (p, w)
        for e, p, w in others.select("email", "true_email", "true_work_email").iter_rows()
    )


def test_phone_is_the_true_number_in_e164(pure) -> None:
    phones = pure.filter(pl.col("phone").is_not_null())
    assert phones.height > 50
    assert phones["phone"].to_list() == phones["true_phone"].to_list()


def test_plan_comes_from_the_product(pure) -> None:
    with_app = pure.filter(pl.col("sources").list.contains("app"))
    assert with_app["plan"].to_list() == with_app["true_plan"].to_list()
    assert pure.filter(~pl.col("sources").list.contains("app"))["plan"].null_count() == (
        pure.filter(~pl.col("sources").list.contains("app")).height
    )


def _compare(customers: pl.DataFrame, expected: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The profile's columns beside the recomputed ones (prefixed exp_), by customer."""
    joined = customers.select("customer_id", *columns).join(
        expected.select("customer_id", *[pl.col(c).alias(f"exp_{c}") for c in columns]),
        on="customer_id",
        how="left",
    )
    return joined


def test_lifetime_value_and_order_count_match_polars(customers, small_demo, rc) -> None:
    expected = truth.order_traits(small_demo, rc)
    joined = _compare(customers, expected, ["order_count", "lifetime_value", "last_order_at"])
    joined = joined.with_columns(
        pl.col("exp_order_count").fill_null(0), pl.col("exp_lifetime_value").fill_null(0.0)
    )
    assert joined.filter(pl.col("exp_order_count") > 0).height > 100
    assert joined["order_count"].to_list() == joined["exp_order_count"].to_list()
    diff = (joined["lifetime_value"] - joined["exp_lifetime_value"]).abs().max()
    assert diff < 0.011
    assert joined["last_order_at"].to_list() == joined["exp_last_order_at"].to_list()


def test_ticket_traits_match_polars(customers, small_demo, rc) -> None:
    expected = truth.ticket_traits(small_demo, rc, NOW)
    joined = _compare(customers, expected, ["open_ticket_count", "tickets_90d"]).fill_null(0)
    assert joined["exp_open_ticket_count"].sum() > 0
    assert joined["open_ticket_count"].to_list() == joined["exp_open_ticket_count"].to_list()
    assert joined["tickets_90d"].to_list() == joined["exp_tickets_90d"].to_list()


def test_sessions_and_page_views_match_polars(customers, small_demo, rc) -> None:
    expected = truth.activity_traits(small_demo, rc, NOW)
    joined = _compare(customers, expected, ["sessions_30d", "page_views_30d"]).fill_null(0)
    assert joined["exp_sessions_30d"].sum() > 100
    assert joined["sessions_30d"].to_list() == joined["exp_sessions_30d"].to_list()
    assert joined["page_views_30d"].to_list() == joined["exp_page_views_30d"].to_list()


def test_rfm_scores_are_quintiles_of_buyers(customers) -> None:
    buyers = customers.filter(pl.col("order_count") > 0)
    assert customers.filter(pl.col("order_count") == 0)["rfm_score"].null_count() == (
        customers.filter(pl.col("order_count") == 0).height
    )
    for score, column in [
        ("recency_score", "last_order_at"),
        ("frequency_score", "order_count"),
        ("monetary_score", "lifetime_value"),
    ]:
        ranked = buyers.sort([column, "customer_id"])
        assert ranked[score].to_list() == truth.ntile(ranked.height, 5), score
    assert all(
        r == f"{a}{b}{c}"
        for r, a, b, c in buyers.select(
            "rfm_score", "recency_score", "frequency_score", "monetary_score"
        ).iter_rows()
    )


def test_engagement_level_follows_sessions(customers) -> None:
    levels = dict(zip(customers["customer_id"], customers["engagement_level"], strict=True))
    for cid, sessions in customers.select("customer_id", "sessions_30d").iter_rows():
        if sessions >= 3:
            assert levels[cid] == "high"
        elif sessions >= 1:
            assert levels[cid] == "medium"
    assert {"high", "medium", "none"} <= set(levels.values())


def test_consent_is_the_latest_decision(customers, small_demo, rc) -> None:
    expected = truth.latest_consent(small_demo, rc)
    joined = customers.select(
        "customer_id",
        "email_marketing_consent",
        "email_marketing_consent_source",
        "email_marketing_consent_at",
    ).join(expected, on="customer_id", how="left")
    decided = joined.filter(pl.col("granted").is_not_null())
    assert decided.height > 150
    assert decided["email_marketing_consent"].to_list() == decided["granted"].to_list()
    assert decided["email_marketing_consent_source"].to_list() == decided["source"].to_list()
    assert decided["email_marketing_consent_at"].to_list() == decided["decided_at"].to_list()
    # consent events are a real share of the decisions, and no decision means no consent
    assert "events" in set(decided["email_marketing_consent_source"])
    undecided = joined.filter(pl.col("granted").is_null())
    assert not any(undecided["email_marketing_consent"])


def test_consent_ledger_keeps_every_decision(built, small_demo, rc) -> None:
    ledger = truth.query(
        built, "select * from marts.consent_ledger where purpose = 'email_marketing'"
    )
    expected = truth.consent_decisions(small_demo, rc)
    assert ledger.height == expected.height
    sms = truth.query(built, "select count(*) as n from marts.consent_ledger where purpose = 'sms'")
    events = small_demo.tables["events.events"].filter(pl.col("event") == "Consent Updated")
    assert sms["n"][0] == events.height


def test_customer_events_is_the_whole_timeline(built, small_demo) -> None:
    events = truth.query(built, "select * from marts.customer_events")
    counts = dict(events.group_by("event_type").len().iter_rows())
    tables = small_demo.tables
    assert counts["order"] == tables["app.orders"].height
    assert counts["charge"] == tables["stripe.charges"].height
    assert counts["ticket"] == tables["zendesk.tickets"].height
    web = sum(v for k, v in counts.items() if k not in {"order", "charge", "ticket"})
    assert web == tables["events.events"].height
    assert events["customer_id"].null_count() == 0
    assert events["event_id"].n_unique() == events.height


def test_timeline_of_one_person_is_one_query(built, small_demo, rc) -> None:
    persons = truth.customer_persons(small_demo, rc)
    user = small_demo.tables["app.users"].row(0, named=True)
    cid = persons.filter(
        (pl.col(TRUTH_COLUMN) == user[TRUTH_COLUMN]) & (pl.col("source") == "app")
    )["customer_id"][0]
    timeline = truth.query(
        built,
        f"select * from marts.customer_events where customer_id = '{cid}' order by occurred_at",
    )
    orders = small_demo.tables["app.orders"].filter(pl.col("user_id") == user["id"])
    assert timeline.filter(pl.col("event_type") == "order").height == orders.height
    assert timeline["occurred_at"].is_sorted()


def test_every_shipped_segment_has_members(built) -> None:
    members = truth.query(
        built, "select segment, count(*) as n from marts.segment_memberships group by segment"
    )
    counts = dict(members.iter_rows())
    for segment in SHIPPED_SEGMENTS:
        assert counts.get(segment, 0) > 0, segment
        table = truth.query(built, f"select count(*) as n from segments.{segment}")
        assert table["n"][0] == counts[segment], segment
    entered = truth.query(built, "select distinct entered_at from marts.segment_memberships")
    assert entered["entered_at"].to_list() == [NOW]


def test_segments_carry_sync_columns(built) -> None:
    for segment in SHIPPED_SEGMENTS:
        cols = truth.query(built, f"select * from segments.{segment} limit 0").columns
        assert {"customer_id", "email", "first_name", "last_name", "phone"} <= set(cols)


def test_segment_members_match_recomputed_conditions(built, small_demo, rc) -> None:
    members = truth.query(built, "select segment, customer_id from marts.segment_memberships")

    def of(segment: str) -> set[str]:
        return set(members.filter(pl.col("segment") == segment)["customer_id"])

    orders = truth.order_traits(small_demo, rc)
    assert of("high_value_customers") == set(
        orders.filter(pl.col("lifetime_value") >= 200)["customer_id"]
    )
    tickets = truth.ticket_traits(small_demo, rc, NOW)
    assert of("support_heavy_customers") == set(
        tickets.filter((pl.col("tickets_90d") >= 3) | (pl.col("open_ticket_count") >= 2))[
            "customer_id"
        ]
    )
    users = truth.customer_of(
        rc, "stg_app__users", truth.naive(small_demo.tables["app.users"]), "id"
    )
    signups = users.group_by("customer_id").agg(pl.col("created_at").min())
    week_ago = NOW - dt.timedelta(days=7)
    assert of("new_signups_this_week") == set(
        signups.filter((pl.col("created_at") > week_ago) & (pl.col("created_at") <= NOW))[
            "customer_id"
        ]
    )


def test_rfm_and_pricing_segments_match_recomputed_conditions(built, small_demo, rc) -> None:
    members = truth.query(built, "select segment, customer_id from marts.segment_memberships")

    def of(segment: str) -> set[str]:
        return set(members.filter(pl.col("segment") == segment)["customer_id"])

    buyers = truth.order_traits(small_demo, rc).filter(pl.col("order_count") > 0)
    scores = {}
    for score, column in [
        ("r", "last_order_at"),
        ("f", "order_count"),
        ("m", "lifetime_value"),
    ]:
        ranked = buyers.sort([column, "customer_id"])
        scores[score] = dict(zip(ranked["customer_id"], truth.ntile(ranked.height, 5), strict=True))
    at_risk = {
        c
        for c in buyers["customer_id"]
        if scores["r"][c] <= 2 and (scores["f"][c] >= 3 or scores["m"][c] >= 3)
    }
    assert at_risk and of("at_risk_customers") == at_risk

    users = truth.customer_of(
        rc, "stg_app__users", truth.naive(small_demo.tables["app.users"]), "id"
    )
    trial = set(users.filter(pl.col("plan") == "trial")["customer_id"])
    events = truth.customer_of(
        rc, "stg_events__events", truth.naive(small_demo.tables["events.events"]), "message_id"
    )
    month_ago = NOW - dt.timedelta(days=30)
    pricing = set(
        events.filter(
            (pl.col("type") == "page")
            & (pl.col("page_path") == "/pricing")
            & (pl.col("timestamp") > month_ago)
            & (pl.col("timestamp") <= NOW)
        )["customer_id"]
    )
    assert trial & pricing and of("trial_users_visited_pricing") == trial & pricing


def test_survivorship_rules_are_declared_once(built) -> None:
    rules = truth.query(built, "select * from marts.survivorship_rules")
    survived = truth.query(
        built, "select distinct attribute, source from marts.int_profiles__attributes_survived"
    )
    declared = set(rules.select("attribute", "source").iter_rows())
    assert set(survived.iter_rows()) <= declared
    assert rules.select("attribute", "source").n_unique() == rules.height


def test_lineage_runs_from_sources_to_segments(built) -> None:
    """The manifest the build wrote (what dbt docs and Dagster read) links sources to segments.

    `dbt docs generate` itself runs over the whole project in tests/test_dbt_project.py.
    """
    manifest = json.loads((built.parent / "dbt_target" / "manifest.json").read_text())
    parents = manifest["parent_map"]

    def ancestors(node: str) -> set[str]:
        seen: set[str] = set()
        todo = [node]
        while todo:
            for parent in parents.get(todo.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    for segment in SHIPPED_SEGMENTS:
        up = ancestors(f"model.composable_cdp.{segment}")
        assert "model.composable_cdp.customers" in up
        assert "model.composable_cdp.int_identity__record_customers" in up
        assert {
            "source.composable_cdp.raw_stripe.charges",
            "source.composable_cdp.raw_app.users",
        } <= up
        node = manifest["nodes"][f"model.composable_cdp.{segment}"]
        assert "segment" in node["tags"]
        assert node["config"]["meta"]["owner"] and node["description"]


def test_every_chosen_value_traces_to_a_record_of_that_customer(built, rc) -> None:
    survived = truth.query(built, "select * from marts.int_profiles__attributes_survived")
    assert {"email", "phone", "first_name", "plan"} <= set(survived["attribute"])
    traced = survived.join(
        rc.rename({"customer_id": "record_customer_id"}),
        on=["record_model", "record_key"],
        how="left",
    )
    assert traced["record_customer_id"].null_count() == 0
    assert (traced["record_customer_id"] == traced["customer_id"]).all()
    # the profile shows the winners, and names their sources
    customers = truth.query(built, "select customer_id, email, email_source from marts.customers")
    emails = survived.filter(pl.col("attribute") == "email").select(
        "customer_id", pl.col("value").alias("won"), pl.col("source").alias("won_source")
    )
    joined = customers.join(emails, on="customer_id", how="left")
    assert joined["email"].to_list() == joined["won"].to_list()
    assert joined["email_source"].to_list() == joined["won_source"].to_list()
