"""dbroute.sql: quoting and the user-schema rule, checked by a real server."""

from __future__ import annotations

import psycopg

from dbroute.sql import ident, literal, user_schema
from dbroute.testing import DatabasePair, libpq_url


def test_user_schema_keeps_user_schemas_only(dbroute_databases: DatabasePair) -> None:
    with psycopg.connect(libpq_url(dbroute_databases.neon_url), autocommit=True) as conn:
        for name in ("app", "pgx", 'we"ird', "dbroute"):
            conn.execute(f"create schema {ident(name)}".encode())
        conn.execute(b"create temp table scratch (id int)")  # creates pg_temp_N
        rows = conn.execute(
            f"select nspname from pg_namespace where {user_schema('nspname')}".encode()
        ).fetchall()
    # pg_catalog, pg_toast, pg_temp_N, information_schema and dbroute's own are out.
    assert {r[0] for r in rows} == {"public", "app", "pgx", 'we"ird'}


def test_quoting_round_trips_through_the_server(dbroute_databases: DatabasePair) -> None:
    tricky = 'it\'s a "name" with \\ and ;'
    with psycopg.connect(libpq_url(dbroute_databases.neon_url)) as conn:
        cursor = conn.execute(f"select {literal(tricky)} as {ident(tricky)}".encode())
        assert cursor.fetchone() == (tricky,)
        assert cursor.description is not None
        assert cursor.description[0].name == tricky
