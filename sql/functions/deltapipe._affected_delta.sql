CREATE OR REPLACE FUNCTION deltapipe._affected_delta(p_pipeline text, p_model text, p_target regclass,
                                                     p_cols text[], p_types text[], p_keys text[])
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- The change of a model refreshed by affected keys (model.shape = 'keys'): for a model
-- with no key (program.keyless), its rows of the affected values netted as whole rows
-- into pg_temp._dp_z (copies with weights, as for a keyless linear model); else as
-- pg_temp._dp_s in the layout _refresh_incremental applies to a keyed model: per
-- changed key its new row (_dp_w = 1) or its deletion (_dp_w = -1), the new row's
-- hash, the old row's hash (_dp_old) and the old row's columns (_dp_o<k>), in key order.
-- 1. pg_temp._dp_k: the values of the model's column program.restrict_col that the
--    inputs' changes (pg_temp._dp_d_<i>, built by the caller) can touch
--    (program.keys_sql: old and new values, traced through joins);
-- 2. the new rows: the model's SELECT restricted to them (program.restricted_sql);
--    the old rows: the table's rows whose restrict_col is among them;
-- 3. the two compared by key and row hash: only the rows that differ are kept.
-- The inputs' columns that the restricted SELECT probes are indexed first
-- (deltapipe._ensure_index). Returns the number of changed keys.
DECLARE
    prog jsonb;
    ix   jsonb;
    rcol text;
    n    bigint;
    st   text;
    keyless boolean;
BEGIN
    SELECT m.program INTO prog FROM deltapipe.model m WHERE m.pipeline = p_pipeline AND m.name = p_model;
    rcol := prog->>'restrict_col';
    keyless := coalesce((prog->>'keyless')::boolean, false);
    FOR ix IN SELECT x FROM jsonb_array_elements(coalesce(prog->'indexes', '[]')) x LOOP
        PERFORM deltapipe._ensure_index(ix->>'table', ix->>'column');
    END LOOP;
    PERFORM deltapipe._ensure_index(p_target::text, rcol);
    DROP TABLE IF EXISTS pg_temp._dp_k, pg_temp._dp_s, pg_temp._dp_z;
    -- (a model with no key restricts by a column that may be NULL: a NULL value is an affected value too)
    EXECUTE format('CREATE TEMP TABLE _dp_k AS SELECT DISTINCT _dp_q._dp_k FROM (%s) _dp_q %s',
                   prog->>'keys_sql', CASE WHEN keyless THEN '' ELSE 'WHERE _dp_q._dp_k IS NOT NULL' END);
    st := current_setting('default_statistics_target');
    PERFORM set_config('default_statistics_target', '1', true);
    ANALYZE pg_temp._dp_k;
    PERFORM set_config('default_statistics_target', st, true);
    IF keyless THEN
        -- no key: the rows of the affected values, new (+1) and old (-1), netted as whole rows into
        -- pg_temp._dp_z (copies with weights), as _refresh_incremental builds it for a keyless model
        EXECUTE format($q$
            CREATE TEMP TABLE _dp_z AS
            SELECT %1$s, _dp_w, hashtextextended(ROW(%2$s)::text, 0) AS _dp_hash
              FROM (SELECT %3$s, sum(_dp_w)::bigint AS _dp_w
                      FROM (SELECT %3$s, 1 AS _dp_w FROM (%4$s) _dp_n
                            UNION ALL
                            SELECT %3$s, -1 FROM %5$s t
                             WHERE t.%6$I IN (SELECT _dp_k FROM pg_temp._dp_k)
                                OR (t.%6$I IS NULL AND EXISTS (SELECT FROM pg_temp._dp_k WHERE _dp_k IS NULL))) _dp_q
                     GROUP BY %3$s HAVING sum(_dp_w) <> 0) _dp_q$q$,
            (SELECT string_agg(format('_dp_q.%I::%s AS %I', c, t, c), ', ') FROM unnest(p_cols, p_types) x(c, t)),
            (SELECT string_agg(format('_dp_q.%I::%s', c, t), ', ') FROM unnest(p_cols, p_types) x(c, t)),
            (SELECT string_agg(format('%I', c), ', ') FROM unnest(p_cols) c),
            prog->>'restricted_sql', p_target, rcol);
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;
    EXECUTE format($q$
        CREATE TEMP TABLE _dp_s AS
        WITH n AS MATERIALIZED (
                 SELECT %1$s, hashtextextended(ROW(%2$s)::text, 0) AS _dp_hash FROM (%3$s) _dp_q),
             o AS MATERIALIZED (
                 SELECT t.* FROM %4$s t WHERE t.%5$I IN (SELECT _dp_k FROM pg_temp._dp_k))
        SELECT %6$s, CASE WHEN n._dp_hash IS NULL THEN -1 ELSE 1 END AS _dp_w, n._dp_hash,
               o._dp_hash AS _dp_old, %7$s
          FROM n FULL JOIN o ON %8$s
         WHERE n._dp_hash IS DISTINCT FROM o._dp_hash
         ORDER BY %9$s$q$,
        (SELECT string_agg(format('_dp_q.%I::%s AS %I', c, t, c), ', ') FROM unnest(p_cols, p_types) x(c, t)),
        (SELECT string_agg(format('_dp_q.%I::%s', c, t), ', ') FROM unnest(p_cols, p_types) x(c, t)),
        prog->>'restricted_sql', p_target, rcol,
        (SELECT string_agg(CASE WHEN c = ANY (p_keys) THEN format('coalesce(n.%1$I, o.%1$I) AS %1$I', c)
                                ELSE format('n.%1$I', c) END, ', ') FROM unnest(p_cols) c),
        (SELECT string_agg(format('o.%I AS %I', c, '_dp_o' || o), ', ') FROM unnest(p_cols) WITH ORDINALITY u(c, o)),
        (SELECT string_agg(format('n.%1$I = o.%1$I', k), ' AND ') FROM unnest(p_keys) k),
        (SELECT string_agg(format('%s', array_position(p_cols, k)), ', ') FROM unnest(p_keys) k));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

COMMENT ON FUNCTION deltapipe._affected_delta(text, text, regclass, text[], text[], text[]) IS
  'Private: pg_temp._dp_s = the change of an affected-key model: its SELECT restricted to the keys its inputs'' changes touch, diffed with the table''s rows of those keys.';
