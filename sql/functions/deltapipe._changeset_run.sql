CREATE OR REPLACE FUNCTION deltapipe._changeset_run()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
-- The link between deltapipe.changeset and deltapipe.run, kept without a foreign
-- key (which costs a lookup and a row lock of the run for every changeset row):
-- after a DELETE of runs, their changesets go too, and their rows in the models'
-- change logs (deltapipe_log). Changeset rows are written only by deltapipe's
-- own routines, each under the run it holds (a load's or an ingest's run, made in
-- the same transaction; a tracked table's capture run), so an INSERT is not
-- checked: a check per statement cost a capture trigger as much as its own INSERT
-- (revision 0018).
DECLARE
    lg record;
BEGIN
    DELETE FROM deltapipe.changeset c USING dp_old o WHERE c.run_id = o.id;
    -- and the rows of the models' change logs
    FOR lg IN SELECT c.oid::regclass::text AS t FROM pg_class c
               WHERE c.relnamespace = to_regnamespace('deltapipe_log') AND c.relkind = 'r' LOOP
        EXECUTE format('DELETE FROM %s l USING dp_old o WHERE l._dp_run = o.id', lg.t);
    END LOOP;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION deltapipe._changeset_run() IS
  'Private: trigger after DELETE of runs: their changesets (and their rows in the models'' change logs) go too.';

CREATE OR REPLACE TRIGGER run_changeset_delete AFTER DELETE ON deltapipe.run
    REFERENCING OLD TABLE AS dp_old FOR EACH STATEMENT EXECUTE FUNCTION deltapipe._changeset_run();
