CREATE OR REPLACE FUNCTION deltapipe._dedup(p_table text, p_keys text[], p_keep text DEFAULT 'max(_dp_line)')
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- Keep one row per key in p_table (a work table with _dp_line): the row chosen
-- by p_keep (default: the last line). Returns how many rows were removed.
DECLARE
    klist text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(p_keys) k);
    kjoin text := (SELECT string_agg(format('s.%1$I = d.%1$I', k), ' AND ') FROM unnest(p_keys) k);
    n     bigint;
BEGIN
    EXECUTE format('CREATE TEMP TABLE _dp_dup ON COMMIT DROP AS
                    SELECT %1$s, %2$s AS keep FROM %3$s GROUP BY %1$s HAVING count(*) > 1', klist, p_keep, p_table);
    EXECUTE format('DELETE FROM %s s USING _dp_dup d WHERE %s AND s._dp_line <> d.keep', p_table, kjoin);
    GET DIAGNOSTICS n = ROW_COUNT;
    DROP TABLE _dp_dup;
    RETURN n;
END
$fn$;

COMMENT ON FUNCTION deltapipe._dedup(text, text[], text) IS
  'Private: keep one row per key in a work table (the last line by default); returns the number removed.';
