CREATE OR REPLACE FUNCTION deltapipe._changes_range(p_lo bigint, p_hi bigint, p_prev text, p_cur text)
RETURNS text
LANGUAGE sql
STABLE
AS $fn$
-- The condition (over deltapipe.changeset c) that picks a source's changes committed
-- after one refresh's position and visible at the next: a position is the changeset's
-- last sequence number a refresh saw (p_lo, p_hi) with the snapshot it saw it in
-- (p_prev, p_cur: pg_snapshot text). A sequence number alone is not a safe position
-- (a lower number can commit after a higher one), so the rows at or below p_lo that
-- the previous snapshot did not see (their transaction was still running) are read
-- now, and a row the current snapshot does not see is left to the next refresh, which
-- reads it the same way: every change exactly once. A position written before
-- snapshots were kept (p_prev NULL) reads by sequence number alone.
SELECT CASE
    WHEN p_prev IS NULL THEN format('c.seq > %s AND c.seq <= %s', p_lo, p_hi)
    ELSE format('((c.seq > %1$s AND c.seq <= %2$s) OR (c.seq <= %1$s AND c.xid >= pg_snapshot_xmin(%3$L::pg_snapshot)'
                ' AND NOT pg_visible_in_snapshot(c.xid, %3$L::pg_snapshot)))'
                ' AND (c.xid IS NULL OR pg_visible_in_snapshot(c.xid, %4$L::pg_snapshot))',
                p_lo, p_hi, p_prev, coalesce(p_cur, deltapipe._own_snapshot()))
END
$fn$;

COMMENT ON FUNCTION deltapipe._changes_range(bigint, bigint, text, text) IS
  'Private: the changeset condition for a source''s changes between two positions (sequence number and snapshot), each change exactly once.';
