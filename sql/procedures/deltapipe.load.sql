CREATE OR REPLACE PROCEDURE deltapipe.load(p_dataset text, p_staging text, p_options jsonb DEFAULT '{}',
                                           INOUT result jsonb DEFAULT NULL)
LANGUAGE plpgsql
AS $fn$
-- Validate, diff and apply a staged file in one transaction, record the run,
-- its counts and per-phase timings, and drop the work tables.
--   SELECT deltapipe.stage('orders');            -- -> deltapipe_stage.orders_1a2b3c4d
--   COPY deltapipe_stage.orders_1a2b3c4d (_dp_raw) FROM STDIN;
--   CALL deltapipe.load('orders', 'deltapipe_stage.orders_1a2b3c4d', '{"mode": "upsert"}');
-- Options: mode, format (csv|tsv|ndjson), delimiter, quote, null, header,
-- op_column, order_column, strategy (auto|merge|swap), swap_threshold, max_rejects,
-- source_file, file_sha256, run_id, node_run_id, copy_ms.
DECLARE
    ds      deltapipe.dataset;
    stg     text := deltapipe._staging(p_staging);
    opts    jsonb := coalesce(p_options, '{}');
    own_run boolean := false;
    run_id  bigint := (opts->>'run_id')::bigint;
    nr_id   bigint := (opts->>'node_run_id')::bigint;
    t0      timestamptz;
    t1      timestamptz;
    v       jsonb;
    d       jsonb;
    a       jsonb;
    v_phases jsonb := '{}';
    ms      numeric;
    lim     bigint;
    summary text;
