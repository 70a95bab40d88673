CREATE OR REPLACE FUNCTION deltapipe._model_guard()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
-- BEFORE INSERT/UPDATE/DELETE/TRUNCATE of a model's table (TG_ARGV: pipeline,
-- model): a model's table is written by its refresh only (deltapipe.writer set
-- by deltapipe.run_node and deltapipe.rollback). A write by hand would leave the
-- table and its change log apart, and every model downstream silently wrong.
BEGIN
    IF coalesce(current_setting('deltapipe.writer', true), '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP704',
            MESSAGE = format('%s of %I.%I refused: it is the table of model %s of pipeline %s, written by its refresh only',
                             TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[0]),
            DETAIL = 'a model''s rows are derived from its inputs: a change by hand would not reach its change log or the models reading it',
            HINT = 'change the model''s inputs (or its SQL) and run the pipeline; `deltapipe run --full-refresh` rebuilds it';
    END IF;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION deltapipe._model_guard() IS
  'Private: trigger refusing writes to a model''s table outside its refresh (DP704).';
