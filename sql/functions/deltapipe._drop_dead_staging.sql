CREATE OR REPLACE FUNCTION deltapipe._drop_dead_staging(p_retention interval DEFAULT '30 days')
RETURNS int
LANGUAGE plpgsql
AS $fn$
-- Drop the staging tables (and their work tables) of sessions that are gone, except
-- those of chunked loads that can still be resumed; returns how many were dropped.
-- Called by deltapipe.maintain() and at the start of every load (a killed load can
-- leave a committed staging table behind: a chunk, or the second half of a file
-- COPY'd over two connections). Tables some session is using are skipped.
DECLARE
    dropped int := 0;
    t       record;
BEGIN
    FOR t IN
        SELECT c.relname
          FROM pg_class c
         WHERE c.relnamespace = 'deltapipe_stage'::regnamespace AND c.relkind = 'r'
           AND NOT EXISTS (SELECT 1 FROM deltapipe.staging s JOIN pg_stat_activity a ON a.pid = s.backend_pid
                            WHERE c.relname = s.table_name OR c.relname LIKE s.table_name || '\__')
           -- the staged part of a chunked load can still be resumed (deltapipe load --resume)
           AND NOT EXISTS (SELECT 1 FROM deltapipe.run r WHERE r.status IN ('failed', 'running')
                            AND r.args->>'staging_table' = c.relname AND r.started_at > now() - p_retention)
    LOOP
        BEGIN
            EXECUTE format('LOCK TABLE deltapipe_stage.%I IN ACCESS EXCLUSIVE MODE NOWAIT', t.relname);
            EXECUTE format('DROP TABLE deltapipe_stage.%I CASCADE', t.relname);
            dropped := dropped + 1;
        EXCEPTION WHEN lock_not_available OR undefined_table THEN
            NULL;  -- in use right now, or already dropped with its parent
        END;
    END LOOP;
    DELETE FROM deltapipe.staging s WHERE to_regclass(format('deltapipe_stage.%I', s.table_name)) IS NULL;
    RETURN dropped;
END
$fn$;

COMMENT ON FUNCTION deltapipe._drop_dead_staging(interval) IS
  'Private: drop staging tables of sessions that are gone (not those of resumable chunked loads).';
