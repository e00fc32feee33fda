"""The SQL functions setup generates for each captured table, and their dispatchers.

Static SQL in PL/pgSQL is planned once per connection and cached, where
dynamic SQL (``EXECUTE format(...)``) is parsed and planned on every call:
generating one small function per table and operation keeps the commit path
to cached plans. The functions are numbered by the table's position in the
parent-first order (``dbroute.tables.ord``); setup drops and regenerates them
all, so they always match the current schema.

Per table ``n``: ``dw_capture_n`` (the capture trigger, which also sends the
first statement's row images to a client that asked, see notices.py), ``dw_images_n``
(row images of keys), ``dw_delete_n`` and ``dw_upsert_n`` (applying them),
and ``dw_apply_n``: ``dbroute.apply()`` for a payload of that table alone,
which the commit path calls directly (most transactions write one table).
Dispatchers: ``dbroute.collect(max_rows)`` (the commit path on the primary:
take the transaction's keys, return their images in one statement),
``dbroute.images(groups)`` (replay) and ``dbroute.apply(payload, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from dbroute.dualwrite.capture import CapturedTable
from dbroute.sql import ident, literal

__all__ = ["NOTICE_SQLSTATE", "POSITION_DIFFERS", "dispatchers_sql", "table_functions_sql"]

#: SQLSTATE of the notices carrying a statement's row images (see _notice).
NOTICE_SQLSTATE = "DBR10"


def _not_set_up(grp: str) -> str:
    return f"""raise exception using errcode = 'DBR02',
                message = format('dbroute: table %I.%I is not set up for dual-write',
                                 {grp}->>'schema', {grp}->>'table'),
                hint = 'run the same migrations on both databases, then `dbroute setup`';"""


def _key_condition(table: CapturedTable, key: str = "k.v") -> str:
    """``t.pk1 = (k.v->>0)::type1 and ...``: a table row ``t`` against a JSON key ``key``."""
    return " and ".join(
        f"t.{ident(column)} = ({key}->>{i})::{type_}"
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


def _notice_group(table: CapturedTable, op: str) -> str:
    """The SELECT (into ``total, grp``) of one statement's payload group, by ``op``."""
    key = table.key_expression
    head = f"'schema', {literal(table.schema)}, 'table', {literal(table.name)}"
    if op == "INSERT":
        return f"""select count(*)::integer, jsonb_build_object({head},
                'keys', jsonb_agg(to_jsonb({key})), 'rows', jsonb_agg(to_jsonb(r)),
                'gone', '[]'::jsonb)::text
            into total, grp from dbroute_new r;"""
    if op == "DELETE":
        return f"""select count(*)::integer, jsonb_build_object({head},
                'keys', jsonb_agg(to_jsonb({key})), 'rows', '[]'::jsonb,
                'gone', jsonb_agg(to_jsonb({key})))::text
            into total, grp from dbroute_old r;"""
    # UPDATE: the new images; the old keys no new row has (a changed key) are gone.
    gone = "coalesce((select jsonb_agg(to_jsonb(g.k)) from gone g), '[]')"
    return f"""with gone as (select {key} as k from dbroute_old r
                          except select {key} from dbroute_new r)
            select count(*)::integer + (select count(*)::integer from gone),
                jsonb_build_object({head},
                'keys', jsonb_agg(to_jsonb({key})) || {gone},
                'rows', jsonb_agg(to_jsonb(r)), 'gone', {gone})::text
            into total, grp from dbroute_new r;"""


