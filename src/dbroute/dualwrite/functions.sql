-- dbroute dual-write: functions installed by `dbroute setup` in schema dbroute on
-- both databases. Every statement is idempotent (create or replace).

-- The tables dual-write captures, their key columns and types, and an order in
-- which parents come before children (foreign keys), used when applying.
create table if not exists dbroute.tables (
    table_schema text    not null,
    table_name   text    not null,
    pk_columns   text[]  not null,
    pk_types     text[]  not null,
    ord          integer not null,
    primary key (table_schema, table_name)
);

-- TRUNCATE cannot be mirrored row by row: refuse it while dual-write is set up.
create or replace function dbroute.refuse_truncate() returns trigger
language plpgsql as $$
begin
    if current_setting('dbroute.applying', true) = 'on' then
        return null;
    end if;
    raise exception using
        errcode = 'DBR04',
        message = format('dbroute: TRUNCATE %I.%I is not mirrored by dual-write', tg_table_schema,
                         tg_table_name),
        hint = 'use DELETE, or truncate both databases after `dbroute teardown`';
end $$;

-- dbroute.collect() is generated with the other dispatchers (codegen.py).

-- A failed mirror: put the keys back into the journal, in the writer's
-- transaction (the transactional outbox).
create or replace function dbroute.rejournal(payload jsonb, error text, conflicts jsonb)
returns integer language sql as $$
    with entries as (
        insert into dbroute.journal as j
            (kind, table_schema, table_name, pk, xid, attempts, conflict, last_error)
        select distinct 'change', g->>'schema', g->>'table',
               array(select jsonb_array_elements_text(k)), pg_current_xact_id(), 1,
               coalesce(conflicts, '[]') @> jsonb_build_array(
                   jsonb_build_object('schema', g->>'schema', 'table', g->>'table', 'pk', k)),
               error
        from jsonb_array_elements(payload) g, jsonb_array_elements(g->'keys') k
        on conflict (kind, table_schema, table_name, pk) do update
            set attempts = j.attempts + 1, conflict = excluded.conflict,
                last_error = excluded.last_error
        returning 1
    )
    select count(*)::integer from entries
$$;


-- Writers' transactions that committed: their intent rows go. Never waiting:
-- a row locked by someone else is being settled by replay. Returns the xids
-- whose row is still there (it was locked): the caller tries them again later.
-- (Rows of the journal's former kind 'intent', left by processes of an earlier
-- version, are replay's.) Index lookups only (enable_seqscan off): a mirror
-- connection keeps the plans it made while the table was small, and a
-- sequential scan per confirmed writer would then read every dead row until
-- the next autovacuum.
create or replace function dbroute.confirm(xids xid8[]) returns xid8[]
language plpgsql set enable_seqscan = off as $$
declare
    left_over xid8[];
begin
    delete from dbroute.intents
    where xid = any(array(select xid from dbroute.intents where xid = any(xids)
                          for update skip locked));
    select coalesce(array_agg(xid), '{}') into left_over
    from dbroute.intents where xid = any(xids);
    return left_over;
end $$;
