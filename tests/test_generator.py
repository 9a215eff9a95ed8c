"""The demo generator: reproducible, noisy the way real sources are, and truthful."""

from __future__ import annotations

import polars as pl

from orchestration.demo.generator import JUNK_EMAIL, TRUTH_COLUMN, generate
from tests.conftest import AS_OF


def test_same_seed_same_data() -> None:
    a, b = generate(200, seed=5, as_of=AS_OF), generate(200, seed=5, as_of=AS_OF)
    for name in a.tables:
        assert a.tables[name].equals(b.tables[name]), name
    other = generate(200, seed=6, as_of=AS_OF)
    assert not other.tables["app.users"].equals(a.tables["app.users"])


def test_every_record_has_a_truth_person(small_demo) -> None:
    known = set(small_demo.people[TRUTH_COLUMN].to_list())
    for name, frame in small_demo.tables.items():
        if name == "hubspot.companies":
            continue  # companies are organisations, not people
        persons = frame[TRUTH_COLUMN]
        assert persons.null_count() == 0, name
        if name != "events.events":
            assert set(persons.to_list()) <= known, name
    # anonymous-only visitors are people of their own, beyond the known ones
    assert small_demo.tables["events.events"][TRUTH_COLUMN].max() > small_demo.people.height


def test_source_frames_hide_the_truth(small_demo) -> None:
    for name in small_demo.tables:
        assert TRUTH_COLUMN not in small_demo.source(name).columns


def test_noise_is_present() -> None:
    data = generate(3000, seed=1, as_of=AS_OF)
    users = data.source("app.users")
    emails = users["email"]
    assert (emails != emails.str.strip_chars().str.to_lowercase()).sum() > 0  # case/space variants
    phones = pl.concat([users["phone"], data.source("hubspot.contacts")["phone"]]).drop_nulls()
    assert phones.str.contains(r"^\(").sum() > 0 and phones.str.contains(r"\.").sum() > 0
    assert (data.source("stripe.customers")["email"] == JUNK_EMAIL).sum() > 0
    assert users["phone"].null_count() > 0  # missing fields
    # duplicate CRM contacts: one person, two contact records
    crm = data.tables["hubspot.contacts"]
    assert crm[TRUTH_COLUMN].n_unique() < crm.height
    # family devices: one anonymous id identified with two different user ids
    identifies = data.source("events.events").filter(pl.col("type") == "identify")
    shared = identifies.group_by("anonymous_id").agg(pl.col("user_id").n_unique().alias("n"))
    assert shared.filter(pl.col("n") > 1).height > 0


def test_scales_linearly_enough() -> None:
    data = generate(20_000, seed=3, as_of=AS_OF)
    assert data.people.height == 20_000
    assert data.n_records > 20_000 * 5