def _notice(table: CapturedTable, n: int) -> str:
    """Send the first statement's row images to the writer's own client (see notices.py)."""
    groups = "\n".join(
        f"""            {"if" if i == 0 else "elsif"} tg_op = '{op}' then
                {_notice_group(table, op)}"""
        for i, op in enumerate(("INSERT", "DELETE", "UPDATE"))
    )
    return f"""
    -- Images for the writer's own client, when its connection asked for them
    -- (dbroute.notify: the most rows to send), so that a commit can mirror
    -- without waiting for collect(). Only a transaction's first statement
    -- sends them (notice 1); a second statement, or a first one over the
    -- limit, sends "2" (no images: the commit takes the usual path), the
    -- others nothing. dbroute.notices holds the count: a savepoint rolled
    -- back takes its part back with it. dbroute.notify = 'c0' or 'c1':
    -- counted, not sent (collect() switches it, see there).
    cap := current_setting('dbroute.notify', true);
    if cap is null or cap = '' then
        return null;
    end if;
    sent := coalesce(nullif(current_setting('dbroute.notices', true), ''), '0')::integer;
    if sent >= 2 then
        return null;
    end if;
    -- A statement that changed nothing (the other half of an upsert) is not one.
    if tg_op = 'INSERT' then
        select count(*)::integer into total from dbroute_new;
    else
        select count(*)::integer into total from dbroute_old;
    end if;
    if total = 0 then
        return null;
    elsif left(cap, 1) = 'c' then  -- only counted: collect() sets the next transaction's mode
        perform set_config('dbroute.notices', (sent + 1)::text, true);
        return null;
    end if;
    grp := '';
    if sent = 0 then
        if total > cap::integer then
            sent := 1;
        else
{groups}
            end if;
        end if;
    end if;
    perform set_config('dbroute.notices', (sent + 1)::text, true);
    -- The images in the detail: a client that logs notices logs their message.
    raise notice using errcode = '{NOTICE_SQLSTATE}', detail = grp,
        message = format('dbroute:%s:%s:%s:%s', sent + 1, {n}, total, pg_current_xact_id());"""


def _capture(table: CapturedTable, n: int) -> str:
    key = table.key_expression
    new, old = f"select {key} as k from dbroute_new r", f"select {key} as k from dbroute_old r"
    return f"""
create function dbroute.dw_capture_{n}() returns trigger language plpgsql as $fn$
declare
    cap text;
    sent integer;
    total integer;
    grp text;
begin
    if current_setting('dbroute.applying', true) = 'on' then
        return null;
    end if;
    if tg_op = 'INSERT' then{_journal_insert(table, new)}
    elsif tg_op = 'DELETE' then{_journal_insert(table, old)}
    else{_journal_insert(table, f"{new} union {old}")}
    end if;{_notice(table, n)}
    return null;
end $fn$;
"""


def _images(table: CapturedTable, n: int) -> str:
    first = f"t.{ident(table.pk_columns[0])}"
    # One primary-key probe per key (LATERAL ... LIMIT 1 is never flattened into
    # a join): a plain join lets the planner hash-join a seq scan of the whole
    # table, whose cost grows with the table, on every commit.
    return f"""
create function dbroute.dw_images_{n}(keys jsonb) returns jsonb language plpgsql as $fn$
#variable_conflict use_variable
begin
    return (
        select jsonb_build_object(
            'schema', {literal(table.schema)}, 'table', {literal(table.name)}, 'keys', keys,
            'rows', coalesce(jsonb_agg(to_jsonb(t)) filter (where {first} is not null), '[]'),
            'gone', coalesce(jsonb_agg(k.v) filter (where {first} is null), '[]'))
        from jsonb_array_elements(keys) k(v)
        left join lateral (select * from {table.qualified} t
                           where {_key_condition(table)} limit 1) t on true);
end $fn$;
"""


def _delete(table: CapturedTable, n: int) -> str:
    # One primary-key delete per key, for the reason given in _images.
    return f"""
create function dbroute.dw_delete_{n}(gone jsonb) returns integer language plpgsql as $fn$
#variable_conflict use_variable
declare
    key jsonb;
    one integer;
    changed integer := 0;
begin
    for key in select value from jsonb_array_elements(gone) loop
        delete from {table.qualified} t where {_key_condition(table, "key")};
        get diagnostics one = row_count;
        changed := changed + one;
    end loop;
    return changed;
end $fn$;
"""


