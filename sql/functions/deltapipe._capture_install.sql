CREATE OR REPLACE FUNCTION deltapipe._capture_install(p_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- (Re)create the capture of one table of deltapipe.tracked: a trigger function of
-- its own (static SQL, planned once per session) and statement-level AFTER
-- INSERT / UPDATE / DELETE triggers with transition tables, each appending the
-- statement's changes to deltapipe.changeset in ONE set-based INSERT (key, op,
-- before- and after-image, under the table's capture run; the writer's
-- transaction id is the changeset's xid), plus an AFTER TRUNCATE trigger
-- (deltapipe._capture_truncate). An UPDATE pairs old and new rows by key (a key
-- update is a delete and an insert). deltapipe's own writes (the loader's MERGE
-- or swap, a rollback: deltapipe.writer set) are not logged twice.
DECLARE
    t     deltapipe.tracked;
    tbl   text;
    fn    text;
    kn    text;
    ko    text;
    jn    text;
    body  text;
BEGIN
    SELECT * INTO t FROM deltapipe.tracked WHERE name = p_name;
    tbl := format('%I.%I', t.target_schema, t.target_table);
    fn := deltapipe._capture_function(p_name);
    jn := (SELECT string_agg(format('%L, n.%I', k, k), ', ') FROM unnest(t.key_cols) k);
    ko := (SELECT string_agg(format('%L, o.%I', k, k), ', ') FROM unnest(t.key_cols) k);
    kn := (SELECT string_agg(format('o.%1$I = n.%1$I', k), ' AND ') FROM unnest(t.key_cols) k);
    body := format($b$
BEGIN
    IF coalesce(current_setting('deltapipe.writer', true), '') <> '' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO deltapipe.changeset (run_id, node, op, key, before, after)
        SELECT %1$s, %2$L, 'I', jsonb_build_object(%3$s), NULL, to_jsonb(n) FROM dp_new n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO deltapipe.changeset (run_id, node, op, key, before, after)
        SELECT %1$s, %2$L, 'D', jsonb_build_object(%4$s), to_jsonb(o), NULL FROM dp_old o;
    ELSE
        INSERT INTO deltapipe.changeset (run_id, node, op, key, before, after)
        SELECT %1$s, %2$L,
               CASE WHEN o.%6$I IS NULL THEN 'I' WHEN n.%6$I IS NULL THEN 'D' ELSE 'U' END,
               CASE WHEN n.%6$I IS NULL THEN jsonb_build_object(%4$s) ELSE jsonb_build_object(%3$s) END,
               CASE WHEN o.%6$I IS NULL THEN NULL ELSE to_jsonb(o) END,
               CASE WHEN n.%6$I IS NULL THEN NULL ELSE to_jsonb(n) END
          FROM dp_old o FULL JOIN dp_new n ON %5$s;
    END IF;
    %7$s
    RETURN NULL;
END$b$, t.run_id, p_name, jn, ko, kn, t.key_cols[1],
        CASE WHEN t.dataset IS NOT NULL
             THEN format('UPDATE deltapipe.tracked SET writes = writes + 1 WHERE name = %L;', p_name) ELSE '' END);
    EXECUTE format('CREATE OR REPLACE FUNCTION deltapipe.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                   'SET search_path = pg_catalog, pg_temp AS %L', fn, body);
    EXECUTE format('COMMENT ON FUNCTION deltapipe.%I() IS %L', fn,
                   format('Private: the capture trigger of %s (deltapipe.track); dropped by deltapipe.untrack.', tbl));
    EXECUTE format('CREATE OR REPLACE TRIGGER _dp_capture_i AFTER INSERT ON %s REFERENCING NEW TABLE AS dp_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe.%I()', tbl, fn);
    EXECUTE format('CREATE OR REPLACE TRIGGER _dp_capture_u AFTER UPDATE ON %s REFERENCING OLD TABLE AS dp_old NEW TABLE AS dp_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe.%I()', tbl, fn);
    EXECUTE format('CREATE OR REPLACE TRIGGER _dp_capture_d AFTER DELETE ON %s REFERENCING OLD TABLE AS dp_old '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe.%I()', tbl, fn);
    EXECUTE format('CREATE OR REPLACE TRIGGER _dp_capture_t AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION deltapipe._capture_truncate(%L)', tbl, p_name);
END
$fn$;

COMMENT ON FUNCTION deltapipe._capture_install(text) IS
  'Private: (re)create the capture trigger function and the statement triggers of a tracked table.';
