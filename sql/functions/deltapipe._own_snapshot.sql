CREATE OR REPLACE FUNCTION deltapipe._own_snapshot()
RETURNS text
LANGUAGE plpgsql STABLE
AS $fn$
-- The current snapshot (pg_current_snapshot) as the position of a refresh, with
-- this transaction's own writes counted as committed: a refresh that runs in the
-- transaction that wrote the changes it reads (deltapipe.ingest with propagate,
-- a load and CALL deltapipe.run_pipeline in one transaction) reads them now and,
-- once they commit, never again. pg_current_snapshot leaves the own transaction
-- out of its in-progress list, but its xmax can be at or below the own id, which
-- then reads as not yet started: xmax moves past the own id and every id in
-- between (each was running, or not used, when the snapshot was taken) is listed
-- as in progress. Without an own transaction id, the snapshot as it is.
DECLARE
    s    pg_snapshot := pg_current_snapshot();
    me   xid8 := pg_current_xact_id_if_assigned();
    xmax numeric;
    mine numeric;
BEGIN
    IF me IS NULL OR pg_visible_in_snapshot(me, s) THEN
        RETURN s::text;
    END IF;
    xmax := pg_snapshot_xmax(s)::text::numeric;
    mine := me::text::numeric;
    RETURN format('%s:%s:%s', pg_snapshot_xmin(s), mine + 1,
                  (SELECT coalesce(string_agg(x::text, ',' ORDER BY x), '')
                     FROM (SELECT pg_snapshot_xip(s)::text::numeric AS x
                           UNION SELECT g FROM generate_series(xmax, mine - 1) g) u));
END
$fn$;

COMMENT ON FUNCTION deltapipe._own_snapshot() IS
  'Private: the current snapshot with the own transaction''s writes counted as committed (the position of a refresh).';