def _upsert_statements(table: CapturedTable, count: str) -> str:
    """Upsert the images in variable ``rows`` into ``table``; ``count`` gets the row count."""
    columns = ", ".join(ident(c) for c in table.columns)
    # Every column reference qualified, the functions' variables preferred
    # (#variable_conflict): a column may be named like a variable (rows, keys).
    selected = ", ".join(f"r.{ident(c)}" for c in table.columns)
    keys = ", ".join(ident(c) for c in table.pk_columns)
    updates = ", ".join(
        f"{ident(c)} = excluded.{ident(c)}" for c in table.columns if c not in table.pk_columns
    )
    action = f"update set {updates}" if updates else "nothing"
    # An array constructor of literals: no array-literal escaping to get wrong.
    expected = "array[" + ", ".join(literal(c) for c in table.all_columns) + "]::text[]"
    # Exactly the expected keys, as two plain expressions: listing the row's keys
    # (a query) only to word the error.
    return f"""
    if not (rows->0 ?& {expected} and (rows->0) - {expected} = '{{}}') then
        raise exception using errcode = 'DBR03',
            message = format('dbroute: the columns of %s differ between the databases',
                             {literal(str(table))}),
            detail = format('source: %s; here: %s',
                            array(select jsonb_object_keys(rows->0)), {expected}),
            hint = 'run the migration on both databases, then `dbroute setup`';
    end if;
    insert into {table.qualified} as t ({columns}) overriding system value
    select {selected} from jsonb_populate_recordset(null::{table.qualified}, rows) r
    on conflict ({keys}) do {action};
    get diagnostics {count} = row_count;"""


def _upsert(table: CapturedTable, n: int) -> str:
    return f"""
create function dbroute.dw_upsert_{n}(rows jsonb) returns integer language plpgsql as $fn$
#variable_conflict use_variable
declare
    changed integer;
begin{_upsert_statements(table, "changed")}
    return changed;
end $fn$;
"""


# --- blocks shared by dbroute.apply() and the per-table dw_apply_n() ------------
# Prologue: the session settings and the intent row; epilogue: the conflict
# check, after the writes.

_APPLY_SIGNATURE = """(payload jsonb, origin_xid xid8 default null,
    force boolean default false, dedicated boolean default false)
returns integer language plpgsql as $fn$"""

# The intent row's keys: the payload's groups without their images.
_ONE_GROUP_KEYS = "jsonb_build_array((payload->0) - 'rows' - 'gone')"
_GROUPS_KEYS = (
    "(select coalesce(jsonb_agg(x - 'rows' - 'gone'), '[]') from jsonb_array_elements(payload) x)"
)


def _apply_prologue(keys: str) -> str:
    """Session settings, then the intent row of ``origin_xid`` with ``keys`` (an expression)."""
    return f"""
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
    -- One row per writer's transaction (see journal.py). A transaction mirrors
    -- once: a second row of its xid would fail the mirror loudly, not merge.
    if origin_xid is not null then
        insert into dbroute.intents (xid, keys) values (origin_xid, {keys});
    end if;"""


_APPLY_EPILOGUE = """
    -- One primary-key probe per key (LATERAL ... LIMIT 1): a join would let the
    -- planner scan the whole journal, a backlog of any size, on every mirror.
    -- Usually this database holds no committed change entry at all: one probe
    -- of the primary key's 'change' prefix says so (ORDER BY ... LIMIT: that
    -- index; EXISTS would drop both and may scan). After the writes: a local
    -- writer of a key committed by then holds its entry, and is seen.
    if not force then
        select true into pending from dbroute.journal where kind = 'change'
        order by kind, table_schema, table_name, pk limit 1;
    end if;
    if pending then
        select jsonb_agg(distinct jsonb_build_object('schema', j.table_schema,
                                                     'table', j.table_name, 'pk', to_jsonb(j.pk)))
        into conflicts
        from jsonb_array_elements(payload) x, jsonb_array_elements(x->'keys') k,
             lateral (select * from dbroute.journal c
                      where c.kind = 'change' and c.table_schema = x->>'schema'
                        and c.table_name = x->>'table'
                        and c.pk = array(select jsonb_array_elements_text(k))
                      limit 1) j;
        if conflicts is not null then
            raise exception using errcode = 'DBR01',
                message = 'dbroute: write conflict: both databases changed the same rows',
                detail = conflicts::text;
        end if;
    end if;
    return changed;
end $fn$;
"""

#: SQLSTATE of dw_apply_n() given another table's payload (see _direct_apply).
POSITION_DIFFERS = "DBR05"


