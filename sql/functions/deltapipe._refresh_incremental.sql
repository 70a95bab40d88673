CREATE OR REPLACE FUNCTION deltapipe._refresh_incremental(p_pipeline text, p_model text, p_run_id bigint,
                                                          p_options jsonb, p_hi jsonb)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Refresh one model from the changes of its inputs, in the caller's transaction:
-- build each input's net change since the model's watermark (_input_delta, or
-- the delta an upstream refresh of this session kept: pg_temp._dp_cache), run the
-- compiled delta statement, and apply the model's net change to its table with
-- one statement (MERGE, or DELETE/INSERT of copies for keyless models),
-- recording it in the model's change log (deltapipe._model_log) and keeping it
-- for downstream refreshes.
-- Keyed models take a changed key's old row from the delta itself. Aggregates
-- keep hidden counts and sums per group; a group that lost a value at or beyond
-- its min/max recomputes it from its inputs.
-- Then the model's audits run on the post-change table; a failing blocking audit
-- adds "audit_failed" to the result and the caller must roll the change back.
-- Returns the refresh result, or {"fallback": reason} when a full refresh is needed.
DECLARE
    m        record;
    target   text;
    tshape   text;
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
    keys     text[];
    cl       text;
    ins      bigint := 0;
    upd      bigint := 0;
    del      bigint := 0;
    dsum     numeric := 0;
    dcnt     bigint := 0;
    old_path text := current_setting('search_path');
    t0       timestamptz := clock_timestamp();
    phases   jsonb := '{}';
    spec     jsonb;
    gcols    text[];
    a        jsonb;
    expr     jsonb := '{}';
    hasmm    boolean;
    gmatch   text;
    q        text;
    last_fp  text;
    audits   jsonb;
    raw      numeric := 0;
    nd       bigint;
    zsel     text;
    nre      bigint;
    gpred    text;
    gmm      text;
    gucs     jsonb;
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
    vis      text[];
    lcols    text[];
    log      text;
    lseq     bigint;
    lins     text;
    lold     text;
    ncs      bigint := 0;
    ctab     text;
    st       text;
    nonempty int := 0;
    qn       text;
    dup      boolean;
    sq       text;
    csrc     text;
    eqj      boolean;
    keyidx   boolean;
    hashable boolean;
    dexpr    jsonb := '{}';
    gh       text;
    gnull    text;
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
    END IF;
    SELECT n.fingerprint INTO last_fp FROM deltapipe.node_run n JOIN deltapipe.run x ON x.id = n.run_id
     WHERE x.pipeline = p_pipeline AND n.node = p_model AND n.node_kind = 'model' AND n.status = 'done'
       AND x.status <> 'rolled_back'
     ORDER BY n.id DESC LIMIT 1;
    IF last_fp IS DISTINCT FROM m.fingerprint THEN
        RETURN jsonb_build_object('fallback', 'SQL changed');
    END IF;
    -- an aggregate's sums are kept from the changes only when they are exact: a sum of
    -- floating-point values drifts from its recompute as values come and go (0.1 + 0.2 -
    -- 0.1 is not 0.2), and sums of other types (interval, money) have no state here
    IF m.shape = 'aggregate' THEN
        SELECT string_agg(DISTINCT format_type(a.atttypid, a.atttypmod), ', ') INTO q
          FROM pg_attribute a
         WHERE a.attrelid = target::regclass AND a.attname ~ '^_dp_s[0-9]+$' AND NOT a.attisdropped
           AND a.atttypid NOT IN ('numeric'::regtype, 'bigint'::regtype, 'integer'::regtype, 'smallint'::regtype);
        IF q IS NOT NULL THEN
            RETURN jsonb_build_object('fallback', format('sum or avg of %s values: not maintained from changes (not exact)', q));
        END IF;
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
    t0 := clock_timestamp();
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

    SELECT array_agg(a.attname::text ORDER BY a.attnum), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
      INTO cols, types
      FROM pg_attribute a WHERE a.attrelid = target::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname <> '_dp_hash';
    -- the visible columns (what a downstream model reads)
    vis := ARRAY(SELECT c FROM unnest(cols) c WHERE c NOT LIKE '\_dp\_%');
    keys := CASE WHEN cardinality(m.key_cols) > 0 THEN m.key_cols END;
    -- the change log: the columns it keeps (keyless: the visible ones), one
    -- position for all the rows of this refresh; lins starts its INSERT, lold is
    -- the old row of alias @A@ for it (the copies _dp_o<k> of the old row's
    -- columns, k = position in cols)
    lcols := CASE WHEN keys IS NULL THEN vis ELSE cols END;
    log := deltapipe._model_log(m.pipeline, m.name, true);
    lseq := nextval(pg_get_serial_sequence('deltapipe.changeset', 'seq'));
    lins := format('INSERT INTO %s (_dp_seq, _dp_run, _dp_op, %s, %s) ', log,
                   (SELECT string_agg(format('%I', c), ', ') FROM unnest(lcols) c),
                   (SELECT string_agg(format('%I', '_dp_o' || o), ', ') FROM generate_subscripts(lcols, 1) o));
    lold := (SELECT string_agg(format('@A@.%I', '_dp_o' || array_position(cols, c)), ', ') FROM unnest(lcols) c);
    DROP TABLE IF EXISTS pg_temp._dp_z, pg_temp._dp_s, pg_temp._dp_new, pg_temp._dp_in, pg_temp._dp_gd;
    PERFORM set_config('search_path', format('%I, public', m.target_schema), true);
    -- this refresh's own delta, kept for downstream models refreshed later in this
    -- session (pg_temp._dp_cache): rows of the visible columns with weights
    -- (a view ctab over the table ctab_t: the refresh's own temp table, renamed)
    ctab := '_dp_c_' || left(md5(m.pipeline || '/' || m.name), 16);
    EXECUTE format('DROP TABLE IF EXISTS pg_temp.%I CASCADE', ctab || '_t');

    -- the input columns the delta statement probes (a top-N's first ORDER BY column, a
    -- semi-join's correlation columns): indexed once; a table rebuilt by a swap gets
    -- its index again here
    IF m.shape <> 'keys' THEN
        PERFORM deltapipe._ensure_index(ix->>'table', ix->>'column')
           FROM jsonb_array_elements(coalesce(m.program->'indexes', '[]')) ix;
    END IF;
    IF m.shape = 'topn' THEN
        -- a top-N: its change is its first n rows now against the table's rows (the
        -- delta statement reads the table: @SELF@)
        m.delta_sql := replace(m.delta_sql, '@SELF@', target);
    END IF;
    IF m.shape IN ('linear', 'keys', 'topn') THEN
        cl := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
        -- the net delta: rows with weights, unchanged rows netted away, with their hash
        q := format('SELECT %s, _dp_w, hashtextextended(ROW(%s)::text, 0) AS _dp_hash
                       FROM (SELECT %s, sum(_dp_w)::bigint AS _dp_w FROM (%s) _dp_q GROUP BY %s HAVING sum(_dp_w) <> 0) _dp_q',
                    (SELECT string_agg(format('_dp_q.%I::%s AS %I', c, t, c), ', ') FROM unnest(cols, types) x(c, t)),
                    (SELECT string_agg(format('_dp_q.%I::%s', c, t), ', ') FROM unnest(cols, types) x(c, t)),
                    (SELECT string_agg(format('_dp_q.%I', c), ', ') FROM unnest(cols) c), m.delta_sql,
                    (SELECT string_agg(format('_dp_q.%I', c), ', ') FROM unnest(cols) c));
        IF m.shape = 'keys' THEN
            -- affected keys: the SELECT restricted to the keys the changes touch, diffed
            -- with the table's rows of those keys (_dp_s, as below for a keyed model)
            nd := deltapipe._affected_delta(m.pipeline, m.name, target::regclass, cols, types, coalesce(keys, '{}'));
        ELSIF keys IS NULL THEN
            EXECUTE 'CREATE TEMP TABLE _dp_z AS ' || q;
            GET DIAGNOSTICS nd = ROW_COUNT;
        ELSE
            IF nonempty = 1 THEN
                -- one input changed: its delta holds each of its rows once, old (-1) or
                -- new (+1), and a filter, projection or join with unchanged tables maps
                -- it to at most one old and one new row per key of the model (else the
                -- key would repeat in the table): no netting by all columns; a key
                -- whose old and new rows are equal is dropped below (same hash)
                qn := format('SELECT %s, _dp_q._dp_w::bigint AS _dp_w, hashtextextended(ROW(%s)::text, 0) AS _dp_hash
                               FROM (%s) _dp_q WHERE _dp_q._dp_w <> 0',
                            (SELECT string_agg(format('_dp_q.%I::%s AS %I', c, t, c), ', ') FROM unnest(cols, types) x(c, t)),
                            (SELECT string_agg(format('_dp_q.%I::%s', c, t), ', ') FROM unnest(cols, types) x(c, t)),
                            m.delta_sql);
            END IF;
            -- per changed key its new row (weight +1) and its old row (weight -1, as
            -- typed columns _dp_o<k>): the delta of a keyed model holds the old row
            -- itself (the table equals the query before the change), so the table is
            -- not read here; an unchanged row was netted away in _dp_z. In key order, so
            -- that the MERGE visits the table's index and pages in order. One statement
            -- from the delta query (_dp_z is a CTE, not a table written and read again)
            sq := format('CREATE TEMP TABLE _dp_s AS
                            WITH _dp_z AS MATERIALIZED (%s)
                            SELECT %s, CASE WHEN n._dp_w IS NULL THEN -1 ELSE 1 END AS _dp_w, n._dp_hash,
                                   o._dp_hash AS _dp_old, %s
                              FROM (SELECT * FROM _dp_z WHERE _dp_w > 0) n
                              FULL JOIN (SELECT * FROM _dp_z WHERE _dp_w < 0) o ON %s
                             ORDER BY %s',
                           '@Q@',
                           (SELECT string_agg(CASE WHEN c = ANY (keys) THEN format('coalesce(n.%1$I, o.%1$I) AS %1$I', c)
                                                   ELSE format('n.%1$I', c) END, ', ') FROM unnest(cols) c),
                           (SELECT string_agg(format('o.%I AS %I', c, '_dp_o' || o), ', ') FROM unnest(cols) WITH ORDINALITY u(c, o)),
                           (SELECT string_agg(format('n.%1$I = o.%1$I', k), ' AND ') FROM unnest(keys) k),
                           (SELECT string_agg(format('%s', array_position(cols, k)), ', ') FROM unnest(keys) k));
            IF nonempty = 1 THEN
                EXECUTE replace(sq, '@Q@', qn);
                GET DIAGNOSTICS nd = ROW_COUNT;
                -- (a model reading that input twice, as a self-join does, is not such
                -- a map: then a key repeats here, and the delta is netted after all;
                -- else netting would only have cancelled the rows whose old and new
                -- versions are equal)
                EXECUTE format('SELECT EXISTS (SELECT FROM pg_temp._dp_s GROUP BY %s HAVING count(*) > 1)',
                               (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k)) INTO dup;
                IF dup THEN
                    DROP TABLE pg_temp._dp_s;
                    nonempty := 0;
                ELSE
                    DELETE FROM pg_temp._dp_s WHERE _dp_hash = _dp_old;
                    GET DIAGNOSTICS nre = ROW_COUNT;
                    nd := nd - nre;
                END IF;
            END IF;
            IF nonempty <> 1 THEN
                EXECUTE replace(sq, '@Q@', q);
                GET DIAGNOSTICS nd = ROW_COUNT;
            END IF;
        END IF;
        -- nd: keyed, the changed keys the MERGE probes
        PERFORM set_config('search_path', old_path, true);
        phases := phases || jsonb_build_object('delta', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
        t0 := clock_timestamp();
        -- a delta much smaller than the table probes its index (primary key or
        -- _dp_hash) row by row instead of hashing the whole table; a bigger one
        -- hashes it (not probes chosen from an underestimated delta)
        probe := nd * 10 < coalesce(m.row_count, 0);
        IF keys IS NULL THEN
            PERFORM set_config('enable_hashjoin', CASE WHEN probe THEN 'off' ELSE gucs->>'enable_hashjoin' END, true);
            PERFORM set_config('enable_nestloop', CASE WHEN probe THEN gucs->>'enable_nestloop' ELSE 'off' END, true);
            -- keyless: remove -n copies, add +n copies, one statement
            EXECUTE format($q$
                WITH del AS (
                    DELETE FROM %1$s t WHERE t.ctid = ANY (ARRAY(
                        SELECT x.ctid FROM (SELECT t2.ctid, row_number() OVER (PARTITION BY z.ctid) AS rn, -z._dp_w AS n
                                              FROM pg_temp._dp_z z JOIN %1$s t2 ON t2._dp_hash = z._dp_hash AND %2$s
                                             WHERE z._dp_w < 0) x
                         WHERE x.rn <= x.n))
                    RETURNING t.*),
                ins AS (
                    INSERT INTO %1$s (%3$s, _dp_hash)
                    SELECT %4$s, z._dp_hash FROM pg_temp._dp_z z, generate_series(1, z._dp_w) WHERE z._dp_w > 0
                    RETURNING *)
                %5$s
                SELECT %6$s, %7$s, 'D', %8$s, %9$s FROM del
                UNION ALL
                SELECT %6$s, %7$s, 'I', %10$s, %8$s FROM ins$q$,
                target,
                (SELECT string_agg(format('t2.%1$I IS NOT DISTINCT FROM z.%1$I', c), ' AND ') FROM unnest(cols) c),
                cl, (SELECT string_agg(format('z.%I', c), ', ') FROM unnest(cols) c), lins, lseq, p_run_id,
                (SELECT string_agg(format('NULL::%s', types[array_position(cols, c)]), ', ') FROM unnest(lcols) c),
                (SELECT string_agg(format('del.%I', c), ', ') FROM unnest(lcols) c),
                (SELECT string_agg(format('ins.%I', c), ', ') FROM unnest(lcols) c));
            GET DIAGNOSTICS ncs = ROW_COUNT;
            SELECT coalesce(sum(_dp_w) FILTER (WHERE _dp_w > 0), 0), coalesce(-sum(_dp_w) FILTER (WHERE _dp_w < 0), 0),
                   coalesce(sum(_dp_w * _dp_hash::numeric), 0), coalesce(sum(_dp_w), 0)
              INTO ins, del, dsum, dcnt FROM pg_temp._dp_z;
            EXECUTE format('ALTER TABLE pg_temp._dp_z RENAME TO %I', ctab || '_t');
            EXECUTE format('CREATE TEMP VIEW %I AS SELECT %2$s, sum(_dp_w)::bigint AS _dp_w FROM pg_temp.%3$I
                             GROUP BY %2$s HAVING sum(_dp_w) <> 0',
                           ctab, (SELECT string_agg(format('%I', c), ', ') FROM unnest(vis) c), ctab || '_t');
        ELSE
            -- the log: a deleted key's new row is NULL (its key columns too)
            EXECUTE lins || format('SELECT %s, %s, CASE WHEN s._dp_old IS NULL THEN %L WHEN s._dp_w < 0 THEN %L ELSE %L END,
                                           %s, %s FROM pg_temp._dp_s s',
                                   lseq, p_run_id, 'I', 'D', 'U',
                                   (SELECT string_agg(CASE WHEN c = ANY (keys) THEN format('CASE WHEN s._dp_w > 0 THEN s.%I END', c)
                                                           ELSE format('s.%I', c) END, ', ') FROM unnest(lcols) c),
                                   replace(lold, '@A@', 's'));
            GET DIAGNOSTICS ncs = ROW_COUNT;
            PERFORM set_config('enable_hashjoin', CASE WHEN probe THEN 'off' ELSE gucs->>'enable_hashjoin' END, true);
            PERFORM set_config('enable_nestloop', CASE WHEN probe THEN gucs->>'enable_nestloop' ELSE 'off' END, true);
            EXECUTE format('MERGE INTO %s t USING pg_temp._dp_s s ON %s
                            WHEN MATCHED AND s._dp_w < 0 THEN DELETE
                            WHEN MATCHED THEN UPDATE SET %s, _dp_hash = s._dp_hash
                            WHEN NOT MATCHED AND s._dp_w > 0 THEN INSERT (%s, _dp_hash) VALUES (%s, s._dp_hash)',
                           target, (SELECT string_agg(format('t.%1$I = s.%1$I', k), ' AND ') FROM unnest(keys) k),
                           coalesce((SELECT string_agg(format('%1$I = s.%1$I', c), ', ') FROM unnest(cols) c WHERE c <> ALL (keys)),
                                    format('%1$I = s.%1$I', keys[1])),
                           cl, (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c));
            SELECT count(*) FILTER (WHERE _dp_old IS NULL), count(*) FILTER (WHERE _dp_old IS NOT NULL AND _dp_w > 0),
                   count(*) FILTER (WHERE _dp_w < 0),
                   coalesce(sum(_dp_hash) FILTER (WHERE _dp_w > 0), 0) - coalesce(sum(_dp_old), 0)
              INTO ins, upd, del, dsum FROM pg_temp._dp_s;
            dcnt := ins - del;
            EXECUTE format('ALTER TABLE pg_temp._dp_s RENAME TO %I', ctab || '_t');
            EXECUTE format('CREATE TEMP VIEW %1$I AS
                            SELECT %2$s, -1::bigint AS _dp_w FROM pg_temp.%4$I WHERE _dp_old IS NOT NULL
                            UNION ALL
                            SELECT %3$s, 1::bigint FROM pg_temp.%4$I WHERE _dp_w > 0',
                           ctab,
                           (SELECT string_agg(format('%I AS %I', '_dp_o' || o, c), ', ')
                              FROM unnest(cols) WITH ORDINALITY u(c, o) WHERE c = ANY (vis)),
                           (SELECT string_agg(format('%I', c), ', ') FROM unnest(vis) c), ctab || '_t');
        END IF;
        PERFORM set_config('enable_hashjoin', gucs->>'enable_hashjoin', true);
        PERFORM set_config('enable_nestloop', gucs->>'enable_nestloop', true);
    ELSE
        -- aggregate / distinct: hidden _dp_cnt, _dp_s<j>, _dp_n<j>, _dp_gh per group;
        -- the group deltas of the counts are bigint (as the counts are: no numeric
        -- arithmetic for them in the state statement), summed as int weights (a
        -- by-value sum: a bigint sum keeps a numeric state per group)
        spec := m.agg_spec;
        gcols := ARRAY(SELECT g->>'col' FROM jsonb_array_elements(spec->'groups') g ORDER BY (g->>'g')::int);
        hasmm := EXISTS (SELECT 1 FROM jsonb_array_elements(spec->'aggs') x WHERE x->>'fn' IN ('min', 'max'));
        -- a delta of at least a tenth of the table's size joins the table by hash: on the
        -- group columns themselves (=, NULL-safe by a second branch for groups with a
        -- NULL column, matched by group hash) when all of them hash, so that the group
        -- hash is computed only for new groups, not for every group of the delta
        hashable := NOT EXISTS (
            SELECT 1 FROM unnest(gcols) g JOIN pg_attribute a ON a.attrelid = target::regclass AND a.attname = g
             WHERE NOT deltapipe._hashes_by_value(a.atttypid));
        eqj := hashable AND total_d * 10 >= coalesce(m.row_count, 0);
        -- a smaller delta probes an index of the table: by the values of the group columns
        -- where the table has one (keyidx: an index on their hash_record_extended, which
        -- equal values share), else by the group hash (_dp_gh: of their text)
        keyidx := EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = target::regclass AND i.indexprs IS NOT NULL
                             AND pg_get_indexdef(i.indexrelid) LIKE '%hash_record_extended(ROW(%');
        -- the group hash (of the delta's group values)
        gh := format('hashtextextended(ROW(%s)::text, 0)',
                     (SELECT string_agg(format('@G@._dp_g%s::%s', k - 1, types[array_position(cols, gcols[k])]), ', ')
                        FROM generate_subscripts(gcols, 1) k));
        gnull := (SELECT string_agg(format('@G@._dp_g%s IS NULL', k - 1), ' OR ') FROM generate_subscripts(gcols, 1) k);
        q := '';
        FOR a IN SELECT x FROM jsonb_array_elements(spec->'aggs') x LOOP
            IF a->>'fn' IN ('sum', 'avg') THEN
                -- (a weight of 1 or -1 adds or subtracts the value: a numeric product per row
                -- costs more than twice as much)
                q := q || format(', sum(CASE WHEN _dp_w = 1 THEN _dp_a%1$s WHEN _dp_w = -1 THEN -_dp_a%1$s ELSE _dp_w * _dp_a%1$s END) AS ds%1$s, sum(_dp_w::int) FILTER (WHERE _dp_a%1$s IS NOT NULL) AS dn%1$s', a->>'a');
            ELSIF a->>'fn' = 'count' THEN
                q := q || format(', sum(_dp_w::int) FILTER (WHERE _dp_a%1$s IS NOT NULL) AS dn%1$s', a->>'a');
            ELSIF a->>'fn' IN ('min', 'max') THEN
                q := q || format(', %2$s(_dp_a%1$s) FILTER (WHERE _dp_w > 0) AS dm%1$s, %2$s(_dp_a%1$s) FILTER (WHERE _dp_w < 0) AS dx%1$s',
                                 a->>'a', a->>'fn');
            END IF;
        END LOOP;
        EXECUTE format('CREATE TEMP TABLE _dp_gd AS
                        SELECT g.*, %s AS _dp_gh
                          FROM (SELECT %s, sum(_dp_w::int) AS dc %s FROM (%s) _dp_q GROUP BY %s) g',
                       CASE WHEN eqj THEN format('CASE WHEN %s THEN %s END', replace(gnull, '@G@', 'g'), replace(gh, '@G@', 'g'))
                            ELSE replace(gh, '@G@', 'g') END,
                       (SELECT string_agg(format('_dp_g%s', k - 1), ', ') FROM generate_subscripts(gcols, 1) k),
                       q, m.delta_sql,
                       (SELECT string_agg(format('_dp_g%s', k - 1), ', ') FROM generate_subscripts(gcols, 1) k));
        GET DIAGNOSTICS nd = ROW_COUNT;
        PERFORM set_config('search_path', old_path, true);
        probe := NOT eqj AND nd * 10 < coalesce(m.row_count, 0);
        -- its size for the state statement's plan (a sample of 300 rows): joined with
        -- the table by hash, the group deltas are the side hashed when they are the
        -- smaller (not the whole table's groups, hashed on an unanalyzed estimate)
        IF NOT probe THEN
            PERFORM set_config('default_statistics_target', '1', true);
            ANALYZE pg_temp._dp_gd;
            PERFORM set_config('default_statistics_target', gucs->>'default_statistics_target', true);
        END IF;
        gmatch := (SELECT string_agg(format('o.%I IS NOT DISTINCT FROM d._dp_g%s', gcols[k], k - 1), ' AND ')
                     FROM generate_subscripts(gcols, 1) k);
        -- expressions for every target column from old state o and group delta d
        -- (matched by value, a group keeps its stored values and hash: equal values may
        -- differ in their text, as 1.0 and 1.00 do)
        expr := jsonb_build_object('_dp_cnt', 'coalesce(o._dp_cnt, 0) + d.dc',
                                   '_dp_gh', CASE WHEN eqj OR keyidx THEN format('coalesce(o._dp_gh, d._dp_gh, %s)', replace(gh, '@G@', 'd'))
                                                  ELSE 'd._dp_gh' END);
        FOR i IN 1 .. cardinality(gcols) LOOP
            expr := expr || jsonb_build_object(gcols[i], CASE WHEN eqj OR keyidx THEN format('CASE WHEN o._dp_gh IS NULL THEN d._dp_g%s ELSE o.%I END', i - 1, gcols[i])
                                                              ELSE format('d._dp_g%s', i - 1) END);
        END LOOP;
        FOR a IN SELECT x FROM jsonb_array_elements(spec->'aggs') x LOOP
            IF a->>'fn' IN ('sum', 'avg') THEN
                expr := expr || jsonb_build_object(
                    format('_dp_n%s', a->>'a'), format('coalesce(o._dp_n%1$s, 0) + coalesce(d.dn%1$s, 0)', a->>'a'),
                    format('_dp_s%s', a->>'a'), format('CASE WHEN coalesce(o._dp_n%1$s, 0) + coalesce(d.dn%1$s, 0) = 0 THEN NULL
                                                            ELSE coalesce(o._dp_s%1$s, 0) + coalesce(d.ds%1$s, 0) END', a->>'a'));
            ELSIF a->>'fn' = 'count' THEN
                expr := expr || jsonb_build_object(format('_dp_n%s', a->>'a'),
                                                   format('coalesce(o._dp_n%1$s, 0) + coalesce(d.dn%1$s, 0)', a->>'a'));
            END IF;
        END LOOP;
        -- (count, sum and avg of the new state: dexpr, over the state's columns i.*)
        -- (an expression over aggregates: compiled over the same state columns)
        FOR a IN SELECT x FROM jsonb_array_elements(spec->'aggs') x WHERE x->>'fn' = 'expr' LOOP
            dexpr := dexpr || jsonb_build_object(a->>'col', a->>'sql');
        END LOOP;
        FOR a IN SELECT x FROM jsonb_array_elements(spec->'aggs') x
                  WHERE x->>'fn' IN ('count_star', 'count', 'sum', 'avg') AND x->>'col' IS NOT NULL LOOP
            dexpr := dexpr || jsonb_build_object(a->>'col', CASE a->>'fn'
                WHEN 'count_star' THEN 'i._dp_cnt'
                WHEN 'count' THEN format('i._dp_n%s', a->>'a')
                WHEN 'sum' THEN format('i._dp_s%s', a->>'a')
                ELSE format('(i._dp_s%1$s)::numeric / nullif(i._dp_n%1$s, 0)', a->>'a') END);
        END LOOP;
        FOR a IN SELECT x FROM jsonb_array_elements(spec->'aggs') x WHERE x->>'fn' <> 'expr' AND x->>'col' IS NOT NULL LOOP
            expr := expr || jsonb_build_object(a->>'col', CASE a->>'fn'
                WHEN 'count_star' THEN expr->>'_dp_cnt'
                WHEN 'count' THEN expr->>format('_dp_n%s', a->>'a')
                WHEN 'sum' THEN expr->>format('_dp_s%s', a->>'a')
                WHEN 'avg' THEN format('((%s)::numeric / nullif(%s, 0))', expr->>format('_dp_s%s', a->>'a'),
                                       expr->>format('_dp_n%s', a->>'a'))
                ELSE format('CASE WHEN %s THEN NULL ELSE %s(o.%I, d.dm%s) END',
                            format('d.dx%1$s %2$s o.%3$I', a->>'a', CASE a->>'fn' WHEN 'min' THEN '<=' ELSE '>=' END, a->>'col'),
                            CASE a->>'fn' WHEN 'min' THEN 'least' ELSE 'greatest' END, a->>'col', a->>'a')
            END);
        END LOOP;
        -- a group must recompute its min (max) only when it lost a value that is not
        -- above (below) its old min (max): that value may have been the extreme; or when
        -- it lost a value while it had no extreme (a new group, or one of NULLs only):
        -- the change of a join whose two sides changed holds pairs of rows (+v, -v) that
        -- cancel, whose +v is not a new value of the group
        gmm := coalesce((SELECT string_agg(format('coalesce(d.dx%1$s %2$s o.%3$I, d.dx%1$s IS NOT NULL)', x->>'a',
                                                  CASE x->>'fn' WHEN 'min' THEN '<=' ELSE '>=' END, x->>'col'), ' OR ')
                           FROM jsonb_array_elements(spec->'aggs') x WHERE x->>'fn' IN ('min', 'max')), 'false');
        cl := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
        -- the new state of every affected group with its old row (_dp_o<k>, _dp_old; a
        -- keyless model records only the visible columns, so keeps only those) and
        -- where that row is (_dp_ctid: the apply below goes there directly; nothing
        -- else writes a model's table while its node runs);
        -- a delta much smaller than the table probes its _dp_gh index
        q := format($q$
            SELECT %1$s, %7$s AS _dp_k_gh, %2$s, o._dp_hash AS _dp_old, o.ctid AS _dp_ctid, %6$s, %3$s AS _dp_re
              FROM pg_temp._dp_gd d LEFT JOIN %4$s o ON @ON@$q$,
            (SELECT string_agg(format('(%s)::%s AS %I', expr->>c, t, c), ', ') FROM unnest(cols, types) x(c, t) WHERE NOT dexpr ? c),
            (SELECT string_agg(format('d._dp_g%s AS _dp_k%s', k - 1, k - 1), ', ') FROM generate_subscripts(gcols, 1) k),
            gmm, target, gmatch,
            (SELECT string_agg(format('o.%I AS %I', c, '_dp_o' || o), ', ') FROM unnest(cols) WITH ORDINALITY u(c, o) WHERE keys IS NOT NULL OR c = ANY (vis)),
            expr->>'_dp_gh');
        IF eqj THEN
            q := replace(q, '@ON@', (SELECT string_agg(format('o.%I = d._dp_g%s::%s', gcols[k], k - 1, types[array_position(cols, gcols[k])]), ' AND ')
                                       FROM generate_subscripts(gcols, 1) k))
                 || format(' WHERE NOT (%s)', replace(gnull, '@G@', 'd'))
                 || ' UNION ALL ' || replace(q, '@ON@', format('o._dp_gh = d._dp_gh AND %s', gmatch))
                 || format(' WHERE (%s)', replace(gnull, '@G@', 'd'));
        ELSIF keyidx THEN
            q := replace(q, '@ON@', format('hash_record_extended(ROW(%s), 0) = hash_record_extended(ROW(%s), 0) AND %s',
                                           (SELECT string_agg(format('o.%I', g), ', ') FROM unnest(gcols) g),
                                           (SELECT string_agg(format('d._dp_g%s::%s', k - 1, types[array_position(cols, gcols[k])]), ', ')
                                              FROM generate_subscripts(gcols, 1) k),
                                           gmatch));
        ELSE
            q := replace(q, '@ON@', format('o._dp_gh = d._dp_gh AND %s', gmatch));
        END IF;
        -- then the counts, sums and averages shown from the new state (computed once:
        -- each level apart, OFFSET 0)
        q := format('SELECT %s, i._dp_k_gh, %s, i._dp_old, i._dp_ctid, %s, i._dp_re FROM (%s OFFSET 0) i OFFSET 0',
                    (SELECT string_agg(CASE WHEN dexpr ? c THEN format('(%s)::%s AS %I', dexpr->>c, t, c) ELSE format('i.%I', c) END, ', ')
                       FROM unnest(cols, types) x(c, t)),
                    (SELECT string_agg(format('i._dp_k%s', k - 1), ', ') FROM generate_subscripts(gcols, 1) k),
                    (SELECT string_agg(format('i.%I', '_dp_o' || o), ', ') FROM unnest(cols) WITH ORDINALITY u(c, o) WHERE keys IS NOT NULL OR c = ANY (vis)),
                    q);
        -- the changed groups (_dp_z): old row, new row and its hash (NULL: the group is gone)
        zsel := format($q$
                CREATE TEMP TABLE _dp_z AS
                SELECT * FROM (
                    SELECT s._dp_k_gh, %1$s, s._dp_old, s._dp_ctid, %2$s, %3$s,
                           CASE WHEN s._dp_cnt > 0 OR %4$s THEN hashtextextended(ROW(%3$s)::text, 0) END AS _dp_hash
                      FROM @S@ s OFFSET 0) z
                 WHERE z._dp_old IS DISTINCT FROM z._dp_hash$q$,
                (SELECT string_agg(format('s._dp_k%s', k - 1), ', ') FROM generate_subscripts(gcols, 1) k),
                (SELECT string_agg(format('s.%I', '_dp_o' || o), ', ') FROM unnest(cols) WITH ORDINALITY u(c, o) WHERE keys IS NOT NULL OR c = ANY (vis)),
                (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c),
                -- (without GROUP BY the one group's row stays when its input is empty)
                coalesce(spec->>'nogroup', 'false'));
        PERFORM set_config('enable_hashjoin', CASE WHEN probe THEN 'off' ELSE gucs->>'enable_hashjoin' END, true);
        PERFORM set_config('enable_nestloop', CASE WHEN probe THEN gucs->>'enable_nestloop' ELSE 'off' END, true);
        IF NOT hasmm THEN
            -- no min/max: one statement from the group deltas to the changed groups
            EXECUTE replace(zsel, '@S@', '(' || q || ')');
        ELSE
            EXECUTE 'CREATE TEMP TABLE _dp_s AS ' || q;
        END IF;
        PERFORM set_config('enable_hashjoin', gucs->>'enable_hashjoin', true);
        PERFORM set_config('enable_nestloop', gucs->>'enable_nestloop', true);
        -- groups that lost rows under min/max are recomputed from the inputs (only then
        -- is the state statement run at all); otherwise the new rows are those of _dp_s
        IF NOT hasmm THEN
            NULL;
        ELSIF EXISTS (SELECT 1 FROM pg_temp._dp_s WHERE _dp_re) THEN
            -- a few such groups are named by value too (r.g IS NOT DISTINCT FROM 'v'),
            -- a filter the planner pushes below the state statement's GROUP BY
            EXECUTE format('SELECT count(*), string_agg(format(%L, %s), %L) FROM pg_temp._dp_s WHERE _dp_re',
                           '(' || (SELECT string_agg(format('r.%I IS NOT DISTINCT FROM %%L::%s', gcols[k],
                                                            types[array_position(cols, gcols[k])]), ' AND ')
                                     FROM generate_subscripts(gcols, 1) k) || ')',
                           (SELECT string_agg(format('_dp_k%s', k - 1), ', ') FROM generate_subscripts(gcols, 1) k),
                           ' OR ')
               INTO nre, gpred;
            EXECUTE format($q$
                CREATE TEMP TABLE _dp_new AS
                SELECT x.*, hashtextextended(ROW(%1$s)::text, 0) AS _dp_hash FROM (
                    SELECT %2$s FROM pg_temp._dp_s s WHERE NOT s._dp_re
                    UNION ALL
                    SELECT %3$s FROM (%4$s) r JOIN pg_temp._dp_s s ON s._dp_re AND %6$s
                     WHERE (%5$s)) x
                 WHERE x._dp_cnt > 0 OR %7$s$q$,
                (SELECT string_agg(format('x.%I', c), ', ') FROM unnest(cols) c),
                (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c),
                -- a recomputed group keeps the values and hash of its key that the group's row
                -- has (its key may be written otherwise in the rows it has left: 1.0, 1.00)
                (SELECT string_agg(CASE WHEN c = ANY (gcols) OR c = '_dp_gh' THEN format('s.%I', c)
                                        ELSE format('r.%I::%s', c, t) END, ', ') FROM unnest(cols, types) x(c, t)),
                m.state_sql, CASE WHEN nre <= 100 THEN gpred ELSE 'true' END,
                -- found by the values of its group columns (equal values hash alike), else
                -- by the hash of their text
                CASE WHEN hashable
                     THEN format('hash_record_extended(ROW(%s), 0) = hash_record_extended(ROW(%s), 0)',
                                 (SELECT string_agg(format('r.%I', g), ', ') FROM unnest(gcols) g),
                                 (SELECT string_agg(format('s._dp_k%s::%s', k - 1, types[array_position(cols, gcols[k])]), ', ')
                                    FROM generate_subscripts(gcols, 1) k))
                     ELSE 'r._dp_gh = s._dp_k_gh' END
                || (SELECT string_agg(format(' AND r.%I IS NOT DISTINCT FROM s._dp_k%s', gcols[k], k - 1), '')
                      FROM generate_subscripts(gcols, 1) k),
                coalesce(spec->>'nogroup', 'false'));
            gmatch := (SELECT string_agg(format('n.%I IS NOT DISTINCT FROM s._dp_k%s', gcols[k], k - 1), ' AND ')
                         FROM generate_subscripts(gcols, 1) k);
            EXECUTE format('CREATE TEMP TABLE _dp_z AS
                            SELECT s._dp_k_gh, %s, s._dp_old, s._dp_ctid, %s, n.* FROM pg_temp._dp_s s
                              LEFT JOIN pg_temp._dp_new n ON n._dp_gh = s._dp_k_gh AND %s
                             WHERE s._dp_old IS DISTINCT FROM n._dp_hash',
                           (SELECT string_agg(format('s._dp_k%s', k - 1), ', ') FROM generate_subscripts(gcols, 1) k),
                           (SELECT string_agg(format('s.%I', '_dp_o' || o), ', ') FROM unnest(cols) WITH ORDINALITY u(c, o) WHERE keys IS NOT NULL OR c = ANY (vis)),
                           gmatch);
        ELSE
            EXECUTE replace(zsel, '@S@', 'pg_temp._dp_s');
        END IF;
        phases := phases || jsonb_build_object('delta', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
        t0 := clock_timestamp();
        -- the log: one row per changed group (the new row NULL when the group is gone)
        EXECUTE lins || format('SELECT %s, %s, CASE WHEN z._dp_old IS NULL THEN %L WHEN z._dp_hash IS NULL THEN %L ELSE %L END,
                                       %s, %s FROM pg_temp._dp_z z',
                               lseq, p_run_id, 'I', 'D', 'U',
                               (SELECT string_agg(format('CASE WHEN z._dp_hash IS NOT NULL THEN z.%I END', c), ', ') FROM unnest(lcols) c),
                               replace(lold, '@A@', 'z'));
        GET DIAGNOSTICS ncs = ROW_COUNT;
        -- the changed groups' rows are updated or deleted where the state statement
        -- found them (by ctid: no second join with the table), new groups inserted
        PERFORM set_config('enable_hashjoin', 'off', true);
        PERFORM set_config('enable_nestloop', gucs->>'enable_nestloop', true);
        EXECUTE format('WITH u AS (UPDATE %1$s t SET %2$s, _dp_hash = s._dp_hash FROM pg_temp._dp_z s
                                    WHERE t.ctid = s._dp_ctid AND s._dp_hash IS NOT NULL),
                             d AS (DELETE FROM %1$s t USING pg_temp._dp_z s WHERE t.ctid = s._dp_ctid AND s._dp_hash IS NULL)
                        INSERT INTO %1$s (%3$s, _dp_hash)
                        SELECT %4$s, s._dp_hash FROM pg_temp._dp_z s WHERE s._dp_ctid IS NULL AND s._dp_hash IS NOT NULL',
                       target,
                       (SELECT string_agg(format('%1$I = s.%1$I', c), ', ') FROM unnest(cols) c),
                       cl, (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c));
        PERFORM set_config('enable_hashjoin', gucs->>'enable_hashjoin', true);
        PERFORM set_config('enable_nestloop', gucs->>'enable_nestloop', true);
        SELECT count(*) FILTER (WHERE _dp_old IS NULL), count(*) FILTER (WHERE _dp_old IS NOT NULL AND _dp_hash IS NOT NULL),
               count(*) FILTER (WHERE _dp_hash IS NULL),
               coalesce(sum(_dp_hash), 0) - coalesce(sum(_dp_old), 0)
          INTO ins, upd, del, dsum FROM pg_temp._dp_z;
        dcnt := ins - del;
        EXECUTE format('ALTER TABLE pg_temp._dp_z RENAME TO %I', ctab || '_t');
        EXECUTE format('CREATE TEMP VIEW %1$I AS
                        SELECT %2$s, -1::bigint AS _dp_w FROM pg_temp.%4$I WHERE _dp_old IS NOT NULL
                        UNION ALL
                        SELECT %3$s, 1::bigint FROM pg_temp.%4$I WHERE _dp_hash IS NOT NULL',
                       ctab,
                       (SELECT string_agg(format('%I AS %I', '_dp_o' || o, c), ', ')
                          FROM unnest(cols) WITH ORDINALITY u(c, o) WHERE c = ANY (vis)),
                       (SELECT string_agg(format('%I', c), ', ') FROM unnest(vis) c), ctab || '_t');
    END IF;
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
    INSERT INTO pg_temp._dp_cache VALUES (m.pipeline, m.name, p_run_id, ncs, ctab, ins + 2 * upd + del, ins - del,
                                          m.log_seq, lseq);
    DROP TABLE IF EXISTS pg_temp._dp_z, pg_temp._dp_s, pg_temp._dp_new, pg_temp._dp_in, pg_temp._dp_gd;
    phases := phases || jsonb_build_object('apply', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
    PERFORM set_config('work_mem', gucs->>'work_mem', true);
    PERFORM set_config('random_page_cost', gucs->>'random_page_cost', true);
    PERFORM set_config('enable_mergejoin', gucs->>'enable_mergejoin', true);
    PERFORM set_config('jit', gucs->>'jit', true);
    UPDATE deltapipe.model SET checksum = coalesce(checksum, 0) + dsum, row_count = row_count + dcnt,
                               last_refreshed_at = now(), log_seq = lseq
     WHERE pipeline = m.pipeline AND name = m.name
     RETURNING checksum, row_count INTO dsum, dcnt;
    -- audits on the post-change table, before commit: the caller (run_node) rolls
    -- the change back when a blocking audit finds rows ("audit_failed")
    audits := deltapipe._run_audits(m.pipeline, m.name, target::regclass);
    RETURN jsonb_build_object('strategy', 'incremental', 'rows_in', total_d, 'inserted', ins, 'updated', upd,
                              'deleted', del, 'unchanged', greatest(dcnt - ins - upd, 0),
                              'checksum', dsum, 'row_count', dcnt, 'phases', phases, 'audits', audits->'results')
           || CASE WHEN audits->>'failed' IS NOT NULL THEN jsonb_build_object('audit_failed', audits->>'failed')
                   ELSE '{}' END;
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_incremental(text, text, bigint, jsonb, jsonb) IS
  'Private: refresh a model from its inputs'' changes with its compiled delta statement, or say why it needs a full refresh.';
