CREATE OR REPLACE FUNCTION deltapipe.ingest(dataset text, rows jsonb, options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Apply records pushed by an application to a dataset, in the caller's transaction:
--   SELECT deltapipe.ingest('orders', '[{"id": 1, "amount": 5}, {"id": 2, "op": "delete"}]');
-- rows is a JSON array of objects: the dataset's columns (a missing column is
-- NULL: a row is the whole new row, as a line of a file) plus an optional op
-- (insert, update, upsert: the default, delete). The ops given on one key
-- coalesce to their net effect, in array order. Rows are cast and checked with
-- the dataset's types and rules in one set-based statement
-- (deltapipe._ingest_sql); bad rows go to deltapipe.reject with their position
-- and reason and are returned. The good ones are applied with their changeset
-- (before- and after-images) under a run of their own, like a load: the
-- dataset's incremental models refresh from the change on their next run, and
-- `deltapipe rollback RUN` undoes it.
-- Options: op_key (default "op"; "_op" when the dataset has a column op),
-- unknown_columns ("reject": default, or "ignore"), strict (default true: an
-- insert of a key that exists, an update or delete of a key that does not, is
-- rejected; false: the insert is an upsert, the others do nothing), propagate
-- (default false: true refreshes the downstream models now, in this transaction).
-- Returns {run_id, received, after_coalesce, inserted, updated, deleted,
-- unchanged, skipped, rejected: [{position, column, sqlstate, reason}],
-- row_count[, propagated]}.
DECLARE
    ds       deltapipe.dataset := deltapipe._dataset(dataset);
    opts     jsonb := coalesce(options, '{}');
    cols     text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(ds.columns) c);
    op_key   text;
    v_strict boolean;
    ign      boolean;
    bad      record;
    target   text;
    v_strategy text := 'merge';
    v_run    bigint;
    v_nr     bigint;
    res      jsonb;
    n_rej    bigint;