def _direct_apply(table: CapturedTable, n: int) -> str:
    # What dbroute.apply() does for a payload of this one table, called straight
    # by the client with the position collect() found on the other database: no
    # lookup of the position, no dispatch, no nested call (-47 us a mirror in
    # isolation, 10-40 us a commit). Both databases number their tables alike
    # when set up alike; if not, this refuses the payload and the client falls
    # back to dbroute.apply().
    return f"""
create function dbroute.dw_apply_{n}{_APPLY_SIGNATURE}
#variable_conflict use_variable
declare
    rows jsonb := payload->0->'rows';
    gone jsonb := payload->0->'gone';
    one integer;
    changed integer := 0;
    pending boolean := false;
    conflicts jsonb;
begin
    if jsonb_array_length(payload) <> 1
       or payload->0->>'schema' is distinct from {literal(table.schema)}
       or payload->0->>'table' is distinct from {literal(table.name)} then
        raise exception using errcode = '{POSITION_DIFFERS}',
            message = format('dbroute: rows of %s.%s sent to position {n}, which is %s here',
                             payload->0->>'schema', payload->0->>'table', {literal(str(table))}),
            hint = 'run `dbroute setup` (it numbers the tables of both databases alike)';
    end if;{_apply_prologue(_ONE_GROUP_KEYS)}
    if jsonb_array_length(gone) > 0 then
        changed := dbroute.dw_delete_{n}(gone);
    end if;
    if jsonb_array_length(rows) > 0 then{_upsert_statements(table, "one")}
        changed := changed + one;
    end if;{_APPLY_EPILOGUE}"""


def table_functions_sql(table: CapturedTable, n: int) -> str:
    """The five generated functions of ``table`` at position ``n``."""
    return (
        _capture(table, n)
        + _images(table, n)
        + _delete(table, n)
        + _upsert(table, n)
        + _direct_apply(table, n)
    )


def _dispatch(count: int, call: str, ord_: str = "g.ord", grp: str = "g.grp") -> str:
    """A CASE on ``ord_`` calling ``call`` (with ``{n}`` and ``{grp}``) per table position."""
    if count == 0:
        return _not_set_up(grp)
    whens = "\n".join(
        f"            when {n} then {call.format(n=n, grp=grp)}" for n in range(count)
    )
    return f"""case {ord_}
{whens}
            else {_not_set_up(grp)}
        end case;"""


_GROUPS = """
        select t.ord, x.value as grp from jsonb_array_elements({arg}) x
        left join dbroute.tables t
          on t.table_schema = x.value->>'schema' and t.table_name = x.value->>'table'
        order by t.ord"""


def _collect(name: str, images: str, *, notices_column: bool) -> str:
    """``dbroute.<name>()``: collect(), with its count of notices as a column or not.

    ``dbroute.collect()`` keeps its four columns: clients prepare it (psycopg
    does after five runs), and a prepared statement whose function changes
    its columns fails until the connection closes. Commits mirrored from
    notices call ``dbroute.collect_checked()``, which adds the count.
    """
    notices_out = ", out notices integer" if notices_column else ""
    notices_var = "" if notices_column else "\n    notices integer;"
    return f"""
-- Before the writer commits: take this transaction's change entries out of the
-- journal and return the row images to mirror (payload, as dbroute.images()
-- builds it but with the tables in any order), the number of keys, the
-- transaction id and, when it wrote one table, that table's position (for
-- dbroute.dw_apply_<position>() on the other database); collect_checked()
-- also how many statements its capture triggers counted (0, 1, or 2 for
-- more; see dw_capture_n): one statement for the client, one pass over the
-- entries. More than max_rows entries: leave them all in the journal (replay
-- copies them in batches); payload is null.
drop function if exists dbroute.{name}(integer);
create function dbroute.{name}(max_rows integer default null,
                                out payload text, out n_keys integer, out tx text,
                                out only_table integer{notices_out})
language plpgsql as $fn$
declare{notices_var}
    me xid8 := pg_current_xact_id_if_assigned();
    g record;
    part jsonb;
    result jsonb := '[]';
    groups integer := 0;
    mode text;
    next_mode text;
begin
    n_keys := 0;
    notices := coalesce(nullif(current_setting('dbroute.notices', true), ''), '0')::integer;
    -- A connection that asked for notices of row images (they spare a commit of
    -- one statement a round trip) only counts statements after a transaction
    -- that wrote in several ('c0': images nobody can use cost such a
    -- transaction more than they save), and gets images again after two
    -- transactions in a row wrote in one ('c0', 'c1', then the row limit).
    mode := current_setting('dbroute.notify', true);
    if notices > 0 and mode is not null and mode <> '' and max_rows is not null then
        next_mode := case when notices > 1 then 'c0'
                          when mode = 'c0' then 'c1'
                          else max_rows::text end;
        if next_mode <> mode then
            perform set_config('dbroute.notify', next_mode, false);
        end if;
    end if;
    tx := me::text;
    if me is null then  -- the transaction wrote nothing
        payload := '[]';
        return;
    end if;
    if max_rows is not null then
        select count(*) into n_keys
        from (select 1 from dbroute.journal where kind = 'change' and xid = me
              limit max_rows + 1) capped;
        if n_keys > max_rows then
            select count(*) into n_keys from dbroute.journal where kind = 'change' and xid = me;
            return;
        end if;
        n_keys := 0;
    end if;
    for g in
        with taken as (
            delete from dbroute.journal where kind = 'change' and xid = me
            returning table_schema, table_name, pk
        ), per_table as (
            select table_schema, table_name, count(*)::integer as n,
                   jsonb_build_object('schema', table_schema, 'table', table_name,
                                      'keys', jsonb_agg(to_jsonb(pk))) as grp
            from taken group by table_schema, table_name
        )
        -- Each table's position by primary key: a join would hash and sort. (No
        -- order needed: apply() sorts the groups itself.)
        select (select t.ord from dbroute.tables t
                where t.table_schema = p.table_schema and t.table_name = p.table_name) as ord,
               p.n, p.grp
        from per_table p
    loop
        {images}
        result := result || jsonb_build_array(part);
        n_keys := n_keys + g.n;
        groups := groups + 1;
        only_table := g.ord;
    end loop;
    if groups <> 1 then
        only_table := null;
    end if;
    payload := result::text;
end $fn$;

"""


