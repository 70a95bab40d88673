CREATE OR REPLACE FUNCTION deltapipe._refresh_incremental(p_pipeline text, p_model text, p_run_id bigint,
                                                          p_options jsonb, p_hi jsonb)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Refresh one model from the changes of its inputs, in the caller's transaction:
-- 1. per input, its net change since the model's watermark (_input_delta, or the
--    delta an upstream refresh of this session kept: pg_temp._dp_cache), or a reason
--    to refresh in full (a change above the threshold, a rebuilt input, a log that
--    does not add up, a guard of the compiled program that fired);
-- 2. the model's compiled refresh program (model.program.steps, made at deploy) run
--    by the generic executor deltapipe._refresh_program: it applies the change to
--    the table, writes the model's change log (deltapipe._model_log) and keeps its
--    delta (a temp view) for the models downstream;
-- 3. the kept delta registered (pg_temp._dp_cache), the model's checksum and row
--    count moved by the change, and its audits run on the post-change table: a
--    failing blocking audit adds "audit_failed" to the result and the caller must
--    roll the change back.
-- Returns the refresh result, or {"fallback": reason} when a full refresh is needed.
DECLARE
    m        record;
    target   text;
    thr      numeric := coalesce((p_options->>'incremental_threshold')::numeric, 0.15);
    i        int;
    u        text;
    kind     text;
    wm       jsonb;
    d        jsonb;
    total_in numeric := 0;
    total_d  numeric := 0;
    cols     text[];
    types    text[];
    a        jsonb;
    last_fp  text;
    audits   jsonb;
    raw      numeric := 0;
    probe    boolean;
    src      boolean;
    cached   boolean;
    rids     bigint[];
    allr     bigint[];
    alln     bigint[];
    nraw     numeric;
    cinfo    jsonb;
    inputs   jsonb := '{}';
    rk       "char";
    log      text;
    lseq     bigint;
    ctab     text;
    st       text;
    nonempty int := 0;
    csrc     text;
    old_path text := current_setting('search_path');
    t0       timestamptz := clock_timestamp();
    phases   jsonb;
    gucs     jsonb;
    v        jsonb;
    dsum     numeric;
    dcnt     bigint;
