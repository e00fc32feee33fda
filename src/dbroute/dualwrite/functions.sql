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

-- Statement trigger (with transition tables) on every captured table: records
-- the (table, primary key) of each changed row in the writer's transaction.
-- TG_ARGV[0] is the key expression over alias r, e.g. array[r."id"::text].
-- Silent while dbroute itself applies mirrored rows (dbroute.applying).
create or replace function dbroute.capture() returns trigger
language plpgsql as $$
declare
    source text;
begin
    if current_setting('dbroute.applying', true) = 'on' then
        return null;
    end if;
    source := case tg_op
        when 'INSERT' then format('select %s from dbroute_new r', tg_argv[0])
        when 'DELETE' then format('select %s from dbroute_old r', tg_argv[0])
        else format('select %1$s from dbroute_new r union select %1$s from dbroute_old r',
                    tg_argv[0])
    end;
    execute format(
        'insert into dbroute.journal as j (kind, table_schema, table_name, pk, xid)
         select distinct ''change'', $1, $2, k, pg_current_xact_id() from (%s) s(k)
         on conflict (kind, table_schema, table_name, pk) do update
            set xid = excluded.xid, created_at = excluded.created_at
            where j.xid is distinct from excluded.xid', source)
    using tg_table_schema, tg_table_name;
    return null;
end $$;

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

-- The "t.pk1 = (k.v->>0)::type1 and ..." join condition of a captured table.
create or replace function dbroute.key_condition(pk_columns text[], pk_types text[]) returns text
language sql immutable as $$
    select string_agg(format('t.%I = (k.v->>%s)::%s', c, i - 1, ty), ' and ' order by i)
    from unnest(pk_columns, pk_types) with ordinality as u(c, ty, i)
$$;

-- Row images of the given keys, read in the caller's transaction.
-- groups: [{"schema", "table", "keys": [[pk text...], ...]}, ...]
-- returns [{"schema", "table", "keys", "rows": [row json...], "gone": [[pk...]...]}, ...]
-- in parent-before-child order.
create or replace function dbroute.images(groups jsonb) returns jsonb
language plpgsql as $$
declare
    g record;
    result jsonb := '[]';
    found_rows jsonb;
    gone jsonb;
begin
    for g in
        select x.value as grp, t.pk_columns, t.pk_types, t.ord
        from jsonb_array_elements(groups) x
        left join dbroute.tables t
          on t.table_schema = x.value->>'schema' and t.table_name = x.value->>'table'
        order by t.ord
    loop
        if g.pk_columns is null then
            raise exception using errcode = 'DBR02',
                message = format('dbroute: table %I.%I is not set up for dual-write',
                                 g.grp->>'schema', g.grp->>'table'),
                hint = 'run `dbroute setup` on both databases';
        end if;
        execute format(
            'select coalesce(jsonb_agg(to_jsonb(t)) filter (where t.%1$I is not null), ''[]''),
                    coalesce(jsonb_agg(k.v) filter (where t.%1$I is null), ''[]'')
             from jsonb_array_elements($1) k(v) left join %2$I.%3$I t on %4$s',
            g.pk_columns[1], g.grp->>'schema', g.grp->>'table',
            dbroute.key_condition(g.pk_columns, g.pk_types))
        into found_rows, gone
        using g.grp->'keys';
        result := result || jsonb_build_array(
            g.grp || jsonb_build_object('rows', found_rows, 'gone', gone));
    end loop;
    return result;
end $$;

-- Before the writer commits: take this transaction's change entries out of the
-- journal and return the row images to mirror (empty array: nothing changed).
create or replace function dbroute.collect() returns jsonb
language plpgsql as $$
declare
    groups jsonb;
begin
    with taken as (
        delete from dbroute.journal
        where kind = 'change' and xid = pg_current_xact_id_if_assigned()
        returning table_schema, table_name, pk
    )
    select jsonb_agg(jsonb_build_object('schema', table_schema, 'table', table_name,
                                        'keys', keys))
    into groups
    from (select table_schema, table_name, jsonb_agg(to_jsonb(pk)) as keys
          from taken group by table_schema, table_name) per_table;
    if groups is null then
        return '[]';
    end if;
    return dbroute.images(groups);
end $$;

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

-- Apply row images (from dbroute.images) to this database, silencing capture,
-- application triggers and foreign-key checks (session_replication_role) when
-- permitted. With origin_xid, first record an 'intent' entry per key (the
-- writer deletes it after its own commit succeeded). Unless force, raise
-- DBR01 when this database's journal holds an unmirrored change of one of the
-- keys: both sides changed it, and neither may silently overwrite the other.
create or replace function dbroute.apply(payload jsonb, origin_xid xid8 default null,
                                         force boolean default false)
returns integer language plpgsql as $$
declare
    g record;
    rel regclass;
    cols text[];
    all_cols text[];
    image_cols text[];
    upd text;
    col_list text;
    n integer := 0;
    cnt integer;
    conflicts jsonb;
begin
    perform set_config('dbroute.applying', 'on', true);
    begin
        perform set_config('session_replication_role', 'replica', true);
    exception when insufficient_privilege then
        null;  -- foreign keys then rely on the parent-first order below
    end;
    if origin_xid is not null then
        insert into dbroute.journal as j (kind, table_schema, table_name, pk, xid)
        select distinct 'intent', x->>'schema', x->>'table',
               array(select jsonb_array_elements_text(k)), origin_xid
        from jsonb_array_elements(payload) x, jsonb_array_elements(x->'keys') k
        on conflict (kind, table_schema, table_name, pk) do update
            set xid = excluded.xid, created_at = excluded.created_at;
    end if;
    -- Deletes first, children before parents.
    for g in
        select x.value as grp, t.pk_columns, t.pk_types
        from jsonb_array_elements(payload) with ordinality x
        left join dbroute.tables t
          on t.table_schema = x.value->>'schema' and t.table_name = x.value->>'table'
        order by x.ordinality desc
    loop
        if g.pk_columns is null then
            raise exception using errcode = 'DBR02',
                message = format('dbroute: table %I.%I is not set up for dual-write',
                                 g.grp->>'schema', g.grp->>'table'),
                hint = 'migrate both databases alike, then run `dbroute setup`';
        end if;
        if jsonb_array_length(g.grp->'gone') > 0 then
            execute format('delete from %I.%I t using jsonb_array_elements($1) k(v) where %s',
                           g.grp->>'schema', g.grp->>'table',
                           dbroute.key_condition(g.pk_columns, g.pk_types))
            using g.grp->'gone';
            get diagnostics cnt = row_count;
            n := n + cnt;
        end if;
    end loop;
    -- Then upserts, parents before children.
    for g in
        select x.value as grp, t.pk_columns
        from jsonb_array_elements(payload) with ordinality x
        join dbroute.tables t
          on t.table_schema = x.value->>'schema' and t.table_name = x.value->>'table'
        where jsonb_array_length(x.value->'rows') > 0
        order by x.ordinality
    loop
        rel := format('%I.%I', g.grp->>'schema', g.grp->>'table')::regclass;
        select array_agg(attname::text order by attnum) filter (where attgenerated = ''),
               array_agg(attname::text order by attname)
        into cols, all_cols
        from pg_attribute where attrelid = rel and attnum > 0 and not attisdropped;
        select array_agg(k order by k) into image_cols
        from jsonb_object_keys(g.grp->'rows'->0) k;
        if image_cols is distinct from all_cols then
            raise exception using errcode = 'DBR03',
                message = format('dbroute: the columns of %s differ between the databases', rel),
                detail = format('source: %s; here: %s', image_cols, all_cols),
                hint = 'run the migration on both databases, then `dbroute setup`';
        end if;
        select string_agg(format('%I', c), ', ' order by o) into col_list
        from unnest(cols) with ordinality u(c, o);
        select string_agg(format('%I = excluded.%I', c, c), ', ') into upd
        from unnest(cols) c where c <> all(g.pk_columns);
        execute format(
            'insert into %1$s as t (%2$s) overriding system value
             select %2$s from jsonb_populate_recordset(null::%1$s, $1)
             on conflict (%3$s) do %4$s',
            rel, col_list,
            (select string_agg(format('%I', c), ', ') from unnest(g.pk_columns) c),
            coalesce('update set ' || upd, 'nothing'))
        using g.grp->'rows';
        get diagnostics cnt = row_count;
        n := n + cnt;
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
    return n;
end $$;
