"""Normalization and hashing: one rule per identifier type, the same in Python and in SQL."""

from __future__ import annotations

import hashlib

import duckdb
import polars as pl
import pytest

from connectors.suppression import hash_identifier as connector_hash
from connectors.suppression import sql_hash
from orchestration.privacy.normalize import (
    PHONE_SQL_MACRO,
    Identifier,
    audience_hash,
    normalize_email,
    normalize_phone,
    parse_identifier,
)


def test_every_phone_variant_of_the_demo_normalizes_to_the_persons_e164(small_demo) -> None:
    phones = pl.concat(
        [
            small_demo.tables[t].select("phone", "_person_id")
            for t in ("app.users", "hubspot.contacts", "stripe.customers", "zendesk.users")
        ]
    ).drop_nulls("phone")
    truth = dict(small_demo.people.select("_person_id", "phone_e164").iter_rows())
    checked = 0
    for phone, person in phones.iter_rows():
        if phone == "0000000000":  # the junk value some records carry
            continue
        assert normalize_phone(phone) == truth[person], phone
        checked += 1
    assert checked > 100


def test_sql_phone_macro_agrees_with_python(small_demo) -> None:
    values = small_demo.tables["hubspot.contacts"]["phone"].drop_nulls().to_list()
    values += ["+44 20 7946 0958", "12345", "+1", "1 (201) 000-0001", "2010000001x", ""]
    con = duckdb.connect()
    con.execute(PHONE_SQL_MACRO)
    for value in values:
        got = con.execute("select cdp_phone_e164(?)", [value]).fetchone()[0]
        assert got == normalize_phone(value), value


def test_email_normalization_and_identifier_parsing() -> None:
    assert normalize_email("  Ada.Lovelace1@Example.COM ") == "ada.lovelace1@example.com"
    assert normalize_email("n/a") is None
    assert parse_identifier(" ADA@x.example ") == [Identifier("email", "ada@x.example")]
    assert parse_identifier("phone:(201) 000-0001") == [Identifier("phone", "+12010000001")]
    assert parse_identifier("user_id: 1015 ") == [Identifier("user_id", "1015")]
    # untyped: a phone-shaped value may still be some id; both are tried
    assert parse_identifier("2010000001") == [
        Identifier("phone", "+12010000001"),
        Identifier("*", "2010000001"),
    ]
    assert parse_identifier("anon-3aa132aab25f") == [Identifier("*", "anon-3aa132aab25f")]
    with pytest.raises(ValueError):
        parse_identifier("   ")
    with pytest.raises(ValueError):
        parse_identifier("not@valid")


@pytest.mark.parametrize(
    ("id_type", "raw"),
    [
        ("email", "  Ada.Lovelace1@Example.com "),
        ("phone", "(201) 000-0001"),
        ("phone", "+1 201 000 0001"),
        ("user_id", "1015"),
        ("anonymous_id", "anon-3aa132aab25f"),
    ],
)
def test_suppression_hash_is_the_connectors_hash_in_python_and_sql(id_type, raw) -> None:
    """The loader drops a record when its SQL hash is on the list the privacy job filled."""
    ident = Identifier.of(id_type, raw)
    assert ident is not None
    assert ident.hash == connector_hash(id_type, raw)
    con = duckdb.connect()
    in_sql = con.execute(f"select {sql_hash(id_type, '$v')}", {"v": raw}).fetchone()[0]
    assert ident.hash == in_sql


def test_audience_hash_is_sha256_of_the_normalized_value_never_the_raw_one() -> None:
    email = "  Ada.Lovelace1@Example.com "
    expected = hashlib.sha256(b"ada.lovelace1@example.com").hexdigest()
    assert audience_hash("email", email) == expected
    assert audience_hash("email", "ADA.LOVELACE1@EXAMPLE.COM") == expected
    assert audience_hash("email", email) != hashlib.sha256(email.encode()).hexdigest()
    phone = hashlib.sha256(b"+12010000001").hexdigest()
    for variant in ("(201) 000-0001", "201.000.0001", "+12010000001", "1 201 000 0001"):
        assert audience_hash("phone", variant) == phone
    digits_only = hashlib.sha256(b"12010000001").hexdigest()
    assert audience_hash("phone", "201-000-0001", phone_plus=False) == digits_only
    assert audience_hash("email", "n/a") is None
    assert len(audience_hash("email", email)) == 64
    with pytest.raises(ValueError):
        audience_hash("user_id", "1015")
