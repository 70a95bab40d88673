CREATE OR REPLACE FUNCTION deltapipe._probe_columns(p_table regclass)
RETURNS text[]
LANGUAGE sql
STABLE
AS $fn$
-- The columns of a table that deltapipe indexed for the probes of affected-key
-- refreshes (deltapipe._ensure_index: indexes named <table>_dp_<column>_idx). A table
-- swapped in by a full refresh or a large load gets them again (its build already
-- costs a pass over the table), not at the next incremental refresh.
SELECT coalesce(array_agg(a.attname::text ORDER BY a.attname), '{}')
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
 WHERE i.indrelid = p_table AND NOT i.indisprimary AND ic.relname LIKE '%\_dp\_%\_idx'
$fn$;

COMMENT ON FUNCTION deltapipe._probe_columns(regclass) IS
  'Private: the columns deltapipe indexed on a table for affected-key refreshes (carried over when the table is swapped).';
