CREATE OR REPLACE FUNCTION deltapipe.refresh_model(p_pipeline text, p_model text, p_run_id bigint,
                                                   p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Rebuild one model and publish the net change, in the caller's transaction.
-- 1. build: CREATE TABLE <model>__dp_new AS the model's SELECT, with a row hash
--    (_dp_hash) and, when the model has a key, its primary key.
-- 2. diff: when the target exists with the same columns and key, compare by key
--    and row hash into the net delta, recorded in the model's change log
--    (deltapipe._model_log: op I/U/D, new and old row). Keyless models are
--    compared by row hash.
-- 3. apply, whichever is cheaper: MERGE only the delta into the target, or (full
--    refresh, a first build, a new shape, a delta above swap_threshold of the
--    table, a keyless model) swap the new table in by rename. A table of at most
--    10,000 rows rebuilt outside a full refresh is built as a temporary table and
--    always changed in place (keyless: its unmatched old copies deleted, new ones
--    inserted): no table is created or dropped, so the transaction can still
--    commit without waiting for its WAL to be flushed.
-- The model's audits (deltapipe._run_audits) run on the built table before 2.:
-- when a blocking one finds rows, nothing is published and the result says
-- {"strategy": "audit_failed", "audit_failed": message, "audits": [...]}.
-- Options: full_refresh (bool), swap_threshold (default 0.25), strategy (auto|merge|swap).
DECLARE
    m          record;
    target     text;
    tmpname    text;
    oldname    text;
    pkname     text;
    newt       text;
    full_ref   boolean := coalesce((p_options->>'full_refresh')::boolean, false);
    threshold  numeric := coalesce((p_options->>'swap_threshold')::numeric, 0.25);
    strategy   text := coalesce(p_options->>'strategy', 'auto');
    keyed      boolean;
    klist      text;
    kjoin      text;
    n_new      bigint;
    n_old      bigint;
    csum       numeric;
    ins        bigint := 0;
    upd        bigint := 0;
    del        bigint := 0;
    same       boolean;
    dependents int := 0;
    cols       text[];
    old_path   text := current_setting('search_path');
    t0         timestamptz := clock_timestamp();
    phases     jsonb := '{}';
    acl        record;
    audits     jsonb;
    small      boolean;
    probes     text[];
BEGIN
    SELECT * INTO m FROM deltapipe.model WHERE pipeline = p_pipeline AND name = p_model;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DP203', MESSAGE = format('unknown model %s in pipeline %s', p_model, p_pipeline),
            HINT = 'deploy the pipeline with `deltapipe deploy DIR`';
    END IF;
    target  := format('%I.%I', m.target_schema, m.target_table);
    tmpname := left(m.target_table, 40) || '__dp_new';
    oldname := left(m.target_table, 40) || '__dp_old';
    pkname  := left(m.target_table, 58) || '_pkey';
    newt    := format('%I.%I', m.target_schema, tmpname);
    keyed   := m.key_cols IS NOT NULL AND cardinality(m.key_cols) > 0;
    -- a small table rebuilt outside a full refresh (an incremental run's fallback)
    -- is built as a temporary table and its net change applied in place: creating
    -- and dropping a table costs DDL and, at commit, a synchronous flush of all the
    -- WAL the transaction wrote (one that drops a relation cannot commit
    -- asynchronously): in a run of many nodes in one transaction, far more than
    -- rewriting a few thousand rows
    small   := NOT full_ref AND strategy = 'auto' AND to_regclass(target) IS NOT NULL
               AND coalesce(m.row_count <= 10000, false);
    IF small THEN
        newt := format('pg_temp.%I', tmpname);
    END IF;
    IF to_regnamespace(quote_ident(m.target_schema)) IS NULL THEN
        EXECUTE format('CREATE SCHEMA %I', m.target_schema);
    END IF;

    -- 1. build
    PERFORM set_config('search_path', format('%I, public', m.target_schema), true);
    EXECUTE format('DROP TABLE IF EXISTS %s', newt);
    -- the SELECT's columns (a SELECT * over another model brings its _dp_hash: left out)
    DROP TABLE IF EXISTS pg_temp._dp_shape;
    EXECUTE format('CREATE TEMP TABLE _dp_shape AS SELECT * FROM (%s) _dp_q LIMIT 0', m.sql);
    cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                   WHERE a.attrelid = 'pg_temp._dp_shape'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attname NOT LIKE '\_dp\_%' ORDER BY a.attnum);
    DROP TABLE pg_temp._dp_shape;
    -- aggregate and distinct models keep hidden state columns (counts, sums, group hash)
    cols := cols || coalesce(m.hidden_cols, '{}');
    -- free space in every page, so that the updates of later refreshes stay on their
    -- page (HOT: no new index entry, no new page); aggregate and distinct tables,
    -- whose groups are updated in place, keep more
    EXECUTE format('CREATE TABLE %s WITH (fillfactor = %s) AS SELECT %s, hashtextextended(ROW(%s)::text, 0) AS _dp_hash FROM (%s) _dp_q',
                   newt, CASE WHEN m.shape IN ('aggregate', 'distinct') THEN 80 ELSE 90 END, (SELECT string_agg(format('_dp_q.%I', c), ', ') FROM unnest(cols) c),
                   (SELECT string_agg(format('_dp_q.%I', c), ', ') FROM unnest(cols) c), coalesce(m.state_sql, m.sql));
    GET DIAGNOSTICS n_new = ROW_COUNT;
    PERFORM set_config('search_path', old_path, true);
    IF small AND n_new > 100000 THEN
        -- the small table grew large: swapped in, built again as a table of its schema
        EXECUTE format('DROP TABLE %s', newt);
        RETURN deltapipe.refresh_model(p_pipeline, p_model, p_run_id, p_options || '{"strategy": "swap"}');
    END IF;
    -- audits run on the built result, before it is keyed, diffed or published:
    -- a failing blocking audit publishes nothing (the table keeps its last good state)
    audits := deltapipe._run_audits(m.pipeline, m.name, newt::regclass);
    IF audits->>'failed' IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', newt);
        RETURN jsonb_build_object('strategy', 'audit_failed', 'audit_failed', audits->>'failed',
                                  'audits', audits->'results', 'rows_in', n_new, 'inserted', 0, 'updated', 0,
                                  'deleted', 0, 'unchanged', 0, 'checksum', m.checksum, 'row_count', m.row_count,
                                  'phases', jsonb_build_object('build', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1)));
    END IF;
    IF '_dp_gh' = ANY (cols) AND jsonb_array_length(coalesce(m.agg_spec->'groups', '[]')) > 0 AND NOT EXISTS (
           SELECT 1 FROM jsonb_array_elements(m.agg_spec->'groups') g
             JOIN pg_attribute a ON a.attrelid = newt::regclass AND a.attname = g->>'col'
            WHERE NOT deltapipe._hashes_by_value(a.atttypid)) THEN
        -- an incremental refresh finds a group by the values of its group columns (equal
        -- values, as 1.0 and 1.00, hash alike), not by the text of the group's key
        EXECUTE format('CREATE INDEX ON %s ((hash_record_extended(ROW(%s), 0)))', newt,
                       (SELECT string_agg(format('%I', g->>'col'), ', ' ORDER BY (g->>'g')::int)
                          FROM jsonb_array_elements(m.agg_spec->'groups') g));
    ELSIF '_dp_gh' = ANY (cols) THEN
        EXECUTE format('CREATE INDEX ON %s (_dp_gh)', newt);
    ELSIF NOT (m.key_cols IS NOT NULL AND cardinality(m.key_cols) > 0) THEN
        EXECUTE format('CREATE INDEX ON %s (_dp_hash)', newt);
    END IF;
    IF keyed THEN
        klist := (SELECT string_agg(format('%I', k), ', ') FROM unnest(m.key_cols) k);
        BEGIN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (%s)', newt, tmpname || '_pkey', klist);
        EXCEPTION
            WHEN unique_violation OR not_null_violation THEN
                RAISE EXCEPTION USING ERRCODE = 'DP204',
                    MESSAGE = format('model %s: key (%s) is not unique or has nulls', m.name, array_to_string(m.key_cols, ', ')),
                    DETAIL = SQLERRM,
                    HINT = 'fix the SELECT or the -- key: header of the model';
            WHEN undefined_column THEN
                RAISE EXCEPTION USING ERRCODE = 'DP204',
                    MESSAGE = format('model %s: key column not in its SELECT', m.name),
                    DETAIL = SQLERRM, HINT = 'fix the -- key: header of the model';
        END;
    END IF;
    EXECUTE format('SELECT coalesce(sum(_dp_hash::numeric), 0) FROM %s', newt) INTO csum;
    phases := jsonb_build_object('build', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
    t0 := clock_timestamp();

    -- 2. diff
    IF to_regclass(target) IS NULL THEN
        strategy := 'create';
        ins := n_new;
    ELSE
        SELECT count(*) INTO dependents FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
         WHERE d.refobjid = target::regclass AND d.classid = 'pg_rewrite'::regclass AND r.ev_class <> target::regclass;
        EXECUTE format('SELECT count(*) FROM %s', target) INTO n_old;
        same := deltapipe._table_shape(target::regclass) = deltapipe._table_shape(newt::regclass);
        DROP TABLE IF EXISTS pg_temp._dp_delta;
        IF NOT same AND small THEN
            -- a new shape is swapped in: built again as a table of its schema
            EXECUTE format('DROP TABLE %s', newt);
            PERFORM set_config('search_path', old_path, true);
            RETURN deltapipe.refresh_model(p_pipeline, p_model, p_run_id, p_options || '{"strategy": "swap"}');
        END IF;
        IF NOT same THEN
            strategy := 'rebuild';  -- a new shape: nothing logged, downstream refreshes in full
            ins := n_new;
            del := n_old;
        ELSIF keyed THEN
            kjoin := (SELECT string_agg(format('n.%1$I = o.%1$I', k), ' AND ') FROM unnest(m.key_cols) k);
            EXECUTE format('CREATE TEMP TABLE _dp_delta AS
                            SELECT CASE WHEN o._dp_hash IS NULL THEN %L WHEN n._dp_hash IS NULL THEN %L ELSE %L END AS _dp_op,
                                   %s, o.ctid AS _dp_otid, n.ctid AS _dp_ntid
                              FROM %s n FULL JOIN %s o ON %s
                             WHERE n._dp_hash IS DISTINCT FROM o._dp_hash',
                           'I', 'D', 'U',
                           (SELECT string_agg(format('coalesce(n.%1$I, o.%1$I) AS %1$I', k), ', ') FROM unnest(m.key_cols) k),
                           newt, target, kjoin);
            PERFORM deltapipe._log_delta(m.pipeline, m.name, p_run_id, target, newt);
            SELECT count(*) FILTER (WHERE _dp_op = 'I'), count(*) FILTER (WHERE _dp_op = 'U'),
                   count(*) FILTER (WHERE _dp_op = 'D')
              INTO ins, upd, del FROM pg_temp._dp_delta;
        ELSE
            -- a multiset: the k-th copy of a row matches the k-th copy on the other side
            EXECUTE format('CREATE TEMP TABLE _dp_delta AS
                            SELECT CASE WHEN n._dp_hash IS NULL THEN %1$L ELSE %2$L END AS _dp_op,
                                   o._dp_tid AS _dp_otid, n._dp_tid AS _dp_ntid
                              FROM (SELECT _dp_hash, ctid AS _dp_tid,
                                           row_number() OVER (PARTITION BY _dp_hash) AS _dp_rn FROM %3$s x) o
                              FULL JOIN (SELECT _dp_hash, ctid AS _dp_tid,
                                                row_number() OVER (PARTITION BY _dp_hash) AS _dp_rn FROM %4$s x) n
                                ON n._dp_hash = o._dp_hash AND n._dp_rn = o._dp_rn
                             WHERE n._dp_hash IS NULL OR o._dp_hash IS NULL',
                           'D', 'I', target, newt);
            PERFORM deltapipe._log_delta(m.pipeline, m.name, p_run_id, target, newt);
            SELECT count(*) FILTER (WHERE _dp_op = 'I'), count(*) FILTER (WHERE _dp_op = 'D')
              INTO ins, del FROM pg_temp._dp_delta;
        END IF;
        IF strategy = 'auto' THEN
            strategy := CASE WHEN small THEN 'merge'
                             WHEN NOT keyed OR full_ref OR ins + upd + del > threshold * greatest(n_old, 1)
                             THEN 'swap' ELSE 'merge' END;
        END IF;
        IF strategy = 'swap' AND dependents > 0 AND same AND keyed THEN
            strategy := 'merge';  -- views read the table: keep it, change its rows
        END IF;
        IF same AND ins + upd + del = 0 THEN
            strategy := 'none';
        END IF;
    END IF;
    phases := phases || jsonb_build_object('diff', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
    t0 := clock_timestamp();

    -- 3. apply
    IF strategy = 'create' THEN
        EXECUTE format('ALTER TABLE %s RENAME TO %I', newt, m.target_table);
        IF keyed THEN
            EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', target, tmpname || '_pkey', pkname);
        END IF;
        EXECUTE format('COMMENT ON TABLE %s IS %L', target, format('deltapipe model %s.%s', m.pipeline, m.name));
    ELSIF strategy = 'none' THEN
        EXECUTE format('DROP TABLE %s', newt);
    ELSIF strategy = 'merge' AND NOT keyed THEN
        -- keyless (a small table only): the old copies left unmatched go, the new ones come
        cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                       WHERE a.attrelid = newt::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum);
        EXECUTE format('DELETE FROM %s t USING pg_temp._dp_delta d WHERE d._dp_op = %L AND t.ctid = d._dp_otid',
                       target, 'D');
        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s n JOIN pg_temp._dp_delta d ON n.ctid = d._dp_ntid
                         WHERE d._dp_op = %L',
                       target, (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg(format('n.%I', c), ', ') FROM unnest(cols) c), newt, 'I');
        EXECUTE format('DROP TABLE %s', newt);
    ELSIF strategy = 'merge' THEN
        cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                       WHERE a.attrelid = newt::regclass AND a.attnum > 0 AND NOT a.attisdropped
                         AND a.attname <> '_dp_hash' ORDER BY a.attnum);
        EXECUTE format('MERGE INTO %s t
                        USING (SELECT d._dp_op, %s%s n._dp_hash FROM pg_temp._dp_delta d LEFT JOIN %s n ON %s) s
                           ON %s
                        WHEN MATCHED AND s._dp_op = %L THEN DELETE
                        WHEN MATCHED THEN UPDATE SET %s
                        WHEN NOT MATCHED THEN INSERT (%s, _dp_hash) VALUES (%s, s._dp_hash)',
                       target,
                       (SELECT string_agg(format('d.%I, ', k), '') FROM unnest(m.key_cols) k),
                       coalesce((SELECT string_agg(format('n.%I, ', c), '') FROM unnest(cols) c WHERE c <> ALL (m.key_cols)), ''),
                       newt,
                       (SELECT string_agg(format('d.%1$I = n.%1$I', k), ' AND ') FROM unnest(m.key_cols) k),
                       (SELECT string_agg(format('t.%1$I = s.%1$I', k), ' AND ') FROM unnest(m.key_cols) k),
                       'D',
                       (SELECT string_agg(format('%1$I = s.%1$I', c), ', ') FROM unnest(cols || '_dp_hash'::text) c
                         WHERE c <> ALL (m.key_cols)),
                       (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c));
        EXECUTE format('DROP TABLE %s', newt);
    ELSE  -- swap or rebuild
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', target);
        FOR acl IN SELECT a.grantee, a.privilege_type
                     FROM pg_class c, aclexplode(c.relacl) a
                    WHERE c.oid = target::regclass AND a.grantee <> c.relowner LOOP
            EXECUTE format('GRANT %s ON %s TO %s', acl.privilege_type, newt,
                           CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(acl.grantee::regrole::text) END);
        END LOOP;
        probes := deltapipe._probe_columns(target::regclass);
        EXECUTE format('DROP TABLE IF EXISTS %I.%I', m.target_schema, oldname);
        EXECUTE format('ALTER TABLE %s RENAME TO %I', target, oldname);
        EXECUTE format('ALTER TABLE %s RENAME TO %I', newt, m.target_table);
        EXECUTE format('DROP TABLE %I.%I', m.target_schema, oldname);
        -- the indexes affected-key refreshes of downstream models probe, built again
        PERFORM deltapipe._ensure_index(target, c) FROM unnest(probes) c;
        IF keyed THEN
            EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', target, tmpname || '_pkey', pkname);
        END IF;
        EXECUTE format('COMMENT ON TABLE %s IS %L', target, format('deltapipe model %s.%s', m.pipeline, m.name));
    END IF;
    DROP TABLE IF EXISTS pg_temp._dp_delta;
    -- a new table (or one with new columns) gets its change log now, not in its
    -- first incremental refresh
    IF strategy IN ('create', 'rebuild') THEN
        PERFORM deltapipe._model_log(m.pipeline, m.name, true);
    END IF;
    -- a new table gets the indexes the affected-key refreshes of the models reading it probe
    IF strategy IN ('create', 'rebuild', 'swap') THEN
        PERFORM deltapipe._ensure_index(target, ix->>'column')
           FROM deltapipe.model d, jsonb_array_elements(coalesce(d.program->'indexes', '[]')) ix
          WHERE d.shape = 'keys' AND to_regclass(ix->>'table') = target::regclass;
    END IF;
    phases := phases || jsonb_build_object('apply', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
    UPDATE deltapipe.model SET checksum = csum, row_count = n_new, last_refreshed_at = now()
     WHERE pipeline = m.pipeline AND name = m.name;
    RETURN jsonb_build_object('strategy', strategy, 'rows_in', n_new, 'inserted', ins, 'updated', upd,
                              'deleted', del, 'unchanged', greatest(n_new - ins - upd, 0),
                              'checksum', csum, 'row_count', n_new, 'phases', phases, 'audits', audits->'results');
END
$fn$;

COMMENT ON FUNCTION deltapipe.refresh_model(text, text, bigint, jsonb) IS
  'Rebuild a model: build its SELECT, diff it with the current table, then MERGE the net delta or swap the new table in (whichever is cheaper); records the delta in the model''s change log.';
