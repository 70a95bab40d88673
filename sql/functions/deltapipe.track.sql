CREATE OR REPLACE FUNCTION deltapipe.track(p_table text, key text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Track an application table: from now on every INSERT, UPDATE and DELETE of it
-- appends its changes to deltapipe.changeset (statement-level triggers with
-- transition tables, one set-based INSERT per statement), so models reading it
-- refresh incrementally, like models over a dataset. key defaults to the primary
-- key; it must be unique and not NULL. A TRUNCATE or a column change makes its
-- readers refresh in full once. Deploy the pipelines reading it again afterwards
-- (a table read before it was tracked was an external table to them).
--   SELECT deltapipe.track('public.orders');
--   SELECT deltapipe.track('app.events', key => ARRAY['id']);
-- Tracking a table again with the same key changes nothing.
DECLARE
    rel   regclass;
    sch   text;
    tname text;
    kind  "char";
    nm    text;
    keys  text[] := key;
    bad   text;
    t     record;
    rid   bigint;
    nnull bigint;
    ndup  bigint;
    pk    text[];
BEGIN
    rel := to_regclass(p_table);
    IF rel IS NOT NULL THEN
        SELECT n.nspname, c.relname, c.relkind INTO sch, tname, kind
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    END IF;
    IF rel IS NULL OR kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP701', MESSAGE = format('cannot track %s: no such table', p_table),
            DETAIL = CASE WHEN rel IS NULL THEN 'no table of that name is on the search path'
                          ELSE format('%s is not an ordinary table (relkind %s)', p_table, kind) END,
            HINT = 'name an existing table, as schema.table';
    END IF;
    IF sch IN ('deltapipe', 'deltapipe_stage', 'deltapipe_log') OR sch LIKE 'pg\_%' OR sch = 'information_schema' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP701', MESSAGE = format('cannot track %I.%I: a table of deltapipe or of the system', sch, tname),
            HINT = 'track an application table';
    END IF;
    SELECT format('model %s of pipeline %s', m.name, m.pipeline) INTO bad FROM deltapipe.model m
     WHERE m.target_schema = sch AND m.target_table = tname;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP703', MESSAGE = format('cannot track %I.%I: it is the table of %s', sch, tname, bad),
            DETAIL = 'a model''s refresh logs its changes already (deltapipe_log)',
            HINT = 'models reading it refresh incrementally without tracking';
    END IF;
    SELECT * INTO t FROM deltapipe.tracked WHERE target_schema = sch AND target_table = tname;
    IF FOUND AND t.dataset IS NOT NULL THEN
        PERFORM deltapipe._capture_install(t.name);
        RETURN jsonb_build_object('name', t.name, 'table', format('%I.%I', sch, tname), 'key', to_jsonb(t.key_cols),
                                  'dataset', t.dataset, 'run_id', t.run_id);
    END IF;
    SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum)) INTO pk
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = rel AND i.indisprimary;
    IF keys IS NULL OR cardinality(keys) = 0 THEN
        keys := pk;
    END IF;
    IF keys IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP702', MESSAGE = format('cannot track %I.%I: it has no primary key', sch, tname),
            DETAIL = 'a tracked table''s changes are logged and coalesced by key',
            HINT = 'give the key: `deltapipe track TABLE --key COLS` or deltapipe.track(''schema.table'', key => ARRAY[''col''])';
    END IF;
    SELECT string_agg(k, ', ') INTO bad FROM unnest(keys) k
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = k AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP702', MESSAGE = format('cannot track %I.%I: key column %s is not a column of it', sch, tname, bad),
            HINT = 'give the key as column names of the table';
    END IF;
    IF keys IS DISTINCT FROM pk THEN
        EXECUTE format('SELECT count(*) FILTER (WHERE %s), count(*) - count(DISTINCT %s) FROM %I.%I',
                       (SELECT string_agg(format('%I IS NULL', k), ' OR ') FROM unnest(keys) k),
                       CASE WHEN cardinality(keys) = 1 THEN format('%I', keys[1])
                            ELSE format('(%s)', (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k)) END,
                       sch, tname) INTO nnull, ndup;
        IF nnull > 0 OR ndup > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'DP702',
                MESSAGE = format('cannot track %I.%I: key (%s) is not unique and not NULL', sch, tname, array_to_string(keys, ', ')),
                DETAIL = format('%s rows with a NULL key column, %s duplicate keys', nnull, ndup),
                HINT = 'give columns that identify a row (a unique index on them keeps it so)';
        END IF;
    END IF;
    nm := format('%s.%s', sch, tname);
    IF t.name IS NOT NULL THEN
        IF t.key_cols IS DISTINCT FROM keys THEN
            RAISE EXCEPTION USING ERRCODE = 'DP703', MESSAGE = format('%s is tracked already, with key (%s)', nm, array_to_string(t.key_cols, ', ')),
                HINT = 'untrack it first (`deltapipe untrack`) to track it with another key';
        END IF;
    ELSE
        INSERT INTO deltapipe.run (kind, trigger, status, args, finished_at, backend_pid)
        VALUES ('capture', 'sql', 'done', jsonb_build_object('table', nm), clock_timestamp(), NULL)
        RETURNING id INTO rid;
        INSERT INTO deltapipe.tracked (name, target_schema, target_table, key_cols, run_id, columns)
        VALUES (nm, sch, tname, keys, rid, deltapipe._capture_columns(rel))
        RETURNING * INTO t;
        -- a model that read it before (tracked earlier, then untracked) has a position in a
        -- change log that is gone: its next refresh is a full one
        UPDATE deltapipe.model SET watermark = watermark - nm WHERE watermark ? nm;
    END IF;
    PERFORM deltapipe._capture_install(nm);
    RETURN jsonb_build_object('name', nm, 'table', format('%I.%I', sch, tname), 'key', to_jsonb(keys), 'run_id', t.run_id);
END
$fn$;

COMMENT ON FUNCTION deltapipe.track(text, text[]) IS
  'Track an application table: statement triggers log its changes (key defaults to the primary key), so models reading it refresh incrementally.';
