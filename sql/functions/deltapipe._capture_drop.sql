CREATE OR REPLACE FUNCTION deltapipe._capture_drop(p_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- Remove the capture of one table of deltapipe.tracked: its triggers (when the
-- table still exists), its trigger function, its capture run (and with it the
-- changes logged under it) and its catalog row.
DECLARE
    t   record;
    tbl text;
    trg text;
BEGIN
    SELECT * INTO t FROM deltapipe.tracked WHERE name = p_name;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    tbl := format('%I.%I', t.target_schema, t.target_table);
    IF to_regclass(tbl) IS NOT NULL THEN
        FOREACH trg IN ARRAY ARRAY['_dp_capture_i', '_dp_capture_u', '_dp_capture_d', '_dp_capture_t'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', trg, tbl);
        END LOOP;
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS deltapipe.%I()', deltapipe._capture_function(p_name));
    DELETE FROM deltapipe.run WHERE id = t.run_id AND kind = 'capture';
    DELETE FROM deltapipe.tracked WHERE name = p_name;
END
$fn$;

COMMENT ON FUNCTION deltapipe._capture_drop(text) IS
  'Private: drop the capture of a tracked table or dataset (triggers, trigger function, capture run, catalog row).';
