CREATE OR REPLACE FUNCTION deltapipe.run_node(p_node_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Execute one claimed model node of a pipeline run, in the caller's transaction:
-- skip it when its SQL fingerprint and input checksums equal those of its last
-- successful run not rolled back (and its table exists), else refresh it: from the changes of
-- its inputs (deltapipe._refresh_incremental) when it can, else in full
-- (deltapipe.refresh_model, which still emits only the net change). Then the
-- model's watermark moves to the inputs' current change positions. The model's
-- audits run on the new result before it is published; their results go to
-- deltapipe.audit_result. A blocking audit that finds rows rolls the refresh
-- back and fails the node (DP501): its downstream nodes do not run.
-- Both the Python workers and deltapipe.run_pipeline call this. Returns the node run.
DECLARE
    nr     deltapipe.node_run;
    r      deltapipe.run;
    m      record;
    v_inputs jsonb;
    last   record;
    res    jsonb;
    full_ref boolean;
    hi     jsonb := '{}';
    e      record;
    tbl    text;
    nrows  bigint;
    seq    bigint;
    snap   text;
    maxnr  bigint;
    why    text;
    audit_fail boolean := false;
    t_lock timestamptz;
    locks  numeric;
    tr_name text;
    tr_dataset text;
    tr_tbl text;
    ep     int;
    est    boolean;
    prev_writer text := current_setting('deltapipe.writer', true);
BEGIN
    SELECT * INTO nr FROM deltapipe.node_run WHERE id = p_node_run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DP205', MESSAGE = format('unknown node run %s', p_node_run_id);
    END IF;
    SELECT * INTO r FROM deltapipe.run WHERE id = nr.run_id;
    IF nr.node_kind <> 'model' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP206', MESSAGE = format('node %s is a %s node, not a model', nr.node, nr.node_kind),
            HINT = 'source files are loaded by the deltapipe controller (`deltapipe run`)';
    END IF;
    SELECT * INTO m FROM deltapipe.model WHERE pipeline = r.pipeline AND name = nr.node;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DP203', MESSAGE = format('unknown model %s in pipeline %s', nr.node, r.pipeline),
            HINT = 'deploy the pipeline with `deltapipe deploy DIR`';
    END IF;
    -- this refresh writes the model's table (deltapipe._model_guard lets it)
    PERFORM set_config('deltapipe.writer', 'refresh', true);
    v_inputs := deltapipe._node_inputs(r.pipeline, nr.node);
    full_ref := coalesce((r.args->>'full_refresh')::boolean, false);
    IF NOT full_ref AND to_regclass(format('%I.%I', m.target_schema, m.target_table)) IS NOT NULL THEN
        SELECT n.run_id, n.fingerprint, n.inputs INTO last
          FROM deltapipe.node_run n JOIN deltapipe.run x ON x.id = n.run_id
         WHERE x.pipeline = r.pipeline AND n.node = nr.node AND n.node_kind = 'model' AND n.status = 'done'
           AND x.status <> 'rolled_back'  -- (its table is back as it was before that run)
         ORDER BY n.id DESC LIMIT 1;
        IF FOUND AND last.fingerprint = m.fingerprint AND last.inputs = v_inputs THEN
            UPDATE deltapipe.node_run
               SET status = 'skipped', finished_at = clock_timestamp(), fingerprint = m.fingerprint, inputs = v_inputs,
                   output_checksum = m.checksum,
                   skip_reason = format('unchanged: same SQL and same inputs as in run %s', last.run_id)
             WHERE id = nr.id;
            PERFORM set_config('deltapipe.writer', coalesce(prev_writer, ''), true);
            RETURN (SELECT to_jsonb(n) FROM deltapipe.node_run n WHERE n.id = nr.id);
        END IF;
    END IF;
    -- the change position of every input: SHARE locks wait for writers of the
    -- inputs to commit and hold off new ones until this node commits (and wait for
    -- a VACUUM of an input too: phases.locks says how long)
    t_lock := clock_timestamp();
    FOR e IN SELECT upstream, upstream_kind FROM deltapipe.model_edge
              WHERE pipeline = r.pipeline AND node = nr.node AND upstream_kind <> 'external' ORDER BY upstream LOOP
        tr_name := NULL;
        tr_dataset := NULL;
        IF e.upstream_kind = 'source' THEN
            SELECT format('%I.%I', target_schema, target_table) INTO tbl FROM deltapipe.dataset WHERE name = e.upstream;
            SELECT x.name, x.dataset, format('%I.%I', x.target_schema, x.target_table) INTO tr_name, tr_dataset, tr_tbl
              FROM deltapipe.tracked x WHERE x.name = e.upstream;
            IF tbl IS NULL AND tr_name IS NOT NULL THEN
                tbl := tr_tbl;
            END IF;
        ELSE
            SELECT format('%I.%I', target_schema, target_table) INTO tbl FROM deltapipe.model
             WHERE pipeline = r.pipeline AND name = e.upstream;
        END IF;
        -- an upstream model this transaction has already written (CALL run_pipeline
        -- runs every node in one transaction) has no other writer to wait for: its
        -- node ran here, under the pipeline's lock; its SHARE lock would only wait
        -- for an autovacuum of it
        IF tbl IS NOT NULL AND to_regclass(tbl) IS NOT NULL
           AND NOT (e.upstream_kind = 'model' AND EXISTS (
                    SELECT 1 FROM pg_locks l
                     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.relation = tbl::regclass
                       AND l.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))) THEN
            EXECUTE format('LOCK TABLE %s IN SHARE MODE', tbl);
        END IF;
        -- its change position: a source's last changeset row, a model's last log position
        -- (a source's position is its last sequence number with the snapshot that saw it,
        -- read in one statement: deltapipe._changes_range reads from there exactly once)
        snap := NULL;
        ep := NULL;
        est := NULL;
        IF e.upstream_kind = 'source' AND tr_name IS NOT NULL AND tr_dataset IS NULL THEN
            -- a tracked table: a column change (ALTER TABLE) since it was last seen moves
            -- its epoch, as a TRUNCATE does: its readers refresh in full once
            IF to_regclass(tbl) IS NOT NULL THEN
                UPDATE deltapipe.tracked SET epoch = epoch + 1, columns = deltapipe._capture_columns(tbl::regclass)
                 WHERE name = tr_name AND columns IS DISTINCT FROM deltapipe._capture_columns(tbl::regclass);
            END IF;
            SELECT x.epoch INTO ep FROM deltapipe.tracked x WHERE x.name = tr_name;
            -- its row count: the planner's estimate when large, else counted
            nrows := (SELECT c.reltuples::bigint FROM pg_class c WHERE c.oid = to_regclass(tbl));
            est := true;
            IF coalesce(nrows, -1) < 100000 AND to_regclass(tbl) IS NOT NULL THEN
                EXECUTE format('SELECT count(*) FROM %s', tbl) INTO nrows;
                est := NULL;
            END IF;
            SELECT (SELECT coalesce(max(c.seq), 0) FROM deltapipe.changeset c WHERE c.node = e.upstream),
                   pg_current_snapshot()::text
              INTO seq, snap;
        ELSIF e.upstream_kind = 'source' THEN
            SELECT row_count, (SELECT coalesce(max(c.seq), 0) FROM deltapipe.changeset c WHERE c.node = e.upstream),
                   deltapipe._own_snapshot()
              INTO nrows, seq, snap FROM deltapipe.dataset WHERE name = e.upstream;
            IF tr_name IS NOT NULL THEN
                SELECT x.epoch INTO ep FROM deltapipe.tracked x WHERE x.name = tr_name;
            END IF;
        ELSE
            SELECT row_count, log_seq INTO nrows, seq FROM deltapipe.model WHERE pipeline = r.pipeline AND name = e.upstream;
        END IF;
        hi := hi || jsonb_build_object(e.upstream, jsonb_strip_nulls(jsonb_build_object('seq', coalesce(seq, 0), 'rows', nrows,
                                                                                        'snap', snap, 'ep', ep, 'est', est)));
    END LOOP;
    SELECT coalesce(max(id), 0) INTO maxnr FROM deltapipe.node_run;
    locks := round(extract(epoch FROM clock_timestamp() - t_lock)::numeric * 1000, 1);
    -- a subtransaction: when a blocking audit finds rows in the new result, every
    -- change of the refresh is rolled back (res, a variable, survives)
    BEGIN
        res := deltapipe._refresh_incremental(r.pipeline, nr.node, nr.run_id, r.args, hi);
        IF res ? 'fallback' THEN
            why := res->>'fallback';
            res := deltapipe.refresh_model(r.pipeline, nr.node, nr.run_id, r.args);
        END IF;
        IF res ? 'audit_failed' THEN
            RAISE EXCEPTION USING ERRCODE = 'DP501', MESSAGE = res->>'audit_failed';
        END IF;
        UPDATE deltapipe.model
           SET watermark = (SELECT jsonb_object_agg(k, v || jsonb_build_object('nr', maxnr)) FROM jsonb_each(hi) x(k, v))
         WHERE pipeline = r.pipeline AND name = nr.node;
    EXCEPTION WHEN SQLSTATE 'DP501' THEN
        audit_fail := true;
    END;
    INSERT INTO deltapipe.audit_result (run_id, node, audit, blocking, failing_rows, sample)
    SELECT nr.run_id, nr.node, x->>'audit', (x->>'blocking')::boolean, (x->>'failing_rows')::bigint, x->'sample'
      FROM jsonb_array_elements(coalesce(res->'audits', '[]')) x
    ON CONFLICT (run_id, node, audit) DO UPDATE
       SET blocking = excluded.blocking, failing_rows = excluded.failing_rows, sample = excluded.sample,
           checked_at = now();
    IF audit_fail THEN
        UPDATE deltapipe.node_run SET fingerprint = m.fingerprint, inputs = v_inputs, full_because = why,
                                      phases = coalesce(res->'phases', '{}') || jsonb_build_object('locks', locks),
                                      rows_in = (res->>'rows_in')::bigint
         WHERE id = nr.id;
        PERFORM deltapipe._node_failed(nr.id, (res->>'audit_failed') ||
                    ' (the table keeps its last good state; offending rows: deltapipe runs show ' || nr.run_id || ')',
                    'DP501');
        PERFORM set_config('deltapipe.writer', coalesce(prev_writer, ''), true);
        RETURN (SELECT to_jsonb(n) FROM deltapipe.node_run n WHERE n.id = nr.id);
    END IF;
    UPDATE deltapipe.node_run
       SET status = 'done', finished_at = clock_timestamp(), fingerprint = m.fingerprint, inputs = v_inputs,
           strategy = res->>'strategy', phases = coalesce(res->'phases', '{}') || jsonb_build_object('locks', locks),
           full_because = why,
           rows_in = (res->>'rows_in')::bigint, inserted = (res->>'inserted')::bigint,
           updated = (res->>'updated')::bigint, deleted = (res->>'deleted')::bigint,
           unchanged = (res->>'unchanged')::bigint, output_checksum = (res->>'checksum')::numeric,
           input_checksum = m.checksum
     WHERE id = nr.id;
    -- a model's table is written by its refresh only (deltapipe._model_guard)
    PERFORM deltapipe._model_guard_install(r.pipeline, nr.node);
    PERFORM set_config('deltapipe.writer', coalesce(prev_writer, ''), true);
    RETURN (SELECT to_jsonb(n) FROM deltapipe.node_run n WHERE n.id = nr.id);
END
$fn$;

COMMENT ON FUNCTION deltapipe.run_node(bigint) IS
  'Execute one claimed model node of a pipeline run: skip it when SQL and inputs are unchanged since its last successful run, else refresh it.';
