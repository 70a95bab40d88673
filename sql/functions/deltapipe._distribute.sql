CREATE OR REPLACE FUNCTION deltapipe._distribute(p_table text, p_column text, p_like text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- Make p_table (a new dataset target or model table, already keyed) a
-- distributed Citus table by its column p_column (the first key column), in
-- the caller's transaction: co-located with p_like (the table it replaces, on
-- a swap) when given, else with the other tables distributed by a column of
-- the same type (Citus's default co-location group), so that joins on the key
-- run shard by shard. Raises DP045 when the citus extension is not installed.
-- deltapipe's own triggers on the table are dropped first (Citus allows none).
-- Returns nothing.
DECLARE
    trg name;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP045',
            MESSAGE = format('%s cannot be distributed: the citus extension is not installed in this database', p_table),
            HINT = 'CREATE EXTENSION citus on the coordinator and add the workers, or drop the distributed option';
    END IF;
    -- Citus refuses triggers on a distributed table: deltapipe's own (the capture of
    -- writes outside loads, a model's write guard) go; a distributed table has none
    FOR trg IN SELECT tgname FROM pg_trigger WHERE tgrelid = p_table::regclass AND NOT tgisinternal
                  AND tgname LIKE '\_dp\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg, p_table);
    END LOOP;
    IF p_like IS NOT NULL THEN
        EXECUTE 'SELECT create_distributed_table($1::regclass, $2, colocate_with => $3)' USING p_table, p_column, p_like;
    ELSE
        EXECUTE 'SELECT create_distributed_table($1::regclass, $2)' USING p_table, p_column;
    END IF;
    -- the rows were copied into the shards: the coordinator's own copy goes
    EXECUTE 'SELECT truncate_local_data_after_distributing_table($1::regclass)' USING p_table;
END
$fn$;

COMMENT ON FUNCTION deltapipe._distribute(text, text, text) IS
  'Private: distribute a new table by its first key column with Citus, co-located with the table it replaces or by type.';
