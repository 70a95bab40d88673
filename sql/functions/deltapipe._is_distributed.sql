CREATE OR REPLACE FUNCTION deltapipe._is_distributed(p_table regclass)
RETURNS boolean
LANGUAGE plpgsql
STABLE
AS $fn$
-- True when p_table is a hash-distributed Citus table (a dataset target or a
-- model table spread over the workers by its key); false for any other table,
-- and always false when the citus extension is not installed in the database:
-- every Citus branch of the load and refresh paths starts from here, so that
-- without Citus nothing changes.
DECLARE
    r boolean;
BEGIN
    IF p_table IS NULL OR to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1 AND partmethod = ''h'')'
       INTO r USING p_table;
    RETURN r;
END
$fn$;

COMMENT ON FUNCTION deltapipe._is_distributed(regclass) IS
  'Private: true when the table is a hash-distributed Citus table; false without the citus extension.';
