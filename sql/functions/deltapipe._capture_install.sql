CREATE OR REPLACE FUNCTION deltapipe._capture_install(p_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- (Re)create the capture of one table of deltapipe.tracked: a trigger function of
-- its own (static SQL, planned once per session; a dataset's table shares
-- deltapipe._capture_any) and statement-level AFTER
-- INSERT / UPDATE / DELETE triggers with transition tables, each appending the
-- statement's changes to deltapipe.changeset in ONE set-based INSERT
-- (deltapipe._capture_sql: one row per statement, its keys and before-images
-- as two arrays, under the table's capture run; the writer's transaction id is
-- the changeset's xid), plus an AFTER TRUNCATE trigger
-- (deltapipe._capture_truncate). deltapipe's own writes (the loader's MERGE
-- or swap, a rollback: deltapipe.writer set) are not logged twice. The trigger
-- function is SECURITY DEFINER (a writer needs no privilege on deltapipe's
-- catalog) but sets no search_path (that cost each statement a third of an empty
-- trigger's time): its body names every function and operator with its schema.
DECLARE
    t     record;
    tbl   text;
    fn    text;
    body  text;
BEGIN
    SELECT * INTO t FROM deltapipe.tracked WHERE name = p_name;
    tbl := format('%I.%I', t.target_schema, t.target_table);
    IF t.dataset IS NOT NULL THEN
        -- a dataset's table: the shared trigger function (writes to it are rare)
        fn := '_capture_any';
    ELSE
        fn := deltapipe._capture_function(p_name);
        body := format($b$
BEGIN
    IF coalesce(pg_catalog.current_setting('deltapipe.writer', true), '') OPERATOR(pg_catalog.<>) '' THEN
        RETURN NULL;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        %s;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        %s;
    ELSE
        %s;
    END IF;
    RETURN NULL;
END$b$, deltapipe._capture_sql(p_name, 'INSERT', t.run_id::text), deltapipe._capture_sql(p_name, 'DELETE', t.run_id::text),
            deltapipe._capture_sql(p_name, 'UPDATE', t.run_id::text));
        EXECUTE format('CREATE OR REPLACE FUNCTION deltapipe.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                       'AS %L', fn, body);
        EXECUTE format('COMMENT ON FUNCTION deltapipe.%I() IS %L', fn,
                       format('Private: the capture trigger of %s (deltapipe.track); dropped by deltapipe.untrack.', tbl));
    END IF;
    EXECUTE format('CREATE OR REPLACE TRIGGER _dp_capture_i AFTER INSERT ON %s REFERENCING NEW TABLE AS dp_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe.%I(%L)', tbl, fn, p_name);
    EXECUTE format('CREATE OR REPLACE TRIGGER _dp_capture_u AFTER UPDATE ON %s REFERENCING OLD TABLE AS dp_old NEW TABLE AS dp_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe.%I(%L)', tbl, fn, p_name);
    EXECUTE format('CREATE OR REPLACE TRIGGER _dp_capture_d AFTER DELETE ON %s REFERENCING OLD TABLE AS dp_old '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe.%I(%L)', tbl, fn, p_name);
    EXECUTE format('CREATE OR REPLACE TRIGGER _dp_capture_t AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe._capture_truncate(%L)', tbl, p_name);
END
$fn$;

COMMENT ON FUNCTION deltapipe._capture_install(text) IS
  'Private: (re)create the capture trigger function and the statement triggers of a tracked table.';