def dispatchers_sql(tables: Sequence[CapturedTable]) -> str:
    """``dbroute.collect()``, ``images()`` and ``apply()`` for ``tables`` (in order)."""
    count = len(tables)
    images = _dispatch(count, "part := dbroute.dw_images_{n}({grp}->'keys');")
    # apply walks the groups, fetched once in parents-first order, by index:
    # backwards for deletes, forwards for upserts.
    deletes = _dispatch(
        count, "changed := changed + dbroute.dw_delete_{n}({grp}->'gone');", "ords[i]", "grps[i]"
    )
    upserts = _dispatch(
        count, "changed := changed + dbroute.dw_upsert_{n}({grp}->'rows');", "ords[i]", "grps[i]"
    )
    collects = _collect("collect", images, notices_column=False) + _collect(
        "collect_checked", images, notices_column=True
    )
    return f"""{collects}
-- Row images of keys, read in the caller's transaction, parents first.
-- groups: [{{"schema", "table", "keys": [[pk text...], ...]}}, ...]
create or replace function dbroute.images(groups jsonb) returns jsonb
language plpgsql as $fn$
declare
    g record;
    part jsonb;
    result jsonb := '[]';
begin
    for g in {_GROUPS.format(arg="groups")} loop
        {images}
        result := result || jsonb_build_array(part);
    end loop;
    return result;
end $fn$;

-- Apply row images (from dbroute.images) here: deletions children first, then
-- upserts parents first; capture, application triggers and foreign-key checks
-- silenced (session_replication_role = replica) where the role may set it.
-- origin_xid: first record the writer's intent row (see journal.py).
-- dedicated: a connection used only for mirroring, so the settings persist.
-- Unless force, raise DBR01 when this database's journal holds an unmirrored
-- change of one of the keys: both sides changed it since they were in sync.
-- (Confirmations are dbroute.confirm()'s; the former signature took them too.)
drop function if exists dbroute.apply(jsonb, xid8, boolean, xid8[], boolean);
create or replace function dbroute.apply{_APPLY_SIGNATURE}
declare
    ords integer[];
    grps jsonb[];
    i integer;
    changed integer := 0;
    pending boolean := false;
    conflicts jsonb;
begin{_apply_prologue(_GROUPS_KEYS)}
    select array_agg(g.ord order by g.ord), array_agg(g.grp order by g.ord) into ords, grps
    from ({_GROUPS.format(arg="payload")}) g;
    for i in reverse coalesce(array_length(ords, 1), 0) .. 1 loop
        if jsonb_array_length(grps[i]->'gone') > 0 then
            {deletes}
        end if;
    end loop;
    for i in 1 .. coalesce(array_length(ords, 1), 0) loop
        if jsonb_array_length(grps[i]->'rows') > 0 then
            {upserts}
        end if;
    end loop;
{_APPLY_EPILOGUE}"""
