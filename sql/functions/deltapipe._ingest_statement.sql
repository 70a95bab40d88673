CREATE OR REPLACE FUNCTION deltapipe._ingest_statement(p_ds deltapipe.dataset, p_op_key text, p_ignore_unknown boolean,
                                                      p_strict boolean)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- ingest() step: the function that runs the statement of deltapipe._ingest_sql
-- for dataset p_ds and these options, created once: a PL/pgSQL function
-- deltapipe_stage._dp_ingest_<hash>(rows jsonb, keys text[], run bigint,
-- node_run bigint) RETURNS jsonb, whose statement is planned once per session
-- and then reused (planning the statement costs as much as running it on a few
-- hundred rows). The hash covers what the statement is made of: the dataset's
-- name, columns, key, rules and table, the options, and the text of
-- deltapipe._ingest_sql and of this routine (a new version makes a new function). The
-- dataset's older functions are dropped when a new one is made. The caller holds
-- the dataset's row lock. Returns the function's qualified name.
DECLARE
    h     text := md5(concat_ws(chr(31), p_ds.name, p_ds.columns::text, p_ds.key_cols::text, p_ds.options->'rules',
                                p_ds.target_schema, p_ds.target_table, p_op_key, p_ignore_unknown, p_strict,
                                (SELECT md5(string_agg(p.prosrc, chr(31) ORDER BY p.proname)) FROM pg_proc p
                                  WHERE p.oid IN ('deltapipe._ingest_sql(deltapipe.dataset, text, boolean, boolean)'::regprocedure,
                                                  'deltapipe._ingest_statement(deltapipe.dataset, text, boolean, boolean)'::regprocedure))));
    fname text := format('deltapipe_stage.%I', '_dp_ingest_' || h);
    tag   text := format('deltapipe ingest statement of dataset %s', p_ds.name);
    old   record;
BEGIN
    IF to_regprocedure(fname || '(jsonb, text[], bigint, bigint)') IS NOT NULL THEN
        RETURN fname;
    END IF;
    FOR old IN SELECT p.oid::regprocedure AS f FROM pg_proc p
                WHERE p.pronamespace = 'deltapipe_stage'::regnamespace AND p.proname LIKE '\_dp\_ingest\_%'
                  AND obj_description(p.oid, 'pg_proc') = tag LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS %s', old.f);
    END LOOP;
    -- its plan does not depend on the rows (their estimates are those of a function scan):
    -- the generic plan, made once, saves the planning of every call
    EXECUTE format('CREATE FUNCTION %s(jsonb, text[], bigint, bigint) RETURNS jsonb LANGUAGE plpgsql
                    SET plan_cache_mode = force_generic_plan AS %L',
                   fname, format(E'DECLARE _dp_res jsonb;\nBEGIN\n%s\n    INTO _dp_res;\n    RETURN _dp_res;\nEND',
                                 deltapipe._ingest_sql(p_ds, p_op_key, p_ignore_unknown, p_strict)));
    EXECUTE format('COMMENT ON FUNCTION %s(jsonb, text[], bigint, bigint) IS %L', fname, tag);
    RETURN fname;
END
$fn$;

COMMENT ON FUNCTION deltapipe._ingest_statement(deltapipe.dataset, text, boolean, boolean) IS
  'Private, ingest() step: the function holding a dataset''s ingest statement (created once, its plan reused).';
