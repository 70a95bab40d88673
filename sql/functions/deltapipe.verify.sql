CREATE OR REPLACE FUNCTION deltapipe.verify(p_pipeline text DEFAULT NULL, p_model text DEFAULT NULL)
RETURNS TABLE (pipeline text, model text, side text, "row" jsonb)
LANGUAGE plpgsql
AS $fn$
-- Recompute models in full into temporary tables and compare them with their
-- stored tables as multisets (symmetric EXCEPT ALL over the visible columns).
-- One row per difference: side '-' = a row of the recompute missing from the
-- table, '+' = a row of the table that the recompute does not have.
-- No rows: every model checked equals its query.
DECLARE
    m    record;
    cols text;
    old_path text := current_setting('search_path');
BEGIN
    IF p_pipeline IS NOT NULL THEN
        PERFORM deltapipe._pipeline(p_pipeline);
    END IF;
    IF p_model IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deltapipe.model x WHERE x.name = p_model
                                              AND (p_pipeline IS NULL OR x.pipeline = p_pipeline)) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP203', MESSAGE = format('unknown model %s', p_model),
            DETAIL = format('pipeline: %s', coalesce(p_pipeline, 'any')), HINT = 'list the models with `deltapipe dag DIR`';
    END IF;
    FOR m IN SELECT * FROM deltapipe.model x
              WHERE (p_pipeline IS NULL OR x.pipeline = p_pipeline) AND (p_model IS NULL OR x.name = p_model)
              ORDER BY x.pipeline, x.name LOOP
        IF to_regclass(format('%I.%I', m.target_schema, m.target_table)) IS NULL THEN
            pipeline := m.pipeline; model := m.name; side := '?'; "row" := '{"error": "table missing (never run)"}';
            RETURN NEXT;
            CONTINUE;
        END IF;
        DROP TABLE IF EXISTS pg_temp._dp_verify;
        PERFORM set_config('search_path', format('%I, public', m.target_schema), true);
        EXECUTE format('CREATE TEMP TABLE _dp_verify AS SELECT * FROM (%s) _dp_q', m.sql);
        PERFORM set_config('search_path', old_path, true);
        cols := (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
                  WHERE a.attrelid = 'pg_temp._dp_verify'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                    AND a.attname NOT LIKE '\_dp\_%');
        RETURN QUERY EXECUTE format(
            'SELECT %1$L::text, %2$L::text, %3$L::text, to_jsonb(x) FROM (SELECT %4$s FROM pg_temp._dp_verify EXCEPT ALL SELECT %4$s FROM %5$I.%6$I) x
             UNION ALL
             SELECT %1$L, %2$L, %7$L, to_jsonb(x) FROM (SELECT %4$s FROM %5$I.%6$I EXCEPT ALL SELECT %4$s FROM pg_temp._dp_verify) x',
            m.pipeline, m.name, '-', cols, m.target_schema, m.target_table, '+');
        DROP TABLE pg_temp._dp_verify;
    END LOOP;
END
$fn$;

COMMENT ON FUNCTION deltapipe.verify(text, text) IS
  'Recompute models in full and compare with their tables as multisets: one row per difference (- missing from the table, + extra in the table).';
