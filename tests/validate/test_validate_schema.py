"""Schema diff: each planted kind of difference is reported, nothing else."""

from __future__ import annotations

from dbroute.validate import compare_schemas

from .validate_helpers import Pair

BASE = """
create table accounts (
    id    bigserial primary key,
    email text not null unique,
    name  text default 'x',
    score int
);
create index accounts_score on accounts (score);
create sequence invoice_numbers;
create table notes (id int primary key, body text);
create schema dbroute;
create table dbroute.private (id int);
"""


def test_identical_schemas(pair: Pair) -> None:
    pair.both(BASE)
    assert compare_schemas(pair.neon, pair.rds).clean


def test_each_kind_of_difference(pair: Pair) -> None:
    pair.both(BASE)
    pair.run(
        pair.rds,
        """
        alter table accounts alter column score type bigint;      -- column type
        alter table accounts alter column name drop default;      -- column default
        alter table accounts alter column name set not null;      -- nullability
        alter table accounts add column extra int;                -- column only on rds
        drop index accounts_score;                                -- index only on neon
        alter table accounts drop constraint accounts_email_key;  -- unique constraint
        alter table notes drop constraint notes_pkey;              -- primary key
        alter table notes add primary key (id, body);
        alter sequence invoice_numbers increment by 5;            -- sequence
        create table only_rds (id int);                           -- table
        create extension if not exists pgcrypto;                  -- extension
        create table dbroute.ignored (id int);                    -- dbroute schema ignored
        """,
    )
    report = compare_schemas(pair.neon, pair.rds)
    found = {(d.kind, d.object): d for d in report.differences}
    assert found["column", "accounts.score"].detail == "column differs: type"
    assert found["column", "accounts.name"].detail == "column differs: not_null, default"
    assert found["column", "accounts.extra"].neon is None
    assert found["index", "accounts_score"].rds is None
    assert found["index", "accounts_email_key"].rds is None  # the unique constraint's index
    assert found["constraint", "accounts.accounts_email_key"].rds is None
    assert found["constraint", "notes.primary key"].rds == "PRIMARY KEY (id, body)"
    assert found["index", "notes_pkey"].detail == "index differs"
    assert found["sequence", "invoice_numbers"].detail == "sequence differs"
    assert found["table", "only_rds"].neon is None
    assert found["extension", "pgcrypto"].neon is None
    expected = {
        ("column", "accounts.score"),
        ("column", "accounts.name"),
        ("column", "accounts.extra"),
        ("index", "accounts_score"),
        ("index", "accounts_email_key"),
        ("index", "notes_pkey"),
        ("constraint", "accounts.accounts_email_key"),
        ("constraint", "notes.primary key"),
        ("sequence", "invoice_numbers"),
        ("table", "only_rds"),
        ("extension", "pgcrypto"),
        ("column", "notes.body"),  # the new primary key made it NOT NULL
    }
    assert set(found) == expected


def test_schema_filter(pair: Pair) -> None:
    pair.both("create schema app; create schema other;")
    pair.run(pair.rds, "create table other.t (id int)")
    assert compare_schemas(pair.neon, pair.rds, schemas=["app"]).clean
    assert not compare_schemas(pair.neon, pair.rds, schemas=["other"]).clean
