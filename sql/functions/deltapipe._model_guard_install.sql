CREATE OR REPLACE FUNCTION deltapipe._model_guard_install(p_pipeline text, p_model text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- Put deltapipe._model_guard on a model's table when it is not there (a first
-- build, or a refresh that swapped a new table in): writes outside its refresh
-- are refused.
DECLARE
    tbl text;
BEGIN
    SELECT format('%I.%I', target_schema, target_table) INTO tbl FROM deltapipe.model
     WHERE pipeline = p_pipeline AND name = p_model;
    -- (a distributed Citus table cannot have triggers: it is not guarded)
    IF tbl IS NULL OR to_regclass(tbl) IS NULL OR deltapipe._is_distributed(tbl::regclass)
       OR EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = tbl::regclass AND g.tgname = '_dp_guard') THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER _dp_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe._model_guard(%L, %L)', tbl, p_pipeline, p_model);
END
$fn$;

COMMENT ON FUNCTION deltapipe._model_guard_install(text, text) IS
  'Private: put the write guard (deltapipe._model_guard) on a model''s table.';
