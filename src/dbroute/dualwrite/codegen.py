"""The SQL functions setup generates for each captured table, and their dispatchers.

Static SQL in PL/pgSQL is planned once per connection and cached, where
dynamic SQL (``EXECUTE format(...)``) is parsed and planned on every call:
generating one small function per table and operation keeps the commit path
to cached plans. The functions are numbered by the table's position in the
parent-first order (``dbroute.tables.ord``); setup drops and regenerates them
all, so they always match the current schema.

Per table ``n``: ``dw_capture_n`` (the capture trigger), ``dw_images_n``
(row images of keys), ``dw_delete_n`` and ``dw_upsert_n`` (applying them).
Dispatchers: ``dbroute.images(groups)`` and ``dbroute.apply(payload, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from dbroute.dualwrite.capture import CapturedTable
from dbroute.sql import ident, literal

__all__ = ["dispatchers_sql", "table_functions_sql"]

_NOT_SET_UP = """raise exception using errcode = 'DBR02',
                message = format('dbroute: table %I.%I is not set up for dual-write',
                                 g.grp->>'schema', g.grp->>'table'),
                hint = 'run the same migrations on both databases, then `dbroute setup`';"""


def _key_condition(table: CapturedTable) -> str:
    """``t.pk1 = (k.v->>0)::type1 and ...``: a table row ``t`` against a JSON key ``k.v``."""
    return " and ".join(
        f"t.{ident(column)} = (k.v->>{i})::{type_}"
        for i, (column, type_) in enumerate(zip(table.pk_columns, table.pk_types, strict=True))
    )


def _journal_insert(table: CapturedTable, source: str) -> str:
    return f"""
        insert into dbroute.journal as j (kind, table_schema, table_name, pk, xid)
        select distinct 'change', {literal(table.schema)}, {literal(table.name)}, s.k,
               pg_current_xact_id()
        from ({source}) s
        on conflict (kind, table_schema, table_name, pk) do update
            set xid = excluded.xid, created_at = excluded.created_at
            where j.xid is distinct from excluded.xid;"""


def _capture(table: CapturedTable, n: int) -> str:
    key = table.key_expression
    new, old = f"select {key} as k from dbroute_new r", f"select {key} as k from dbroute_old r"
    return f"""
create function dbroute.dw_capture_{n}() returns trigger language plpgsql as $fn$
begin
    if current_setting('dbroute.applying', true) = 'on' then
        return null;
    end if;
    if tg_op = 'INSERT' then{_journal_insert(table, new)}
    elsif tg_op = 'DELETE' then{_journal_insert(table, old)}
    else{_journal_insert(table, f"{new} union {old}")}
    end if;
    return null;
end $fn$;
"""


def _images(table: CapturedTable, n: int) -> str:
    first = f"t.{ident(table.pk_columns[0])}"
    return f"""
create function dbroute.dw_images_{n}(keys jsonb) returns jsonb language plpgsql as $fn$
begin
    return (
        select jsonb_build_object(
            'schema', {literal(table.schema)}, 'table', {literal(table.name)}, 'keys', keys,
            'rows', coalesce(jsonb_agg(to_jsonb(t)) filter (where {first} is not null), '[]'),
            'gone', coalesce(jsonb_agg(k.v) filter (where {first} is null), '[]'))
        from jsonb_array_elements(keys) k(v)
        left join {table.qualified} t on {_key_condition(table)});
end $fn$;
"""


def _delete(table: CapturedTable, n: int) -> str:
    return f"""
create function dbroute.dw_delete_{n}(gone jsonb) returns integer language plpgsql as $fn$
declare
    changed integer;
begin
    delete from {table.qualified} t using jsonb_array_elements(gone) k(v)
    where {_key_condition(table)};
    get diagnostics changed = row_count;
    return changed;
end $fn$;
"""


def _upsert(table: CapturedTable, n: int) -> str:
    columns = ", ".join(ident(c) for c in table.columns)
    keys = ", ".join(ident(c) for c in table.pk_columns)
    updates = ", ".join(
        f"{ident(c)} = excluded.{ident(c)}" for c in table.columns if c not in table.pk_columns
    )
    action = f"update set {updates}" if updates else "nothing"
    # An array constructor of literals: no array-literal escaping to get wrong.
    expected = "array[" + ", ".join(literal(c) for c in table.all_columns) + "]"
    return f"""
create function dbroute.dw_upsert_{n}(rows jsonb) returns integer language plpgsql as $fn$
declare
    changed integer;
    got text[] := array(select jsonb_object_keys(rows->0));
    expected text[] := {expected}::text[];
begin
    if not (got @> expected and expected @> got) then
        raise exception using errcode = 'DBR03',
            message = format('dbroute: the columns of %s differ between the databases',
                             {literal(str(table))}),
            detail = format('source: %s; here: %s', got, expected),
            hint = 'run the migration on both databases, then `dbroute setup`';
    end if;
    insert into {table.qualified} as t ({columns}) overriding system value
    select {columns} from jsonb_populate_recordset(null::{table.qualified}, rows)
    on conflict ({keys}) do {action};
    get diagnostics changed = row_count;
    return changed;
