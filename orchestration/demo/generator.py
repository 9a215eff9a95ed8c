"""Seeded, reproducible demo data: a fictional company whose people appear across sources.

The same person shows up in the product database, the CRM, billing, the support desk and the
web/app event stream, with the noise real data has: case and whitespace variants of emails,
phone formatting variants, missing fields, people with a second (work) email, anonymous
visitors who later log in, family devices shared by two logged-in users, duplicate CRM contacts,
and junk values (``test@test.com``, ``n/a``, ``0000000000``) reused by unrelated people.

Every frame carries ``_person_id``, the ground truth. The pipeline never reads it: fakes and file
writers drop it, tests and benchmarks use it to score identity resolution.

Generation is vectorized (numpy + polars) so a million people take seconds, not minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import numpy as np
import polars as pl

TRUTH_COLUMN = "_person_id"

FIRST_NAMES = np.array(
    "Ada Alan Grace Linus Margaret Dennis Barbara Ken Frances Edsger Radia Tim Katherine John "
    "Hedy Claude Annie Niklaus Sophie Guido Mary Donald Lynn Bjarne Joan Vint Shafi Leslie Anita "
    "Yukihiro Evelyn Rasmus Carol Brendan Jean Larry Susan Sergey Ruth James".split()
)
LAST_NAMES = np.array(
    "Lovelace Turing Hopper Torvalds Hamilton Ritchie Liskov Thompson Allen Dijkstra Perlman "
    "Berners-Lee Johnson McCarthy Lamarr Shannon Easley Wirth Wilson Rossum Keller Knuth Conway "
    "Stroustrup Clarke Cerf Goldwasser Lamport Borg Matsumoto Boykin Lerdorf Shaw Eich Sammet "
    "Page Kare Brin Nussbaum Gosling".split()
)
EMAIL_DOMAINS = np.array(["example.com", "mail.test", "inbox.example", "post.example.org"])
WORK_DOMAINS = np.array(["acme.example", "globex.example", "initech.example", "umbrella.example"])
PAGES = np.array(["/", "/pricing", "/docs", "/blog/warehouse-native", "/features", "/signup"])
PAGE_WEIGHTS = np.array([0.3, 0.15, 0.2, 0.1, 0.15, 0.1])
PLANS = np.array(["free", "trial", "pro", "enterprise"])
PLAN_WEIGHTS = np.array([0.45, 0.2, 0.3, 0.05])
TICKET_STATUSES = np.array(["new", "open", "pending", "solved", "closed"])
TICKET_WEIGHTS = np.array([0.1, 0.15, 0.1, 0.3, 0.35])
LIFECYCLE = np.array(["subscriber", "lead", "marketingqualifiedlead", "opportunity", "customer"])

JUNK_EMAIL = "test@test.com"
JUNK_PHONE = "0000000000"
JUNK_TEXT = "n/a"


@dataclass
class DemoData:
    """Every source as a flat polars frame (with the truth column), plus the truth itself."""

    seed: int
    as_of: dt.datetime
    people: pl.DataFrame
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)

    def source(self, name: str) -> pl.DataFrame:
        """A source frame as a system would hold it: without the ground truth."""
        return self.tables[name].drop(TRUTH_COLUMN)

    @property
    def n_records(self) -> int:
        return sum(df.height for df in self.tables.values())


def default_as_of() -> dt.datetime:
    today = dt.datetime.now(dt.UTC).date()
    return dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC)


def _pick(rng: np.random.Generator, values: np.ndarray, n: int, p=None) -> np.ndarray:
    return values[rng.choice(len(values), size=n, p=p)]


def _ts(as_of: dt.datetime, seconds_ago: np.ndarray) -> pl.Series:
    base = np.datetime64(as_of.replace(tzinfo=None), "us")
    values = base - (seconds_ago.astype("int64") * 1_000_000).astype("timedelta64[us]")
    return pl.Series(values).dt.replace_time_zone("UTC")


def _email_variant(rng: np.random.Generator, emails: pl.Series, rate: float) -> pl.Series:
    """Upper-case, title-case or pad a share of emails, as hand-typed data does."""
    n = emails.len()
    kind = rng.choice(4, size=n, p=[1 - rate, rate / 3, rate / 3, rate / 3])
    df = pl.DataFrame({"e": emails, "k": kind})
    return df.select(
        pl.when(pl.col("k") == 1)
        .then(pl.col("e").str.to_uppercase())
        .when(pl.col("k") == 2)
        .then(pl.lit("  ") + pl.col("e").str.to_titlecase() + pl.lit(" "))
        .when(pl.col("k") == 3)
        .then(pl.col("e").str.slice(0, 1).str.to_uppercase() + pl.col("e").str.slice(1))
        .otherwise(pl.col("e"))
    ).to_series()


def _phone_variant(rng: np.random.Generator, digits: pl.Series) -> pl.Series:
    """Format 10-digit US numbers the many ways people type them."""
    n = digits.len()
    kind = rng.integers(0, 5, size=n)
    a, b, c = digits.str.slice(0, 3), digits.str.slice(3, 3), digits.str.slice(6, 4)
    df = pl.DataFrame({"d": digits, "a": a, "b": b, "c": c, "k": kind})
    return df.select(
        pl.when(pl.col("k") == 0)
        .then(pl.lit("+1") + pl.col("d"))
        .when(pl.col("k") == 1)
        .then(pl.format("({}) {}-{}", "a", "b", "c"))
        .when(pl.col("k") == 2)
        .then(pl.format("{}.{}.{}", "a", "b", "c"))
        .when(pl.col("k") == 3)
        .then(pl.format("{}-{}-{}", "a", "b", "c"))
        .otherwise(pl.format("1 {} {} {}", "a", "b", "c"))
    ).to_series()


def _null_where(series: pl.Series, mask: np.ndarray) -> pl.Series:
    return (
        pl.DataFrame({"v": series, "m": mask})
        .select(pl.when(pl.col("m")).then(None).otherwise(pl.col("v")).alias(series.name))
        .to_series()
    )


def _explode_counts(ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.repeat(ids, counts)


def generate(n_people: int = 1000, seed: int = 42, as_of: dt.datetime | None = None) -> DemoData:
    """Generate ``n_people`` known people plus anonymous-only visitors, deterministically."""
    rng = np.random.default_rng(seed)
    as_of = as_of or default_as_of()
    n = n_people
    pid = np.arange(1, n + 1, dtype=np.int64)
    two_years = 730 * 86400

    first = _pick(rng, FIRST_NAMES, n)
    last = _pick(rng, LAST_NAMES, n)
    domain = _pick(rng, EMAIL_DOMAINS, n)
    signup_ago = rng.integers(3600, two_years, size=n)
    # a slice of people signed up in the last week, so "new this week" has members
    recent = rng.random(n) < 0.04
    signup_ago[recent] = rng.integers(3600, 6 * 86400, size=recent.sum())

    people = pl.DataFrame(
        {
            TRUTH_COLUMN: pid,
            "first_name": first,
            "last_name": last,
            "domain": domain,
            "work_domain": _pick(rng, WORK_DOMAINS, n),
            "signup_ago": signup_ago,
        }
    ).with_columns(
        email=pl.format(
            "{}.{}{}@{}",
            pl.col("first_name").str.to_lowercase(),
            pl.col("last_name").str.to_lowercase().str.replace_all("-", ""),
            pl.col(TRUTH_COLUMN),
            pl.col("domain"),
        ),
        work_email=pl.format(
            "{}{}@{}",
            pl.col("first_name").str.to_lowercase().str.slice(0, 1),
            pl.col(TRUTH_COLUMN),
            pl.col("work_domain"),
        ),
        phone_digits=(pl.col(TRUTH_COLUMN) + 2_010_000_000).cast(pl.Utf8),
        has_app=pl.Series(rng.random(n) < 0.7),
        has_crm=pl.Series(rng.random(n) < 0.55),
        has_support=pl.Series(rng.random(n) < 0.3),
        has_work_email=pl.Series(rng.random(n) < 0.15),
        email_consent=pl.Series(rng.random(n) < 0.6),
        plan=pl.Series(_pick(rng, PLANS, n, PLAN_WEIGHTS)),
    )
    has_app = people["has_app"].to_numpy()
    # billing is mostly people with a product account
    has_billing = np.where(has_app, rng.random(n) < 0.6, rng.random(n) < 0.1)
    people = people.with_columns(
        has_billing=pl.Series(has_billing),
        phone_e164=pl.lit("+1") + pl.col("phone_digits"),
        created_at=_ts(as_of, signup_ago),
    )
    tables: dict[str, pl.DataFrame] = {}

    # -- product database: users and orders -------------------------------------------------
    app = people.filter(pl.col("has_app"))
    na = app.height
    app_user_ids = np.arange(1001, 1001 + na, dtype=np.int64)
    app_phone = _phone_variant(rng, app["phone_digits"])
    app_phone = _null_where(app_phone, rng.random(na) < 0.5)
    junk_phone = rng.random(na) < 0.01
    app_phone = (
        pl.DataFrame({"p": app_phone, "j": junk_phone})
        .select(pl.when(pl.col("j")).then(pl.lit(JUNK_PHONE)).otherwise(pl.col("p")))
        .to_series()
    )
    app_updated_ago = np.minimum(app["signup_ago"].to_numpy(), rng.integers(60, 90 * 86400, na))
    users = pl.DataFrame(
        {
            "id": app_user_ids,
            "email": _email_variant(rng, app["email"], 0.1),
            "phone": app_phone,
            "first_name": app["first_name"],
            "last_name": app["last_name"],
            "plan": app["plan"],
            "marketing_opt_in": app["email_consent"],
            "created_at": app["created_at"],
            "updated_at": _ts(as_of, app_updated_ago),
            TRUTH_COLUMN: app[TRUTH_COLUMN],
        }
    )
    tables["app.users"] = users
    person_to_user = dict(zip(app[TRUTH_COLUMN].to_list(), app_user_ids.tolist(), strict=True))

    order_counts = rng.poisson(1.5, size=na)
    order_counts[app["plan"].to_numpy() == "free"] //= 3
    o_user = _explode_counts(app_user_ids, order_counts)
    o_person = _explode_counts(app[TRUTH_COLUMN].to_numpy(), order_counts)
    o_signup = _explode_counts(app["signup_ago"].to_numpy(), order_counts)
    no = len(o_user)
    o_ago = (o_signup * rng.random(no)).astype(np.int64) + 60
    tables["app.orders"] = pl.DataFrame(
        {
            "id": np.arange(500_001, 500_001 + no, dtype=np.int64),
            "user_id": o_user,
            "amount": np.round(rng.lognormal(3.8, 0.8, no), 2),
            "currency": np.full(no, "usd"),
            "status": _pick(
                rng, np.array(["completed", "refunded", "pending"]), no, [0.9, 0.05, 0.05]
            ),
            "created_at": _ts(as_of, o_ago),
            "updated_at": _ts(as_of, np.maximum(o_ago - 3600, 1)),
            TRUTH_COLUMN: o_person,
        }
    )

    # -- CRM (HubSpot): contacts and companies ----------------------------------------------
    companies = pl.DataFrame(
        {
            "id": [str(7_000_001 + i) for i in range(max(1, n // 20))],
        }
    ).with_columns(
        name=pl.format("Company {}", pl.int_range(1, pl.len() + 1)),
        domain=pl.format("company{}.example", pl.int_range(1, pl.len() + 1)),
    )
    nc_comp = companies.height
    comp_ago = rng.integers(86400, two_years, size=nc_comp)
    tables["hubspot.companies"] = companies.with_columns(
        createdate=_ts(as_of, comp_ago),
        lastmodifieddate=_ts(as_of, comp_ago // 2),
        **{TRUTH_COLUMN: pl.lit(None, dtype=pl.Int64)},
    )
    crm = people.filter(pl.col("has_crm"))
    # ~3% of CRM people were entered twice (a classic CRM duplicate)
    dup = crm.filter(pl.Series(rng.random(crm.height) < 0.03))
    crm = pl.concat([crm, dup])
    nc = crm.height
    # people with a work email are in the CRM under it; their phone is always there to link
    use_work = crm["has_work_email"].to_numpy()
    crm_email = (
        pl.DataFrame({"w": crm["work_email"], "e": crm["email"], "u": use_work})
        .select(pl.when(pl.col("u")).then(pl.col("w")).otherwise(pl.col("e")))
        .to_series()
    )
    crm_phone = _phone_variant(rng, crm["phone_digits"])
    crm_phone = _null_where(crm_phone, (rng.random(nc) < 0.4) & ~use_work)
    crm_ago = np.minimum(crm["signup_ago"].to_numpy(), rng.integers(60, 60 * 86400, nc))
    tables["hubspot.contacts"] = pl.DataFrame(
        {
            "id": [str(50_001 + i) for i in range(nc)],
            "email": _email_variant(rng, crm_email, 0.15),
            "firstname": crm["first_name"],
            "lastname": crm["last_name"],
            "phone": crm_phone,
            "company": companies["name"].to_numpy()[rng.integers(0, nc_comp, nc)],
            "lifecyclestage": _pick(rng, LIFECYCLE, nc),
            "hs_email_optout": ~crm["email_consent"].to_numpy() | (rng.random(nc) < 0.05),
            "createdate": _ts(as_of, crm["signup_ago"].to_numpy() + 3600),
            "lastmodifieddate": _ts(as_of, crm_ago),
            TRUTH_COLUMN: crm[TRUTH_COLUMN],
        }
    )

    # -- billing (Stripe): customers and charges --------------------------------------------
    bill = people.filter(pl.col("has_billing"))
    nb = bill.height
    bill_work = bill["has_work_email"].to_numpy() & (rng.random(nb) < 0.5)
    b_email = (
        pl.DataFrame({"w": bill["work_email"], "e": bill["email"], "u": bill_work})
        .select(pl.when(pl.col("u")).then(pl.col("w")).otherwise(pl.col("e")))
        .to_series()
    )
    b_email = _email_variant(rng, b_email, 0.1)
    junk_email = rng.random(nb) < 0.005
    b_email = (
        pl.DataFrame({"e": b_email, "j": junk_email})
        .select(pl.when(pl.col("j")).then(pl.lit(JUNK_EMAIL)).otherwise(pl.col("e")))
        .to_series()
    )
    b_user = pl.Series(
        [person_to_user.get(p) for p in bill[TRUTH_COLUMN].to_list()], dtype=pl.Int64
    ).cast(pl.Utf8)
    b_phone = _null_where(_phone_variant(rng, bill["phone_digits"]), rng.random(nb) < 0.7)
    stripe_ids = pl.Series([f"cus_{100_000 + i:x}" for i in range(nb)])
    tables["stripe.customers"] = pl.DataFrame(
        {
            "id": stripe_ids,
            "email": b_email,
            "name": bill["first_name"] + " " + bill["last_name"],
            "phone": b_phone,
            "user_id": b_user,  # served as metadata.user_id, as apps commonly tag customers
            "created": _ts(as_of, bill["signup_ago"].to_numpy() + 60),
            TRUTH_COLUMN: bill[TRUTH_COLUMN],
        }
    )
    ch_counts = rng.poisson(2.0, size=nb)
    ch_cust = _explode_counts(stripe_ids.to_numpy(), ch_counts)
    ch_person = _explode_counts(bill[TRUTH_COLUMN].to_numpy(), ch_counts)
    ch_signup = _explode_counts(bill["signup_ago"].to_numpy(), ch_counts)
    nch = len(ch_cust)
    ch_status = _pick(rng, np.array(["succeeded", "failed", "pending"]), nch, [0.92, 0.06, 0.02])
    tables["stripe.charges"] = pl.DataFrame(
        {
            "id": pl.Series([f"ch_{1_000_000 + i:x}" for i in range(nch)], dtype=pl.Utf8),
            "customer": pl.Series(ch_cust, dtype=pl.Utf8),
            "amount": (rng.lognormal(8.2, 0.9, nch)).astype(np.int64),  # cents
            "currency": np.full(nch, "usd"),
            "status": ch_status,
            "paid": ch_status == "succeeded",
            "refunded": rng.random(nch) < 0.03,
            "created": _ts(as_of, (ch_signup * rng.random(nch)).astype(np.int64) + 30),
            TRUTH_COLUMN: ch_person,
        }
    )

    # -- support (Zendesk): users and tickets ----------------------------------------------
    sup = people.filter(pl.col("has_support"))
    ns = sup.height
    z_email = _email_variant(rng, sup["email"], 0.1)
    z_missing = rng.random(ns) < 0.08
    z_junk = rng.random(ns) < 0.005
    z_email = (
        pl.DataFrame({"e": z_email, "m": z_missing, "j": z_junk})
        .select(
            pl.when(pl.col("j"))
            .then(pl.lit(JUNK_TEXT))
            .when(pl.col("m"))
            .then(None)
            .otherwise(pl.col("e"))
        )
        .to_series()
    )
    z_phone = _phone_variant(rng, sup["phone_digits"])
    z_phone = _null_where(z_phone, (rng.random(ns) < 0.5) & ~(z_missing | z_junk))
    z_ids = np.arange(9_000_001, 9_000_001 + ns, dtype=np.int64)
    z_ago = sup["signup_ago"].to_numpy() // 2
    tables["zendesk.users"] = pl.DataFrame(
        {
            "id": z_ids,
            "email": z_email,
            "phone": z_phone,
            "name": sup["first_name"] + " " + sup["last_name"],
            "role": np.full(ns, "end-user"),
            "created_at": _ts(as_of, z_ago),
            "updated_at": _ts(as_of, z_ago // 2),
            TRUTH_COLUMN: sup[TRUTH_COLUMN],
        }
    )
    t_counts = rng.poisson(1.3, size=ns)
    t_counts[rng.random(ns) < 0.05] += 4  # the support-heavy few
    t_req = _explode_counts(z_ids, t_counts)
    t_person = _explode_counts(sup[TRUTH_COLUMN].to_numpy(), t_counts)
    t_base = _explode_counts(z_ago, t_counts)
    nt = len(t_req)
    t_ago = (t_base * rng.random(nt)).astype(np.int64) + 120
    tables["zendesk.tickets"] = pl.DataFrame(
        {
            "id": np.arange(1, nt + 1, dtype=np.int64),
            "requester_id": t_req,
            "subject": _pick(
                rng,
                np.array(
                    [
                        "Login issue",
                        "Billing question",
                        "Bug report",
                        "Feature request",
                        "Cancel account",
                    ]
                ),
                nt,
            ),
            "status": _pick(rng, TICKET_STATUSES, nt, TICKET_WEIGHTS),
            "priority": _pick(rng, np.array(["low", "normal", "high", "urgent"]), nt),
            "created_at": _ts(as_of, t_ago),
            "updated_at": _ts(as_of, np.maximum(t_ago - 1800, 1)),
            TRUTH_COLUMN: t_person,
        }
    )

    tables["events.events"] = _events(rng, as_of, app, app_user_ids, n)
    tables.update(_email_tools(seed, as_of, people, person_to_user))
    people = people.drop("domain", "work_domain", "signup_ago").with_columns(
        user_id=pl.Series(
            [person_to_user.get(p) for p in people[TRUTH_COLUMN].to_list()], dtype=pl.Int64
        )
    )
    return DemoData(seed=seed, as_of=as_of, people=people, tables=tables)


MAILCHIMP_LIST_ID = "5e1ec7ed00"  # the demo's newsletter audience (Mailchimp list ids are hex)
UNSUBSCRIBE_REASONS = np.array(
    ["No longer interested", "Too many emails", "Did not sign up for list", "Other"]
)


def _email_tools(
    seed: int, as_of: dt.datetime, people: pl.DataFrame, person_to_user: dict[int, int]
) -> dict[str, pl.DataFrame]:
    """Newsletter members (Mailchimp) and email profiles (Klaviyo), with consent status.

    People who consented subscribed through a form; about 8% of them unsubscribed in the
    email tool in the last four weeks (clicked "unsubscribe", with a reason), after their
    consent in the product, so the email tool's withdrawal is the newest decision. People who
    never consented are there for receipts only (``transactional``, ``NEVER_SUBSCRIBED``);
    a few addresses bounced (``cleaned``). A separate random stream keeps every other table
    exactly as it was before these two existed.
    """
    rng = np.random.default_rng([seed, 0xE3A1])
    four_weeks = 28 * 86400
    tables = {}

    # -- Mailchimp: members of one audience -------------------------------------------------
    mc = people.filter(pl.Series(rng.random(people.height) < 0.4))
    m = mc.height
    consent = mc["email_consent"].to_numpy()
    roll = rng.random(m)
    status = np.where(
        consent,
        np.where(roll < 0.08, "unsubscribed", np.where(roll < 0.11, "cleaned", "subscribed")),
        np.where(roll < 0.1, "cleaned", "transactional"),
    )
    signup_ago = mc["signup_ago"].to_numpy()
    opt_ago = (signup_ago * rng.uniform(0.3, 0.9, m)).astype(np.int64) + 60
    changed_ago = np.where(
        status == "unsubscribed",
        rng.integers(3600, four_weeks, m),
        (opt_ago * rng.uniform(0.5, 1.0, m)).astype(np.int64),
    )
    email = _email_variant(rng, mc["email"], 0.1).str.strip_chars()
    hashes = email.str.to_lowercase().map_elements(
        lambda e: hashlib.md5(e.encode()).hexdigest(), return_dtype=pl.Utf8
    )
    source = _pick(
        rng, np.array(["Hosted Signup Form", "Import", "API - Generic"]), m, [0.75, 0.2, 0.05]
    )
    tables["mailchimp.members"] = pl.DataFrame(
        {
            "member_key": f"{MAILCHIMP_LIST_ID}:" + hashes,
            "id": hashes,
            "email_address": email,
            "status": status,
            "list_id": np.full(m, MAILCHIMP_LIST_ID),
            "fname": mc["first_name"],
            "lname": mc["last_name"],
            # Mailchimp sends an empty merge field or reason as "", not null
            "phone": _null_where(
                _phone_variant(rng, mc["phone_digits"]), rng.random(m) < 0.7
            ).fill_null(""),
            "source": source,
            "unsubscribe_reason": _null_where(
                pl.Series(_pick(rng, UNSUBSCRIBE_REASONS, m)), status != "unsubscribed"
            ).fill_null(""),
            "timestamp_opt": _null_where(_ts(as_of, opt_ago), status == "transactional"),
            "last_changed": _ts(as_of, changed_ago),
            TRUTH_COLUMN: mc[TRUTH_COLUMN],
        }
    )

    # -- Klaviyo: profiles with their email marketing consent -------------------------------
    kl = people.filter(pl.Series(rng.random(people.height) < 0.35))
    k = kl.height
    consent = kl["email_consent"].to_numpy()
    roll = rng.random(k)
    state = np.where(
        consent,
        np.where(roll < 0.08, "UNSUBSCRIBED", "SUBSCRIBED"),
        "NEVER_SUBSCRIBED",
    )
    created_ago = (kl["signup_ago"].to_numpy() * rng.uniform(0.3, 0.9, k)).astype(np.int64) + 60
    consent_ago = np.where(
        state == "UNSUBSCRIBED",
        rng.integers(3600, four_weeks, k),
        (created_ago * rng.uniform(0.5, 1.0, k)).astype(np.int64),
    )
    method = np.where(
        state == "SUBSCRIBED",
        _pick(rng, np.array(["FORM", "PREFERENCE_PAGE", "API"]), k, [0.7, 0.25, 0.05]),
        "PREFERENCE_PAGE",
    )
    users = [person_to_user.get(p) for p in kl[TRUTH_COLUMN].to_list()]
    external = pl.Series([None if u is None else str(u) for u in users], dtype=pl.Utf8)
    never = state == "NEVER_SUBSCRIBED"
    tables["klaviyo.profiles"] = pl.DataFrame(
        {
            "id": [f"01{h:024X}" for h in rng.integers(0, 2**62, size=k)],
            "email": _email_variant(rng, kl["email"], 0.1).str.strip_chars(),
            "phone_number": _null_where(kl["phone_e164"], rng.random(k) < 0.6),
            "external_id": _null_where(external, rng.random(k) < 0.5),
            "first_name": kl["first_name"],
            "last_name": kl["last_name"],
            "created": _ts(as_of, created_ago),
            "updated": _ts(as_of, np.minimum(created_ago, consent_ago)),
            "email_marketing_consent": state,
            "email_marketing_consent_timestamp": _null_where(_ts(as_of, consent_ago), never),
            "email_marketing_method": _null_where(pl.Series(method), never),
            "email_marketing_custom_method_detail": pl.Series([None] * k, dtype=pl.Utf8),
            TRUTH_COLUMN: kl[TRUTH_COLUMN],
        }
    )
    return tables


def _events(
    rng: np.random.Generator,
    as_of: dt.datetime,
    app: pl.DataFrame,
    app_user_ids: np.ndarray,
    n_people: int,
) -> pl.DataFrame:
    """Segment-spec events: anonymous browsing, identify on login, tracks, consent updates."""
    na = app.height
    persons = app[TRUTH_COLUMN].to_numpy()
    anon = np.array([f"anon-{seed_hex:012x}" for seed_hex in rng.integers(0, 2**47, size=na)])
    # family devices: 2% of users log in on the device of another user
    share = np.flatnonzero(rng.random(na) < 0.02)
    if len(share) and na > 1:
        anon[share] = anon[(share + 1) % na]
    frames = []
    session_seconds = 30 * 60  # a login session: the 30 minutes before the identify
    # the login (identify) of each user, 30-40 days ago
    login_ago = rng.integers(30 * 86400, 40 * 86400, size=na)
    # 1) anonymous page views before login: about half in the login session (the 30 minutes
    # before the identify), the rest in earlier visits days before
    pre = rng.poisson(2.0, size=na)
    idx = np.repeat(np.arange(na), pre)
    in_session = rng.random(len(idx)) < 0.5
    ago = np.where(
        in_session,
        login_ago[idx] + rng.integers(1, session_seconds, size=len(idx)),
        rng.integers(40 * 86400, 60 * 86400, size=len(idx)),
    )
    frames.append(_event_frame(rng, as_of, "page", None, idx, anon, None, ago, persons))
    # 2) identify on login: userId + anonymousId + traits.email
    ago = login_ago
    frames.append(
        _event_frame(
            rng, as_of, "identify", None, np.arange(na), anon, app_user_ids, ago, persons
        ).with_columns(email=app["email"].str.to_lowercase())
    )
    # 3) logged-in activity in the last 30 days (pages and tracks)
    post = rng.poisson(3.0, size=na)
    idx = np.repeat(np.arange(na), post)
    ago = rng.integers(60, 30 * 86400, size=len(idx))
    frames.append(_event_frame(rng, as_of, "page", None, idx, anon, app_user_ids, ago, persons))
    buy = np.repeat(np.arange(na), rng.poisson(0.5, size=na))
    ago = rng.integers(60, 30 * 86400, size=len(buy))
    frames.append(
        _event_frame(rng, as_of, "track", "Product Viewed", buy, anon, app_user_ids, ago, persons)
    )
    # 4) consent decisions from the cookie banner / preference centre
    cons = np.flatnonzero(rng.random(na) < 0.1)
    ago = rng.integers(60, 20 * 86400, size=len(cons))
    granted = rng.random(len(cons)) < 0.5
    frames.append(
        _event_frame(
            rng, as_of, "track", "Consent Updated", cons, anon, app_user_ids, ago, persons
        ).with_columns(
            properties=pl.Series(
                np.where(
                    granted,
                    '{"categories": {"email_marketing": true, "sms": false}}',
                    '{"categories": {"email_marketing": false, "sms": false}}',
                )
            )
        )
    )
    # 5) anonymous-only visitors who never log in: people of their own (truth ids beyond n)
    n_anon = max(1, n_people // 5)
    v_anon = np.array([f"anon-v{i:010d}" for i in range(n_anon)])
    v_person = np.arange(n_people + 1, n_people + 1 + n_anon, dtype=np.int64)
    cnt = rng.poisson(1.5, size=n_anon) + 1
    idx = np.repeat(np.arange(n_anon), cnt)
    ago = rng.integers(60, 45 * 86400, size=len(idx))
    frames.append(_event_frame(rng, as_of, "page", None, idx, v_anon, None, ago, v_person))
    events = pl.concat(frames, how="diagonal_relaxed").sort("timestamp")
    events = events.with_columns(
        message_id=pl.format("msg-{}", pl.int_range(1, pl.len() + 1)),
    )
    return events.select(
        "message_id",
        "type",
        "event",
        "name",
        "user_id",
        "anonymous_id",
        "email",
        "page_path",
        "properties",
        "timestamp",
        TRUTH_COLUMN,
    )


def _event_frame(
    rng: np.random.Generator,
    as_of: dt.datetime,
    type_: str,
    event: str | None,
    idx: np.ndarray,
    anon: np.ndarray,
    user_ids: np.ndarray | None,
    ago: np.ndarray,
    persons: np.ndarray,
) -> pl.DataFrame:
    m = len(idx)
    page = _pick(rng, PAGES, m, PAGE_WEIGHTS) if type_ == "page" else np.full(m, None)
    return pl.DataFrame(
        {
            "type": np.full(m, type_),
            "event": pl.Series(np.full(m, event), dtype=pl.Utf8),
            "name": pl.Series(page, dtype=pl.Utf8),
            "user_id": pl.Series(
                user_ids[idx].astype(str) if user_ids is not None else [None] * m, dtype=pl.Utf8
            ),
            "anonymous_id": pl.Series(anon[idx], dtype=pl.Utf8),
            "email": pl.Series([None] * m, dtype=pl.Utf8),
            "page_path": pl.Series(page, dtype=pl.Utf8),
            "properties": pl.Series(["{}"] * m, dtype=pl.Utf8),
            "timestamp": _ts(as_of, ago),
            TRUTH_COLUMN: persons[idx],
        }
    )
