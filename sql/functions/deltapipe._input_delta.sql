CREATE OR REPLACE FUNCTION deltapipe._input_delta(p_pipeline text, p_upstream text, p_kind text, p_idx int,
                                                  p_lo bigint, p_hi bigint)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Build pg_temp._dp_d_<p_idx>: the net change of one upstream (a source dataset
-- or a model of the pipeline) between changeset seq p_lo (exclusive) and p_hi,
-- as rows of the upstream's visible columns with a weight _dp_w (+n / -n copies).
-- Keyed upstreams coalesce per key: the oldest before-image is the old row, the
-- current table row is the new one; a row inserted and deleted in between, or
-- changed and changed back, leaves nothing. Keyless upstreams (models without a
-- key) add +1 per inserted and -1 per deleted copy.
-- Returns {"rows": sum of |weights|, "net": sum of weights}.
DECLARE
    tbl   text;
    keys  text[];
    cols  text[];
    clist text;
    tname text := format('_dp_d_%s', p_idx);
    runs  text;
    res   jsonb;
    rids  bigint[];
BEGIN
    IF p_kind = 'source' THEN
        SELECT format('%I.%I', target_schema, target_table), key_cols INTO tbl, keys
          FROM deltapipe.dataset WHERE name = p_upstream;
        runs := 'r.kind = ''load''';
    ELSE
        SELECT format('%I.%I', target_schema, target_table), key_cols INTO tbl, keys
          FROM deltapipe.model WHERE pipeline = p_pipeline AND name = p_upstream;
        runs := format('r.kind = %L AND r.pipeline = %L', 'pipeline', p_pipeline);
    END IF;
    IF tbl IS NULL OR to_regclass(tbl) IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP301', MESSAGE = format('upstream %s has no table', p_upstream),
            DETAIL = format('pipeline %s', p_pipeline), HINT = 'load the source or run its model first';
    END IF;
    cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                   WHERE a.attrelid = tbl::regclass AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attname NOT LIKE '\_dp\_%' ORDER BY a.attnum);
    clist := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
    EXECUTE format('DROP TABLE IF EXISTS pg_temp.%I', tname);
    -- the runs whose changes count, as a constant list: joining deltapipe.run in the
    -- delta statement lets stale changeset statistics pick a plan that rescans the
    -- changeset range once per run of the pipeline
    EXECUTE format('SELECT coalesce(array_agg(r.id ORDER BY r.id), %L) FROM deltapipe.run r
                     WHERE r.id IN (SELECT c.run_id FROM deltapipe.changeset c
                                     WHERE c.node = %L AND c.seq > %s AND c.seq <= %s) AND %s',
                   '{}', p_upstream, p_lo, p_hi, runs) INTO rids;
    runs := format('c.run_id = ANY (%L::bigint[])', rids);
    IF keys IS NOT NULL AND cardinality(keys) > 0 THEN
        EXECUTE format($q$
            CREATE TEMP TABLE %1$I AS
            WITH cs AS (SELECT DISTINCT ON (c.key) c.key, c.op, c.before
                          FROM deltapipe.changeset c
                         WHERE c.node = %2$L AND c.seq > %3$s AND c.seq <= %4$s AND %5$s
                         ORDER BY c.key, c.seq),
                 z AS (SELECT %6$s, -1 AS _dp_w FROM cs, jsonb_populate_record(NULL::%7$s, cs.before) o
                        WHERE cs.op <> 'I' AND cs.before IS NOT NULL
                       UNION ALL
                       SELECT %8$s, 1 FROM cs, jsonb_populate_record(NULL::%7$s, cs.key) k JOIN %7$s t ON %9$s)
            SELECT %10$s, sum(_dp_w)::bigint AS _dp_w FROM z GROUP BY %10$s HAVING sum(_dp_w) <> 0$q$,
            tname, p_upstream, p_lo, p_hi, runs,
            (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c), tbl,
            (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c),
            (SELECT string_agg(format('t.%1$I = k.%1$I', k), ' AND ') FROM unnest(keys) k),
            clist);
    ELSE
        EXECUTE format($q$
            CREATE TEMP TABLE %1$I AS
            WITH cs AS (SELECT c.op, CASE WHEN c.op = 'I' THEN c.key ELSE c.before END AS img
                          FROM deltapipe.changeset c
                         WHERE c.node = %2$L AND c.seq > %3$s AND c.seq <= %4$s AND %5$s AND c.op IN ('I', 'D')),
                 z AS (SELECT %6$s, CASE WHEN cs.op = 'I' THEN 1 ELSE -1 END AS _dp_w
                         FROM cs, jsonb_populate_record(NULL::%7$s, cs.img) o)
            SELECT %8$s, sum(_dp_w)::bigint AS _dp_w FROM z GROUP BY %8$s HAVING sum(_dp_w) <> 0$q$,
            tname, p_upstream, p_lo, p_hi, runs,
            (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c), tbl, clist);
    END IF;
    EXECUTE format('SELECT jsonb_build_object(%L, coalesce(sum(abs(_dp_w)), 0), %L, coalesce(sum(_dp_w), 0)) FROM pg_temp.%I',
                   'rows', 'net', tname) INTO res;
    EXECUTE format('ANALYZE pg_temp.%I', tname);
    RETURN res;
END
$fn$;

COMMENT ON FUNCTION deltapipe._input_delta(text, text, text, int, bigint, bigint) IS
  'Private: pg_temp._dp_d_<i> = the net change of an upstream between two changeset positions, as rows with weights.';
