CREATE OR REPLACE FUNCTION deltapipe._changeset_run()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
-- The link between deltapipe.changeset and deltapipe.run, checked once per
-- statement instead of once per row (a foreign key costs a lookup and a row lock
-- of the run for every changeset row, which dominated writing large deltas):
-- after an INSERT into changeset every run_id must name a run (else 23503, as a
-- foreign key would say); after a DELETE of runs their changesets go too, and
-- their rows in the models' change logs (deltapipe_log).
DECLARE
    lg record;
BEGIN
    IF TG_TABLE_NAME = 'changeset' THEN
        IF EXISTS (SELECT 1 FROM (SELECT DISTINCT n.run_id FROM dp_new n) n
                    WHERE NOT EXISTS (SELECT 1 FROM deltapipe.run r WHERE r.id = n.run_id)) THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                MESSAGE = 'insert into deltapipe.changeset: run_id is not a run',
                DETAIL = format('run ids: %s', (SELECT string_agg(DISTINCT n.run_id::text, ', ') FROM dp_new n
                                                  WHERE NOT EXISTS (SELECT 1 FROM deltapipe.run r WHERE r.id = n.run_id)));
        END IF;
    ELSE
        DELETE FROM deltapipe.changeset c USING dp_old o WHERE c.run_id = o.id;
        -- and the rows of the models' change logs
        FOR lg IN SELECT c.oid::regclass::text AS t FROM pg_class c
                   WHERE c.relnamespace = to_regnamespace('deltapipe_log') AND c.relkind = 'r' LOOP
            EXECUTE format('DELETE FROM %s l USING dp_old o WHERE l._dp_run = o.id', lg.t);
        END LOOP;
    END IF;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION deltapipe._changeset_run() IS
  'Private: trigger keeping changeset.run_id pointing at runs (checked per statement; deleting runs deletes their changesets).';

-- (not for the capture triggers of tracked tables: their run exists, and a check per
-- application statement would cost as much as the capture; they set deltapipe.capturing)
CREATE OR REPLACE TRIGGER changeset_run_check AFTER INSERT ON deltapipe.changeset
    REFERENCING NEW TABLE AS dp_new FOR EACH STATEMENT
    WHEN (current_setting('deltapipe.capturing', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION deltapipe._changeset_run();
CREATE OR REPLACE TRIGGER run_changeset_delete AFTER DELETE ON deltapipe.run
    REFERENCING OLD TABLE AS dp_old FOR EACH STATEMENT EXECUTE FUNCTION deltapipe._changeset_run();