BEGIN
    SELECT * INTO m FROM deltapipe.model WHERE pipeline = p_pipeline AND name = p_model;
    target := format('%I.%I', m.target_schema, m.target_table);
    IF NOT m.incremental THEN
        RETURN jsonb_build_object('fallback', coalesce(m.why_full, 'not incremental'));
    ELSIF coalesce((p_options->>'full_refresh')::boolean, false) THEN
        RETURN jsonb_build_object('fallback', 'full refresh requested');
    ELSIF to_regclass(target) IS NULL THEN
        RETURN jsonb_build_object('fallback', 'first build');
    ELSIF m.watermark IS NULL THEN
        RETURN jsonb_build_object('fallback', 'no change position recorded yet');
    ELSIF m.program->'steps' IS NULL THEN
        RETURN jsonb_build_object('fallback', 'compiled by an older deltapipe (deploy the pipeline again)');
    END IF;
    SELECT n.fingerprint INTO last_fp FROM deltapipe.node_run n JOIN deltapipe.run x ON x.id = n.run_id
     WHERE x.pipeline = p_pipeline AND n.node = p_model AND n.node_kind = 'model' AND n.status = 'done'
       AND x.status <> 'rolled_back'
     ORDER BY n.id DESC LIMIT 1;
    IF last_fp IS DISTINCT FROM m.fingerprint THEN
        RETURN jsonb_build_object('fallback', 'SQL changed');
    END IF;
    -- the program was compiled for the table's columns: a table built otherwise is rebuilt
    SELECT array_agg(a.attname::text ORDER BY a.attnum), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
      INTO cols, types
      FROM pg_attribute a WHERE a.attrelid = target::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname <> '_dp_hash';
    IF cols IS DISTINCT FROM ARRAY(SELECT jsonb_array_elements_text(m.program->'cols')) THEN
        RETURN jsonb_build_object('fallback', 'the table''s columns are not those its refresh was compiled for');
    END IF;
    -- first the checks that need no delta: per input, one pass over its change log
    -- range gives the runs whose changes count and the size of the change as
    -- logged (before netting: an update counts 2, as in the net delta); above
    -- the threshold the refresh falls back without building any delta. When the
    -- range holds exactly the changes an upstream refresh of this session wrote
    -- (pg_temp._dp_cache), its delta is read from there, not from its log.
    cached := to_regclass('pg_temp._dp_cache') IS NOT NULL;
    FOR i IN 1 .. coalesce(cardinality(m.delta_inputs), 0) LOOP
        u := m.delta_inputs[i];
        SELECT upstream_kind INTO kind FROM deltapipe.model_edge WHERE pipeline = p_pipeline AND node = p_model AND upstream = u;
        wm := m.watermark->u;
        IF wm IS NULL OR p_hi->u IS NULL THEN
            RETURN jsonb_build_object('fallback', format('new input %s', u));
        END IF;
        IF EXISTS (SELECT 1 FROM deltapipe.node_run n WHERE n.node = u AND n.id > (wm->>'nr')::bigint
                      AND n.status = 'done' AND n.strategy IN ('create', 'rebuild')) THEN
            RETURN jsonb_build_object('fallback', format('%s was rebuilt (no change log)', u));
        END IF;
        src := kind = 'source';
        cinfo := NULL;
        -- a captured table that was truncated or changed its columns (its epoch moved),
        -- or a source that is no longer a dataset or tracked: its change log does not
        -- say the whole change
        IF src AND (wm->>'ep') IS DISTINCT FROM (p_hi->u->>'ep') THEN
            RETURN jsonb_build_object('fallback', format('%s was truncated or its columns changed', u));
        ELSIF src AND NOT EXISTS (SELECT 1 FROM deltapipe.dataset x WHERE x.name = u)
              AND NOT EXISTS (SELECT 1 FROM deltapipe.tracked x WHERE x.name = u) THEN
            RETURN jsonb_build_object('fallback', format('%s is no longer a dataset or a tracked table', u));
        END IF;
        -- the range is exactly the position an upstream refresh of this session
        -- logged its change at (from the position before it): that refresh's run
        -- and counts, without reading the log
        IF cached AND NOT src THEN
            SELECT to_jsonb(k) INTO cinfo FROM pg_temp._dp_cache k
             WHERE k.pipeline = p_pipeline AND k.node = u AND k.lo = (wm->>'seq')::bigint AND k.hi = (p_hi->u->>'seq')::bigint
               AND to_regclass(format('pg_temp.%I', k.tbl)) IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM deltapipe.run r WHERE r.id = k.run_id AND r.status = 'rolled_back');
        END IF;
        -- a source's changes are in deltapipe.changeset, a model's in its change log
        IF cinfo IS NOT NULL THEN
            csrc := NULL;
        ELSIF src THEN
            -- (a capture trigger's row holds a statement's changes as an array: w of them)
            csrc := format('(SELECT c.run_id, c.op, CASE WHEN jsonb_typeof(c.key) = ''array'' '
                           'THEN jsonb_array_length(coalesce(c.before, c.key)) ELSE 1 END AS w '
                           'FROM deltapipe.changeset c WHERE c.node = $1 AND %s)',
                           deltapipe._changes_range((wm->>'seq')::bigint, (p_hi->u->>'seq')::bigint, wm->>'snap', p_hi->u->>'snap'));
        ELSE
            log := deltapipe._model_log(p_pipeline, u);
            IF log IS NULL AND (p_hi->u->>'seq')::bigint > (wm->>'seq')::bigint THEN
                RETURN jsonb_build_object('fallback', format('%s has no change log', u));
            END IF;
            csrc := CASE WHEN log IS NULL THEN '(SELECT NULL::bigint AS run_id, NULL::text AS op, 1 AS w WHERE false)'
                         ELSE format('(SELECT c._dp_run AS run_id, c._dp_op::text AS op, 1 AS w FROM %s c WHERE c._dp_seq > $2 AND c._dp_seq <= $3)', log) END;
        END IF;
        IF csrc IS NULL THEN
            rids := ARRAY[(cinfo->>'run_id')::bigint];
            allr := rids;
            alln := ARRAY[(cinfo->>'n')::bigint];
            nraw := (cinfo->>'rows')::numeric;
        ELSE
            EXECUTE format($q$
                SELECT coalesce(array_agg(x.run_id ORDER BY x.run_id) FILTER (WHERE x.ok), '{}'),
                       coalesce(sum(x.raw) FILTER (WHERE x.ok), 0),
                       coalesce(array_agg(x.run_id ORDER BY x.run_id), '{}'), coalesce(array_agg(x.n ORDER BY x.run_id), '{}')
                  FROM (SELECT c.run_id, sum(c.w) AS n, sum(CASE WHEN c.op = 'U' THEN 2 ELSE 1 END * c.w) AS raw,
                               EXISTS (SELECT 1 FROM deltapipe.run r WHERE r.id = c.run_id AND r.status <> 'rolled_back'
                                          AND CASE WHEN $4 THEN r.kind IN ('load', 'capture')
                                                   ELSE r.kind = 'pipeline' AND r.pipeline = $5 END) AS ok
                          FROM %s c
                         GROUP BY c.run_id) x$q$, csrc)
              INTO rids, nraw, allr, alln
              USING u, (wm->>'seq')::bigint, (p_hi->u->>'seq')::bigint, src, p_pipeline;
        END IF;
        raw := raw + nraw;
        IF cinfo IS NULL AND cached AND NOT src AND cardinality(allr) = 1 THEN
            SELECT to_jsonb(k) INTO cinfo FROM pg_temp._dp_cache k
             WHERE k.pipeline = p_pipeline AND k.node = u AND k.run_id = allr[1] AND k.n = alln[1]
               AND k.run_id = ANY (rids) AND to_regclass(format('pg_temp.%I', k.tbl)) IS NOT NULL;
        END IF;
        inputs := inputs || jsonb_build_object(u, jsonb_build_object('kind', kind, 'runs', to_jsonb(rids), 'cache', cinfo));
        total_in := total_in + (p_hi->u->>'rows')::numeric;
    END LOOP;
    IF raw > thr * greatest(total_in, 1) THEN
        RETURN jsonb_build_object('fallback', format('change of %s rows is more than %s%% of the %s input rows',
                                                      raw, round(thr * 100, 1), total_in));
    END IF;
    total_in := 0;
    FOR i IN 1 .. coalesce(cardinality(m.delta_inputs), 0) LOOP
        u := m.delta_inputs[i];
        wm := m.watermark->u;
        cinfo := inputs->u->'cache';
        IF jsonb_typeof(cinfo) = 'object' THEN
            SELECT c.relkind INTO rk FROM pg_class c WHERE c.oid = to_regclass(format('pg_temp._dp_d_%s', i));
            IF rk = 'v' THEN
                EXECUTE format('DROP VIEW pg_temp.%I', '_dp_d_' || i);
            ELSIF rk IS NOT NULL THEN
                EXECUTE format('DROP TABLE pg_temp.%I', '_dp_d_' || i);
            END IF;
            EXECUTE format('CREATE TEMP VIEW %I AS SELECT * FROM pg_temp.%I', '_dp_d_' || i, cinfo->>'tbl');
            -- statistics for the plans that read it, taken by its first reader (a
            -- sample of 300 rows, as _input_delta takes): a delta no model reads costs none
            IF (SELECT c.reltuples < 0 FROM pg_class c WHERE c.oid = format('pg_temp.%I', (cinfo->>'tbl') || '_t')::regclass) THEN
                st := current_setting('default_statistics_target');
                PERFORM set_config('default_statistics_target', '1', true);
                EXECUTE format('ANALYZE pg_temp.%I', (cinfo->>'tbl') || '_t');
                PERFORM set_config('default_statistics_target', st, true);
            END IF;
            d := jsonb_build_object('rows', cinfo->'rows', 'net', cinfo->'net');
        ELSE
            d := deltapipe._input_delta(p_pipeline, u, inputs->u->>'kind', i, (wm->>'seq')::bigint, (p_hi->u->>'seq')::bigint,
                                        ARRAY(SELECT jsonb_array_elements_text(inputs->u->'runs')::bigint),
                                        wm->>'snap', p_hi->u->>'snap');
        END IF;
        -- (a large tracked table's row count is the planner's estimate: not checked)
        IF (wm->>'rows')::bigint + (d->>'net')::bigint <> (p_hi->u->>'rows')::bigint
           AND NOT coalesce((p_hi->u->>'est')::boolean OR (wm->>'est')::boolean, false) THEN
            RETURN jsonb_build_object('fallback', format('the change log of %s does not add up to its row count', u));
        END IF;
        total_in := total_in + (p_hi->u->>'rows')::numeric;
        total_d := total_d + (d->>'rows')::numeric;
        nonempty := nonempty + CASE WHEN (d->>'rows')::numeric > 0 THEN 1 ELSE 0 END;
    END LOOP;
    IF total_d > thr * greatest(total_in, 1) THEN
        RETURN jsonb_build_object('fallback', format('change of %s rows is more than %s%% of the %s input rows',
                                                      total_d, round(thr * 100, 1), total_in));
    END IF;
    -- scalar subqueries the delta statement takes as constants: a refresh in full when the
    -- change of their inputs may have changed their value
    FOR a IN SELECT x FROM jsonb_array_elements(coalesce(m.program->'guards', '[]')) x LOOP
        EXECUTE a->>'sql' INTO probe;
        IF probe THEN
            RETURN jsonb_build_object('fallback', format('%s at line %s changed',
                                                         coalesce(a->>'what', 'the value of the scalar subquery'), a->>'line'));
        END IF;
    END LOOP;
    phases := jsonb_build_object('inputs', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
    -- planner settings for small deltas against big tables (as the load path does),
    -- restored before returning (on an error, with the caller's subtransaction)
    gucs := jsonb_build_object('work_mem', current_setting('work_mem'),
                               'random_page_cost', current_setting('random_page_cost'),
                               'enable_hashjoin', current_setting('enable_hashjoin'),
                               'enable_nestloop', current_setting('enable_nestloop'),
                               'enable_mergejoin', current_setting('enable_mergejoin'),
                               'jit', current_setting('jit'),
                               'default_statistics_target', current_setting('default_statistics_target'));
    PERFORM set_config('work_mem', '256MB', true);
    -- statements over deltas run for milliseconds: compiling their expressions
    -- (chosen from the cost of the big tables they read) takes longer than it saves
    PERFORM set_config('jit', 'off', true);
    PERFORM set_config('random_page_cost', '1.1', true);
    -- a delta joins a table by hash or by index probes: a merge join would sort the
    -- whole table (chosen on a freshly built table without statistics)
    PERFORM set_config('enable_mergejoin', 'off', true);
    -- this refresh's change log position, and the name of the delta it keeps for the
    -- models downstream refreshed later in this session (a view over a table)
    log := deltapipe._model_log(m.pipeline, m.name, true);
    lseq := nextval(pg_get_serial_sequence('deltapipe.changeset', 'seq'));
    ctab := '_dp_c_' || left(md5(m.pipeline || '/' || m.name), 16);
    EXECUTE format('DROP TABLE IF EXISTS pg_temp.%I CASCADE', ctab || '_t');
    DROP TABLE IF EXISTS pg_temp._dp_z, pg_temp._dp_s, pg_temp._dp_new, pg_temp._dp_in, pg_temp._dp_gd, pg_temp._dp_k;
    v := jsonb_build_object('target', target, 'target_lit', quote_literal(target), 'log', log, 'lseq', lseq,
                            'run', p_run_id, 'ctab', quote_ident(ctab), 'ctab_t', quote_ident(ctab || '_t'),
                            'row_count', coalesce(m.row_count, 0), 'total_d', total_d, 'total_in', total_in,
                            'nonempty', nonempty, 'hj', gucs->>'enable_hashjoin', 'nl', gucs->>'enable_nestloop',
                            'dst', gucs->>'default_statistics_target',
                            'dist', deltapipe._is_distributed(target::regclass))
         || (SELECT jsonb_object_agg('T' || o, t) FROM unnest(types) WITH ORDINALITY x(t, o));
    PERFORM set_config('search_path', format('%I, public', m.target_schema), true);
    v := deltapipe._refresh_program(m.program->'steps', v);
    PERFORM set_config('search_path', old_path, true);
    PERFORM set_config('work_mem', gucs->>'work_mem', true);
    PERFORM set_config('random_page_cost', gucs->>'random_page_cost', true);
    PERFORM set_config('enable_mergejoin', gucs->>'enable_mergejoin', true);
    PERFORM set_config('enable_hashjoin', gucs->>'enable_hashjoin', true);
    PERFORM set_config('enable_nestloop', gucs->>'enable_nestloop', true);
    PERFORM set_config('default_statistics_target', gucs->>'default_statistics_target', true);
    PERFORM set_config('jit', gucs->>'jit', true);
    IF v ? 'fallback' THEN
        DROP TABLE IF EXISTS pg_temp._dp_z, pg_temp._dp_s, pg_temp._dp_new, pg_temp._dp_in, pg_temp._dp_gd, pg_temp._dp_k;
        RETURN v;
    END IF;
    phases := phases || (v->'phases');
    -- register the kept delta: valid for a downstream refresh whose change range
    -- holds exactly the ncs log rows this refresh wrote (run p_run_id)
    IF to_regclass('pg_temp._dp_cache') IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('pg_temp._dp_cache') AND attname = 'hi') THEN
        DROP TABLE pg_temp._dp_cache;  -- (of an older version, in a long-lived session)
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS _dp_cache (pipeline text, node text, run_id bigint, n bigint, tbl text,
                                               "rows" numeric, net numeric, lo bigint, hi bigint);
    DELETE FROM pg_temp._dp_cache k WHERE k.pipeline = m.pipeline AND k.node = m.name;
    -- its size: every changed key or group counts its old and its new row; its log
    -- position lseq, and the one before it
    INSERT INTO pg_temp._dp_cache VALUES (m.pipeline, m.name, p_run_id, (v->>'ncs')::bigint, ctab,
                                          (v->>'ins')::bigint + 2 * (v->>'upd')::bigint + (v->>'del')::bigint,
                                          (v->>'ins')::bigint - (v->>'del')::bigint, m.log_seq, lseq);
    DROP TABLE IF EXISTS pg_temp._dp_z, pg_temp._dp_s, pg_temp._dp_new, pg_temp._dp_in, pg_temp._dp_gd, pg_temp._dp_k;
    UPDATE deltapipe.model SET checksum = coalesce(checksum, 0) + (v->>'dsum')::numeric,
                               row_count = row_count + (v->>'dcnt')::bigint,
                               last_refreshed_at = now(), log_seq = lseq
     WHERE pipeline = m.pipeline AND name = m.name
     RETURNING checksum, row_count INTO dsum, dcnt;
    -- audits on the post-change table, before commit: the caller (run_node) rolls
    -- the change back when a blocking audit finds rows ("audit_failed")
    audits := deltapipe._run_audits(m.pipeline, m.name, target::regclass);
    RETURN jsonb_build_object('strategy', 'incremental', 'rows_in', total_d, 'inserted', (v->>'ins')::bigint,
                              'updated', (v->>'upd')::bigint, 'deleted', (v->>'del')::bigint,
                              'unchanged', greatest(dcnt - (v->>'ins')::bigint - (v->>'upd')::bigint, 0),
                              'checksum', dsum, 'row_count', dcnt, 'phases', phases, 'audits', audits->'results')
           || CASE WHEN audits->>'failed' IS NOT NULL THEN jsonb_build_object('audit_failed', audits->>'failed')
                   ELSE '{}' END;
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_incremental(text, text, bigint, jsonb, jsonb) IS
  'Private: refresh a model from its inputs'' changes by running its compiled refresh program, or say why it needs a full refresh.';
