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
--
-- The steps, each a private routine deltapipe._refresh_*:
--   1 build            the SELECT into the new table, with row hashes
--     build_distributed  the same for a distributed (Citus) model: empty, keyed, distributed, then filled
--     lookup_index     (after the audits) the index later refreshes find rows or groups by
--     primary_key      a keyed model's primary key (DP204 when the key does not hold)
--   2 inspect_target   the views reading the target, its row count, same shape or not
--     diff_keyed       the net delta by key and row hash, into _dp_delta and the change log
--     diff_keyless     the same for a keyless model, as multisets of row hashes
--     strategy         merge, swap or none, whichever is cheaper
--   3 create           a first build: the new table becomes the target
--     merge_keyless    a small keyless table: unmatched old copies deleted, new ones inserted
--     merge_keyed      MERGE of the delta by key
--     diff_distributed, merge_distributed
--                      the same for a distributed (Citus) model, shard by shard, by key (no ctid, no MERGE)
--     swap             swap or rebuild: the new table renamed in, grants and probed indexes carried over
--     probe_indexes    a new table: the indexes the affected-key refreshes of its readers probe
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
    audits     jsonb;
    small      boolean;
    dist       boolean;
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
    -- a distributed (Citus) model: its table is one, or pipeline.toml says [models.NAME] distributed = true
    dist    := deltapipe._is_distributed(to_regclass(target))
               OR coalesce((SELECT (p.config->'distributed') ? p_model FROM deltapipe.pipeline p WHERE p.name = p_pipeline), false);
    IF dist AND NOT keyed THEN
        RAISE EXCEPTION USING ERRCODE = 'DP045',
            MESSAGE = format('model %s is distributed but has no key: a Citus table is distributed by its first key column', p_model),
            HINT = 'give the model a -- key: header, or do not distribute it';
    END IF;
    -- a small table rebuilt outside a full refresh (an incremental run's fallback)
    -- is built as a temporary table and its net change applied in place: creating
    -- and dropping a table costs DDL and, at commit, a synchronous flush of all the
    -- WAL the transaction wrote (one that drops a relation cannot commit
    -- asynchronously): in a run of many nodes in one transaction, far more than
    -- rewriting a few thousand rows
    small   := NOT full_ref AND NOT dist AND strategy = 'auto' AND to_regclass(target) IS NOT NULL
               AND coalesce(m.row_count <= 10000, false);
    IF small THEN
        newt := format('pg_temp.%I', tmpname);
    END IF;
    IF to_regnamespace(quote_ident(m.target_schema)) IS NULL THEN
        EXECUTE format('CREATE SCHEMA %I', m.target_schema);
    END IF;

    -- 1. build
    IF dist THEN
        -- a distributed model: a local table of a model declared distributed since its last refresh is
        -- distributed first; the new table is built empty, keyed, distributed in the target's
        -- co-location group, then filled, so that the diff and the merge run shard by shard
        IF to_regclass(target) IS NOT NULL AND NOT deltapipe._is_distributed(to_regclass(target)) THEN
            PERFORM deltapipe._distribute(target, m.key_cols[1]);
        END IF;
        SELECT b.cols, b.n_new INTO cols, n_new
          FROM deltapipe._refresh_build_distributed(m.target_schema, m.sql, m.state_sql, m.hidden_cols, m.shape, newt,
                                                    m.name, tmpname, m.key_cols, m.agg_spec) b;
    ELSE
        SELECT b.cols, b.n_new INTO cols, n_new
          FROM deltapipe._refresh_build(m.target_schema, m.sql, m.state_sql, m.hidden_cols, m.shape, newt) b;
    END IF;
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
    IF NOT dist THEN  -- (a distributed model's new table has them already)
        PERFORM deltapipe._refresh_lookup_index(newt, cols, m.agg_spec, keyed);
        IF keyed THEN
            PERFORM deltapipe._refresh_primary_key(m.name, newt, tmpname, m.key_cols);
        END IF;
    END IF;
    EXECUTE format('SELECT coalesce(sum(_dp_hash::numeric), 0) FROM %s', newt) INTO csum;
    phases := jsonb_build_object('build', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
    t0 := clock_timestamp();

    -- 2. diff
    IF to_regclass(target) IS NULL THEN
        strategy := 'create';
        ins := n_new;
    ELSE
        SELECT i.dependents, i.n_old, i.same INTO dependents, n_old, same
          FROM deltapipe._refresh_inspect_target(target, newt) i;
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
        ELSIF dist THEN
            SELECT d.ins, d.upd, d.del INTO ins, upd, del
              FROM deltapipe._refresh_diff_distributed(m.pipeline, m.name, p_run_id, target, newt, m.key_cols) d;
        ELSIF keyed THEN
            SELECT d.ins, d.upd, d.del INTO ins, upd, del
              FROM deltapipe._refresh_diff_keyed(m.pipeline, m.name, p_run_id, target, newt, m.key_cols) d;
        ELSE
            SELECT d.ins, d.del INTO ins, del
              FROM deltapipe._refresh_diff_keyless(m.pipeline, m.name, p_run_id, target, newt) d;
        END IF;
        strategy := deltapipe._refresh_strategy(strategy, small, keyed, full_ref, threshold, ins + upd + del,
                                                n_old, dependents, same);
    END IF;
    phases := phases || jsonb_build_object('diff', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
    t0 := clock_timestamp();

    -- 3. apply
    IF strategy = 'create' THEN
        PERFORM deltapipe._refresh_create(m.pipeline, m.name, target, newt, m.target_table, tmpname, pkname, keyed);
    ELSIF strategy = 'none' THEN
        EXECUTE format('DROP TABLE %s', newt);
    ELSIF strategy = 'merge' AND dist THEN
        PERFORM deltapipe._refresh_merge_distributed(target, newt, m.key_cols);
    ELSIF strategy = 'merge' AND NOT keyed THEN
        PERFORM deltapipe._refresh_merge_keyless(target, newt);
    ELSIF strategy = 'merge' THEN
        PERFORM deltapipe._refresh_merge_keyed(target, newt, m.key_cols);
    ELSE  -- swap or rebuild
        PERFORM deltapipe._refresh_swap(m.pipeline, m.name, target, newt, m.target_schema, m.target_table,
                                        tmpname, oldname, pkname, keyed);
    END IF;
    DROP TABLE IF EXISTS pg_temp._dp_delta;
    -- a new table (or one with new columns) gets its change log now, not in its
    -- first incremental refresh
    IF strategy IN ('create', 'rebuild') THEN
        PERFORM deltapipe._model_log(m.pipeline, m.name, true);
    END IF;
    -- a new table gets the indexes the affected-key refreshes of the models reading it probe
    IF strategy IN ('create', 'rebuild', 'swap') THEN
        PERFORM deltapipe._refresh_probe_indexes(target);
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
