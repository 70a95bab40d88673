CREATE OR REPLACE FUNCTION deltapipe._history_restore(p_run bigint, p_dataset text, p_valid_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- rollback() step for a dataset keeping history: put its history table back as
-- it was before the load of run p_run, whose versions started and ended at
-- p_valid_at (node_run.valid_at): the versions it opened (valid_from =
-- p_valid_at, still current, for the keys of its changeset) are deleted and
-- those it closed (valid_to = p_valid_at) are current again. If that load created the history table, the table is
-- dropped. Returns the number of versions deleted or reopened.
DECLARE
    ds    deltapipe.dataset := deltapipe._dataset(p_dataset);
    h     jsonb := deltapipe._history(ds);
    kjoin text := (SELECT string_agg(format('h.%1$I = b.%1$I', k), ' AND ') FROM unnest(ds.key_cols) k);
    n     bigint := 0;
    m     bigint;
BEGIN
    IF h IS NULL OR NOT (h->>'exists')::boolean THEN
        RETURN 0;
    END IF;
    IF (h->>'since_run')::bigint = p_run THEN
        EXECUTE format('DROP TABLE %s', h->>'name');
        RETURN 0;
    END IF;
    IF p_valid_at IS NULL THEN
        RETURN 0;  -- a load before the history began
    END IF;
    -- the new versions first: a reopened version is current again (the load's time is its own:
    -- later than every earlier load's, so these are exactly the versions it opened and closed).
    -- No later load changed the dataset (rollback refuses), so those it opened are still
    -- current: found by key among the current versions, for the keys it inserted or updated
    EXECUTE format('DELETE FROM %1$s h USING (SELECT (jsonb_populate_record(NULL::%1$s, key)).* FROM deltapipe.changeset
                                              WHERE run_id = %2$s AND node = %3$L AND op IN (%4$L, %5$L)) b
                    WHERE %6$s AND h.%7$I IS NULL AND h.%8$I = %9$L',
                   h->>'name', p_run, ds.name, 'I', 'U', kjoin, h->>'to', h->>'from', p_valid_at);
    GET DIAGNOSTICS m = ROW_COUNT; n := n + m;
    EXECUTE format('UPDATE %1$s SET %2$I = NULL WHERE %2$I = %3$L', h->>'name', h->>'to', p_valid_at);
    GET DIAGNOSTICS m = ROW_COUNT; n := n + m;
    RETURN n;
END
$fn$;

COMMENT ON FUNCTION deltapipe._history_restore(bigint, text, timestamptz) IS
  'Private, rollback() step: delete the versions a load opened and reopen those it closed (drop the history table it created).';