BEGIN
    PERFORM deltapipe._dataset(p_dataset);
    -- JIT compilation costs more than it saves on these short set-based statements
    PERFORM set_config('jit', 'off', true);
    -- hash joins over a whole table stay in memory; small deltas probe the primary key
    PERFORM set_config('work_mem', '256MB', true);
    PERFORM set_config('random_page_cost', '1.1', true);
    -- one load per dataset at a time
    SELECT * INTO ds FROM deltapipe.dataset WHERE name = p_dataset FOR UPDATE;
    opts := jsonb_build_object('mode', ds.mode) || opts;
    IF run_id IS NULL THEN
        INSERT INTO deltapipe.run (kind, trigger, status, args)
        VALUES ('load', 'sql', 'running', jsonb_build_object('dataset', p_dataset) || opts)
        RETURNING id INTO run_id;
        own_run := true;
    END IF;
    IF nr_id IS NULL THEN
        INSERT INTO deltapipe.node_run (run_id, node, node_kind, status, started_at, source_file, file_sha256)
        VALUES (run_id, p_dataset, 'load', 'running', clock_timestamp(), opts->>'source_file', opts->>'file_sha256')
        RETURNING id INTO nr_id;
    END IF;
    opts := opts || jsonb_build_object('run_id', run_id, 'node_run_id', nr_id);
    IF opts ? 'copy_ms' THEN
        v_phases := jsonb_build_object('copy', (opts->>'copy_ms')::numeric);
    END IF;

    t0 := clock_timestamp();
    v := deltapipe.validate(p_dataset, p_staging, opts);
    t1 := clock_timestamp();
    v_phases := v_phases || jsonb_build_object('validate', round(extract(epoch FROM t1 - t0)::numeric * 1000, 1));
    -- too many rejects: publish nothing, say why
    lim := deltapipe._reject_limit(coalesce(opts->>'max_rejects', ds.options->>'max_rejects'), (v->>'rows_in')::bigint);
    IF lim IS NOT NULL AND (v->>'rejected')::bigint > lim THEN
        SELECT string_agg(format('%s x %s%s (lines %s)', n, coalesce(column_name || ' ', ''), reason, lines), '; ')
          INTO summary
          FROM (SELECT count(*) AS n, column_name,
                       CASE WHEN sqlstate LIKE 'DP%' THEN min(message) ELSE sqlstate || ' ' || min(split_part(message, ':', 1)) END AS reason,
                       array_to_string((array_agg(line_no ORDER BY line_no))[1:3], ', ')
                         || CASE WHEN count(*) > 3 THEN ', ...' ELSE '' END AS lines
                  FROM deltapipe.reject WHERE node_run_id = nr_id
                 GROUP BY column_name, sqlstate, CASE WHEN sqlstate LIKE 'DP%' THEN message END
                 ORDER BY count(*) DESC LIMIT 5) top;
        RAISE EXCEPTION USING ERRCODE = 'DP021',
            MESSAGE = format('%s of %s rows rejected, more than the limit of %s: nothing was published',
                             v->>'rejected', v->>'rows_in', coalesce(opts->>'max_rejects', ds.options->>'max_rejects')),
            DETAIL = summary,
            HINT = 'fix the file, or raise the limit with --max-rejects';
    END IF;
    t0 := t1;
    d := deltapipe.diff(p_dataset, p_staging, opts || jsonb_build_object('typed_rows', v->'typed_rows'));
    t1 := clock_timestamp();
    v_phases := v_phases || jsonb_build_object('diff', round(extract(epoch FROM t1 - t0)::numeric * 1000, 1));
    t0 := t1;
    -- the load's own writes are not captured again (deltapipe._capture_dataset)
    PERFORM set_config('deltapipe.writer', 'load', true);
    a := deltapipe.apply(p_dataset, p_staging, opts);
    PERFORM set_config('deltapipe.writer', '', true);
    PERFORM deltapipe._capture_dataset(p_dataset);
    t1 := clock_timestamp();
    v_phases := v_phases || jsonb_build_object('apply', round(extract(epoch FROM t1 - t0)::numeric * 1000, 1));

    EXECUTE format('DROP TABLE IF EXISTS deltapipe_stage.%I, deltapipe_stage.%I, deltapipe_stage.%I,
                                         deltapipe_stage.%I, deltapipe_stage.%I, deltapipe_stage.%I',
                   stg, stg || '_t', stg || '_d', stg || '_s', stg || '_c', stg || '_n')
            || ' CASCADE';  -- with the second half of a file COPY'd over two connections (an inheritance child)
    DELETE FROM deltapipe.staging WHERE table_name = stg;

    UPDATE deltapipe.node_run SET
        status = 'done', finished_at = clock_timestamp(), phases = node_run.phases || v_phases,
        mode = d->>'mode', strategy = a->>'strategy',
        rows_in = (v->>'rows_in')::bigint,
        inserted = (d->>'inserted')::bigint - (a->>'duplicates')::bigint, updated = (d->>'updated')::bigint,
        deleted = (d->>'deleted')::bigint, unchanged = (d->>'unchanged')::bigint,
        rejected = (v->>'rejected')::bigint + (d->>'refused')::bigint,
        duplicates = (d->>'duplicates')::bigint + (a->>'duplicates')::bigint,
        input_checksum = ds.checksum, output_checksum = (a->>'checksum')::numeric,
        source_file = coalesce(node_run.source_file, opts->>'source_file'),
        file_sha256 = coalesce(node_run.file_sha256, opts->>'file_sha256')
    WHERE id = nr_id;
    IF own_run THEN
        UPDATE deltapipe.run SET status = 'done', finished_at = clock_timestamp() WHERE id = run_id;
    END IF;
    SELECT to_jsonb(n) - 'phases' || jsonb_build_object('phases', n.phases, 'row_count', (a->>'row_count')::bigint)
      INTO result FROM deltapipe.node_run n WHERE n.id = nr_id;
END
$fn$;

COMMENT ON PROCEDURE deltapipe.load(text, text, jsonb, jsonb) IS
  'Load a staged file into its dataset in one transaction: validate, diff, apply; records run, counts, rejects and phase timings.';
