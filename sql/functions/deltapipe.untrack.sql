CREATE OR REPLACE FUNCTION deltapipe.untrack(p_table text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Stop tracking a table: its triggers and trigger function are dropped, and its
-- change log with its capture run. Models reading it refresh in full from then
-- on (deploy their pipeline again: it is an external table to them now).
--   SELECT deltapipe.untrack('public.orders');
DECLARE
    t   record;
    rel regclass := to_regclass(p_table);
BEGIN
    SELECT * INTO t FROM deltapipe.tracked x
     WHERE x.name = p_table
        OR (rel IS NOT NULL AND to_regclass(format('%I.%I', x.target_schema, x.target_table)) = rel)
     LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DP703', MESSAGE = format('%s is not tracked', p_table),
            HINT = 'list the tracked tables with `deltapipe tracked`';
    ELSIF t.dataset IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP703', MESSAGE = format('%s is the table of dataset %s, always tracked', p_table, t.dataset),
            DETAIL = 'writes to a dataset''s table outside its loads are changes of the dataset',
            HINT = 'drop the dataset (`deltapipe dataset drop`) to stop it';
    END IF;
    PERFORM deltapipe._capture_drop(t.name);
    RETURN jsonb_build_object('name', t.name, 'untracked', true);
END
$fn$;

COMMENT ON FUNCTION deltapipe.untrack(text) IS
  'Stop tracking a table: drop its triggers, its trigger function and its change log.';