end $fn$;
"""


def table_functions_sql(table: CapturedTable, n: int) -> str:
    """The four generated functions of ``table`` at position ``n``."""
    return _capture(table, n) + _images(table, n) + _delete(table, n) + _upsert(table, n)


def _dispatch(count: int, call: str) -> str:
    """A CASE on ``g.ord`` calling ``call`` (with ``{n}``) for each table position."""
    if count == 0:
        return _NOT_SET_UP
    whens = "\n".join(f"            when {n} then {call.format(n=n)}" for n in range(count))
    return f"""case g.ord
{whens}
            else {_NOT_SET_UP}
        end case;"""


_GROUPS = """
        select t.ord, x.value as grp from jsonb_array_elements({arg}) x
        left join dbroute.tables t
          on t.table_schema = x.value->>'schema' and t.table_name = x.value->>'table'
        order by t.ord {direction}"""


def dispatchers_sql(tables: Sequence[CapturedTable]) -> str:
    """``dbroute.images()`` and ``dbroute.apply()`` for the captured ``tables`` (in order)."""
    count = len(tables)
    images = _dispatch(count, "part := dbroute.dw_images_{n}(g.grp->'keys');")
    deletes = _dispatch(count, "changed := changed + dbroute.dw_delete_{n}(g.grp->'gone');")
    upserts = _dispatch(count, "changed := changed + dbroute.dw_upsert_{n}(g.grp->'rows');")
    return f"""
-- Row images of keys, read in the caller's transaction, parents first.
-- groups: [{{"schema", "table", "keys": [[pk text...], ...]}}, ...]
create or replace function dbroute.images(groups jsonb) returns jsonb
language plpgsql as $fn$
declare
    g record;
    part jsonb;
    result jsonb := '[]';
begin
    for g in {_GROUPS.format(arg="groups", direction="")} loop
        {images}
        result := result || jsonb_build_array(part);
    end loop;
    return result;
end $fn$;

-- Apply row images (from dbroute.images) here: deletions children first, then
-- upserts parents first; capture, application triggers and foreign-key checks
-- silenced (session_replication_role = replica) where the role may set it.
-- origin_xid: first record an 'intent' entry per key (see journal.py).
-- confirmed: writers' transactions that committed: their intents go.
-- dedicated: a connection used only for mirroring, so the settings persist.
-- Unless force, raise DBR01 when this database's journal holds an unmirrored
-- change of one of the keys: both sides changed it since they were in sync.
create or replace function dbroute.apply(payload jsonb, origin_xid xid8 default null,
                                         force boolean default false,
                                         confirmed xid8[] default null,
                                         dedicated boolean default false)
returns integer language plpgsql as $fn$
declare
    g record;
    changed integer := 0;
    conflicts jsonb;
begin
    if current_setting('dbroute.applying', true) is distinct from 'on' then
        perform set_config('dbroute.applying', 'on', not dedicated);
    end if;
    -- The writer forgets its keys once this commit is acknowledged: it must be
    -- durable even where the server runs synchronous_commit = off.
    if current_setting('synchronous_commit') <> 'on' then
        perform set_config('synchronous_commit', 'on', not dedicated);
    end if;
    -- (Changing it flushes cached plans: a dedicated connection sets it once.)
    if current_setting('session_replication_role') <> 'replica'
       and current_setting('dbroute.replica_denied', true) is distinct from 'on' then
        begin
            perform set_config('session_replication_role', 'replica', not dedicated);
        exception when insufficient_privilege then
            -- foreign keys then rely on the parent-first order
            perform set_config('dbroute.replica_denied', 'on', false);
        end;
    end if;
    if confirmed is not null then
        delete from dbroute.journal where kind = 'intent' and xid = any(confirmed);
    end if;
    if origin_xid is not null then
        insert into dbroute.journal as j (kind, table_schema, table_name, pk, xid)
        select distinct 'intent', x->>'schema', x->>'table',
               array(select jsonb_array_elements_text(k)), origin_xid
        from jsonb_array_elements(payload) x, jsonb_array_elements(x->'keys') k
        on conflict (kind, table_schema, table_name, pk) do update
            set xid = excluded.xid, created_at = excluded.created_at;
    end if;
    for g in {_GROUPS.format(arg="payload", direction="desc")} loop
        if jsonb_array_length(g.grp->'gone') > 0 then
            {deletes}
        end if;
    end loop;
    for g in {_GROUPS.format(arg="payload", direction="")} loop
        if jsonb_array_length(g.grp->'rows') > 0 then
            {upserts}
        end if;
    end loop;
    if not force then
        select jsonb_agg(distinct jsonb_build_object('schema', j.table_schema,
                                                     'table', j.table_name, 'pk', to_jsonb(j.pk)))
        into conflicts
        from jsonb_array_elements(payload) x, jsonb_array_elements(x->'keys') k,
             dbroute.journal j
        where j.kind = 'change' and j.table_schema = x->>'schema'
          and j.table_name = x->>'table' and j.pk = array(select jsonb_array_elements_text(k));
        if conflicts is not null then
            raise exception using errcode = 'DBR01',
                message = 'dbroute: write conflict: both databases changed the same rows',
                detail = conflicts::text;
        end if;
    end if;
    return changed;
end $fn$;
"""
