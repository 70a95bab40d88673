CREATE OR REPLACE FUNCTION deltapipe._capture_any()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
-- The capture trigger of a dataset's table (TG_ARGV[0]: the dataset): a write
-- outside deltapipe's loads (a DBA's fix, another application's UPDATE) is a
-- change of the dataset, logged like a tracked table's (deltapipe._capture_sql,
-- run as dynamic SQL: such writes are rare) under the dataset's capture run,
-- created by the first one. deltapipe's own writes (deltapipe.writer set: the
-- loader, a rollback) are not logged twice.
DECLARE
    rid bigint;
BEGIN
    IF coalesce(current_setting('deltapipe.writer', true), '') <> '' THEN
        RETURN NULL;
    END IF;
    SELECT run_id INTO rid FROM deltapipe.tracked WHERE name = TG_ARGV[0] FOR UPDATE;
    IF rid IS NULL THEN
        INSERT INTO deltapipe.run (kind, trigger, status, args, finished_at, backend_pid)
        VALUES ('capture', 'sql', 'done', jsonb_build_object('dataset', TG_ARGV[0]), clock_timestamp(), NULL)
        RETURNING id INTO rid;
    END IF;
    UPDATE deltapipe.tracked SET run_id = rid, writes = writes + 1 WHERE name = TG_ARGV[0];
    EXECUTE deltapipe._capture_sql(TG_ARGV[0], TG_OP, rid::text);
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION deltapipe._capture_any() IS
  'Private: capture trigger of a dataset''s table: writes outside its loads are changes of the dataset.';
