CREATE OR REPLACE PROCEDURE deltapipe.rollback(p_run bigint, p_cascade boolean DEFAULT false,
                                               INOUT result jsonb DEFAULT NULL)
LANGUAGE plpgsql
AS $fn$
-- Restore every table run p_run changed to its state before the run, from the
-- recorded before-images, with the checksums and row counts of datasets and
-- models (and the versions of a dataset's history table). The changes the run recorded stay, under a run marked rolled_back:
-- incremental refreshes skip them. If a later run changed
-- one of those tables, refuse and name it, or (p_cascade) roll that run back
-- first. All in one transaction.
--   CALL deltapipe.rollback(42);
DECLARE
    r       deltapipe.run;
    later   record;
    nd      record;
    tbl     text;
    keys    text[];
    n       bigint;
    restored jsonb := '[]';
    cascaded jsonb := '[]';
    sub     jsonb;
    prev_writer text;
BEGIN
    SELECT * INTO r FROM deltapipe.run WHERE id = p_run FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DP030', MESSAGE = format('unknown run %s', p_run),
            HINT = 'list runs with `deltapipe runs`';
    END IF;
    IF r.kind = 'capture' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP034', MESSAGE = format('run %s is the change capture of %s: it cannot be rolled back', p_run,
                                                                 coalesce(r.args->>'table', r.args->>'dataset')),
            HINT = 'undo the writes with SQL: they are captured as new changes';
    END IF;
    -- the rollback's own writes are not captured (deltapipe._capture_install) and may write models' tables
    prev_writer := current_setting('deltapipe.writer', true);
    PERFORM set_config('deltapipe.writer', 'rollback', true);
    IF r.status = 'rolled_back' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP031', MESSAGE = format('run %s is already rolled back', p_run);
    END IF;
    IF r.status = 'running' AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.backend_pid) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP032', MESSAGE = format('run %s is still running', p_run),
            HINT = 'wait for it to finish';
    END IF;
    -- later runs that changed the same tables
    FOR later IN
        SELECT DISTINCT n2.run_id, n2.node
          FROM deltapipe.node_run n1
          JOIN deltapipe.node_run n2 ON n2.node = n1.node AND n2.node_kind = n1.node_kind AND n2.run_id > n1.run_id
          JOIN deltapipe.run r2 ON r2.id = n2.run_id
         WHERE n1.run_id = p_run AND n1.status = 'done' AND n2.status = 'done' AND r2.status <> 'rolled_back'
           AND (n2.inserted + n2.updated + n2.deleted > 0 OR n2.strategy = 'create')
         ORDER BY n2.run_id DESC
    LOOP
        IF NOT p_cascade THEN
            RAISE EXCEPTION USING ERRCODE = 'DP033',
                MESSAGE = format('run %s changed %s after run %s: roll back run %s first, or use --cascade',
                                 later.run_id, later.node, p_run, later.run_id),
                HINT = 'deltapipe rollback RUN --cascade rolls back the later runs too, newest first';
        END IF;
        IF (SELECT status FROM deltapipe.run WHERE id = later.run_id) <> 'rolled_back' THEN
            CALL deltapipe.rollback(later.run_id, true, sub);
            cascaded := cascaded || jsonb_build_array(later.run_id);
        END IF;
    END LOOP;

    FOR nd IN SELECT * FROM deltapipe.node_run WHERE run_id = p_run AND status = 'done'
                 AND (inserted + updated + deleted > 0 OR strategy = 'create') ORDER BY id DESC LOOP
        IF nd.node_kind = 'load' THEN
            SELECT format('%I.%I', target_schema, target_table), key_cols INTO tbl, keys
              FROM deltapipe.dataset WHERE name = nd.node FOR UPDATE;
        ELSE
            SELECT format('%I.%I', target_schema, target_table), key_cols INTO tbl, keys
              FROM deltapipe.model WHERE name = nd.node AND pipeline = r.pipeline;
        END IF;
        IF tbl IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'DP034', MESSAGE = format('%s of run %s no longer exists: cannot restore it', nd.node, p_run);
        END IF;
        IF keys IS NULL OR cardinality(keys) = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'DP034', MESSAGE = format('%s has no key: its changes cannot be undone row by row', nd.node);
        END IF;
        -- a model's changes must all still be in its change log (a model whose
        -- columns changed got a new log; a rebuild with new columns logs nothing)
        IF nd.node_kind = 'model' AND nd.strategy = 'rebuild' THEN
            RAISE EXCEPTION USING ERRCODE = 'DP034',
                MESSAGE = format('model %s got new columns in run %s: its old rows cannot be restored row by row', nd.node, p_run),
                HINT = 'deploy the old SQL and run the pipeline with --full-refresh';
        END IF;
        IF nd.node_kind = 'model' AND nd.strategy <> 'create'
           AND (SELECT count(*) FROM deltapipe.changes(r.pipeline, nd.node, p_run))
               + (SELECT count(*) FROM deltapipe.changeset c WHERE c.run_id = p_run AND c.node = nd.node)
               <> nd.inserted + nd.updated + nd.deleted THEN
            RAISE EXCEPTION USING ERRCODE = 'DP034',
                MESSAGE = format('the change log of model %s no longer holds the changes of run %s: cannot restore it', nd.node, p_run),
                DETAIL = 'the model''s columns changed after the run, which starts a new change log',
                HINT = 'deploy the old SQL and run the pipeline with --full-refresh';
        END IF;
        n := deltapipe._restore_node(p_run, nd.node, nd.node_kind, nd.strategy, tbl, keys);
        IF nd.node_kind = 'load' THEN
            -- history mode: the versions the load opened and closed
            PERFORM deltapipe._history_restore(p_run, nd.node, nd.valid_at);
            IF nd.strategy = 'create' THEN
                UPDATE deltapipe.dataset SET checksum = 0, row_count = 0, last_file_sha256 = NULL WHERE name = nd.node;
            ELSE
                -- (a FROM, not a row subquery: Citus mistypes the sum of a row subquery over a distributed table)
                EXECUTE format('UPDATE deltapipe.dataset SET checksum = s.c, row_count = s.n, last_file_sha256 = NULL
                                  FROM (SELECT coalesce(sum(_dp_hash::numeric), 0) AS c, count(*) AS n FROM %s) s
                                WHERE name = %L', tbl, nd.node);
            END IF;
        ELSIF nd.strategy <> 'create' THEN
            -- a model's checksum and row count, as its refreshes keep them (downstream
            -- models compare their inputs' counts with the changes they read)
            EXECUTE format('UPDATE deltapipe.model SET checksum = s.c, row_count = s.n
                              FROM (SELECT coalesce(sum(_dp_hash::numeric), 0) AS c, count(*) AS n FROM %s) s
                            WHERE pipeline = %L AND name = %L', tbl, r.pipeline, nd.node);
        END IF;
        restored := restored || jsonb_build_object('node', nd.node, 'table', tbl, 'rows', n, 'strategy', nd.strategy);
        tbl := NULL;
    END LOOP;
    UPDATE deltapipe.run SET status = 'rolled_back',
           error = concat_ws('; ', error, format('rolled back at %s', clock_timestamp()))
     WHERE id = p_run;
    result := jsonb_build_object('run', p_run, 'restored', restored, 'cascaded', cascaded);
    PERFORM set_config('deltapipe.writer', coalesce(prev_writer, ''), true);
END
$fn$;

COMMENT ON PROCEDURE deltapipe.rollback(bigint, boolean, jsonb) IS
  'Restore every table a run changed to its state before the run (from changeset before-images); refuses if a later run changed them unless p_cascade.';
