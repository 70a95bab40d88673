CREATE OR REPLACE FUNCTION deltapipe._run_audits(p_pipeline text, p_model text, p_table regclass)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Run the compiled audits of a model (deltapipe.model.audits) on a table holding
-- its NEW result (the built table of a full refresh, or the post-change table of
-- an incremental refresh, before commit). The table's visible columns are
-- exposed as the temporary view `this` (pg_temp comes first in the search path,
-- then the model's schema and public, as for the model's SELECT).
-- Returns {"results": [{audit, blocking, failing_rows, sample}], "failed": text|null};
-- "failed" names the blocking audits that found rows. Raises DP502 when an
-- audit's SQL itself fails. The caller decides what to publish.
DECLARE
    m        record;
    au       jsonb;
    n        bigint;
    sample   jsonb;
    results  jsonb := '[]';
    failed   text[] := '{}';
    old_path text := current_setting('search_path');
BEGIN
    SELECT * INTO m FROM deltapipe.model WHERE pipeline = p_pipeline AND name = p_model;
    IF m.audits IS NULL OR jsonb_array_length(m.audits) = 0 THEN
        RETURN jsonb_build_object('results', results, 'failed', NULL);
    END IF;
    DROP VIEW IF EXISTS pg_temp.this;
    EXECUTE format('CREATE TEMP VIEW this AS SELECT %s FROM %s',
                   (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
                     WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
                       AND a.attname NOT LIKE '\_dp\_%'),
                   p_table);
    PERFORM set_config('search_path', format('pg_temp, %I, public', m.target_schema), true);
    FOR au IN SELECT x FROM jsonb_array_elements(m.audits) x LOOP
        BEGIN
            EXECUTE format('SELECT max(n), jsonb_agg(r) FROM (SELECT count(*) OVER () AS n, to_jsonb(_dp_a) AS r
                                                              FROM (%s) _dp_a LIMIT 10) s', au->>'sql')
               INTO n, sample;
        EXCEPTION WHEN OTHERS THEN
            PERFORM set_config('search_path', old_path, true);
            RAISE EXCEPTION USING ERRCODE = 'DP502',
                MESSAGE = format('model %s: audit %s failed to run: %s', m.name, au->>'name', SQLERRM),
                DETAIL = format('audit SQL: %s', au->>'sql'),
                HINT = 'fix the audit in the model''s header (or its .audits.sql file) and deploy again';
        END;
        n := coalesce(n, 0);
        results := results || jsonb_build_array(jsonb_build_object(
            'audit', au->>'name', 'blocking', (au->>'blocking')::boolean, 'failing_rows', n,
            'sample', CASE WHEN n > 0 THEN sample END));
        IF n > 0 AND (au->>'blocking')::boolean THEN
            failed := failed || format('%s (%s offending row%s)', au->>'name', n, CASE WHEN n = 1 THEN '' ELSE 's' END);
        END IF;
    END LOOP;
    PERFORM set_config('search_path', old_path, true);
    DROP VIEW pg_temp.this;
    RETURN jsonb_build_object('results', results, 'failed',
        CASE WHEN cardinality(failed) > 0 THEN
            format('model %s: blocking audit%s failed: %s', m.name, CASE WHEN cardinality(failed) > 1 THEN 's' ELSE '' END,
                   array_to_string(failed, ', '))
        END);
END
$fn$;

COMMENT ON FUNCTION deltapipe._run_audits(text, text, regclass) IS
  'Private: run a model''s audits on a table holding its new result (as the view this); returns results and the failed blocking audits.';