BEGIN
    -- the options
    IF jsonb_typeof(opts) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP061', MESSAGE = 'ingest options must be a JSON object',
            HINT = 'e.g. ''{"propagate": true}''';
    END IF;
    SELECT k INTO bad FROM jsonb_object_keys(opts) k
     WHERE k NOT IN ('op_key', 'unknown_columns', 'strict', 'propagate') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DP061', MESSAGE = format('unknown ingest option %s', bad.k),
            HINT = 'the options are op_key, unknown_columns, strict and propagate';
    END IF;
    IF (opts ? 'op_key' AND jsonb_typeof(opts->'op_key') <> 'string')
       OR (opts ? 'strict' AND jsonb_typeof(opts->'strict') <> 'boolean')
       OR (opts ? 'propagate' AND jsonb_typeof(opts->'propagate') <> 'boolean')
       OR coalesce(opts->>'unknown_columns', 'reject') NOT IN ('reject', 'ignore') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP061', MESSAGE = format('invalid ingest options %s', opts),
            HINT = 'op_key is a string, strict and propagate are true or false, unknown_columns is "reject" or "ignore"';
    END IF;
    op_key := coalesce(opts->>'op_key', CASE WHEN 'op' = ANY (cols) THEN '_op' ELSE 'op' END);
    IF op_key = ANY (cols) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP061',
            MESSAGE = format('op key %s is a column of dataset %s', op_key, ds.name),
            HINT = 'name the op with another key: options {"op_key": "..."}';
    END IF;
    v_strict := coalesce((opts->>'strict')::boolean, true);
    ign := opts->>'unknown_columns' = 'ignore';
    -- the rows: an array of objects
    IF rows IS NULL OR jsonb_typeof(rows) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP060',
            MESSAGE = format('ingest into %s: rows must be a JSON array of objects', ds.name),
            DETAIL = format('rows is %s', coalesce('a JSON ' || jsonb_typeof(rows), 'NULL')),
            HINT = 'pass [{"col": value, ...}, ...]; one object per row';
    END IF;
    -- (one pass in C; the position is looked for only when there is one)
    IF jsonb_path_exists(rows, 'strict $[*] ? (@.type() != "object")') THEN
        SELECT e.o, jsonb_typeof(e.j) AS t INTO bad FROM jsonb_array_elements(rows) WITH ORDINALITY e(j, o)
         WHERE jsonb_typeof(e.j) <> 'object' ORDER BY e.o LIMIT 1;
        RAISE EXCEPTION USING ERRCODE = 'DP060',
            MESSAGE = format('ingest into %s: rows must be a JSON array of objects', ds.name),
            DETAIL = format('element %s (counting from 1) is a JSON %s', bad.o, bad.t),
            HINT = 'pass [{"col": value, ...}, ...]; one object per row';
    END IF;

    -- JIT compilation costs more than it saves on these short statements
    PERFORM set_config('jit', 'off', true);
    -- one load or ingest per dataset at a time
    SELECT * INTO ds FROM deltapipe.dataset d WHERE d.name = ds.name FOR UPDATE;
    target := format('%I.%I', ds.target_schema, ds.target_table);
    IF to_regclass(target) IS NULL THEN
        PERFORM deltapipe._ingest_create(ds);
        v_strategy := 'create';
    END IF;
    INSERT INTO deltapipe.run (kind, trigger, status, args)
    VALUES ('load', 'sql', 'running', jsonb_build_object('dataset', ds.name, 'ingest', true) || (opts - 'op_key'))
    RETURNING id INTO v_run;
    INSERT INTO deltapipe.node_run (run_id, node, node_kind, status, started_at, mode)
    VALUES (v_run, ds.name, 'load', 'running', clock_timestamp(), 'ingest')
    RETURNING id INTO v_nr;

    -- the statement, in a function made once for the dataset and these options (its plan is reused)
    -- (its writes are logged by the statement itself: not captured again, as a load's are not)
    PERFORM set_config('deltapipe.writer', 'load', true);
    EXECUTE format('SELECT %s($1, $2, $3, $4)', deltapipe._ingest_statement(ds, op_key, ign, v_strict))
       INTO res USING rows, cols || op_key, v_run, v_nr;
    PERFORM set_config('deltapipe.writer', '', true);
    PERFORM deltapipe._capture_dataset(ds.name);

    UPDATE deltapipe.dataset d
       SET checksum = d.checksum + (res->>'dcsum')::numeric,
           row_count = d.row_count + (res->>'inserted')::bigint - (res->>'deleted')::bigint,
           last_loaded_at = now()
     WHERE d.name = ds.name
    RETURNING d.row_count INTO ds.row_count;
    n_rej := jsonb_array_length(res->'rejected');
    UPDATE deltapipe.node_run SET
        status = 'done', finished_at = clock_timestamp(),
        strategy = CASE WHEN v_strategy = 'create' THEN 'create'
                        WHEN (res->>'inserted')::bigint + (res->>'updated')::bigint + (res->>'deleted')::bigint = 0 THEN 'none'
                        ELSE 'merge' END,
        rows_in = (res->>'received')::bigint, after_coalesce = (res->>'after_coalesce')::bigint,
        inserted = (res->>'inserted')::bigint, updated = (res->>'updated')::bigint,
        deleted = (res->>'deleted')::bigint, unchanged = (res->>'unchanged')::bigint, rejected = n_rej,
        duplicates = (res->>'received')::bigint - n_rej - (res->>'after_coalesce')::bigint
    WHERE id = v_nr;
    UPDATE deltapipe.run SET status = 'done', finished_at = clock_timestamp() WHERE id = v_run;
    res := jsonb_build_object('run_id', v_run) || (res - 'dcsum') || jsonb_build_object('row_count', ds.row_count);
    IF coalesce((opts->>'propagate')::boolean, false) THEN
        res := res || jsonb_build_object('propagated', deltapipe._ingest_propagate(ds.name));
    END IF;
    RETURN res;
END
$fn$;

COMMENT ON FUNCTION deltapipe.ingest(text, jsonb, jsonb) IS
  'Apply a JSON array of records (ops insert, update, upsert, delete, coalesced per key) to a dataset like a load: typed, checked, rejects returned, changeset recorded.';
