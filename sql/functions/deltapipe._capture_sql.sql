CREATE OR REPLACE FUNCTION deltapipe._capture_sql(p_name text, p_op text, p_run text)
RETURNS text
LANGUAGE plpgsql
STABLE
AS $fn$
-- The statement a capture trigger runs after an INSERT, UPDATE or DELETE (p_op)
-- of a captured table (p_name in deltapipe.tracked), reading its transition
-- tables dp_new / dp_old: ONE set-based INSERT of one changeset row, the
-- statement's keys and before-images as two arrays side by side
-- (deltapipe._input_delta reads them element by element) under run p_run (an
-- expression). No after-image: a refresh reads the new row from the table.
-- Every function and operator is schema-qualified: the trigger function runs it
-- as SECURITY DEFINER without a SET search_path (which cost each statement a
-- third of an empty trigger's time), so the writer's search_path must not matter.
-- A statement without rows logs nothing (HAVING on the keys' aggregate, which
-- the planner computes once for both uses: no count(*) of its own).
DECLARE
    t  record;
    ko text;
    jn text;
    ka text;
BEGIN
    SELECT * INTO t FROM deltapipe.tracked WHERE name = p_name;
    -- the keys as one jsonb array: of values when the key is one column (an array_agg
    -- turned into jsonb once costs a third of building an object per row), else of objects
    IF cardinality(t.key_cols) = 1 THEN
        jn := format('pg_catalog.to_jsonb(pg_catalog.array_agg(n.%I))', t.key_cols[1]);
        ko := format('pg_catalog.to_jsonb(pg_catalog.array_agg(o.%I))', t.key_cols[1]);
        ka := format('pg_catalog.array_agg(%s.%I)', CASE WHEN p_op = 'INSERT' THEN 'n' ELSE 'o' END, t.key_cols[1]);
    ELSE
        jn := format('pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(%s))', (SELECT string_agg(format('%L, n.%I', k, k), ', ') FROM unnest(t.key_cols) k));
        ko := format('pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(%s))', (SELECT string_agg(format('%L, o.%I', k, k), ', ') FROM unnest(t.key_cols) k));
        ka := CASE WHEN p_op = 'INSERT' THEN jn ELSE ko END;
    END IF;
    IF p_op = 'INSERT' THEN
        RETURN format('INSERT INTO deltapipe.changeset (run_id, node, op, key) '
                      'SELECT %s, %L, ''I'', %s FROM dp_new n HAVING %s IS NOT NULL',
                      p_run, p_name, jn, ka);
    ELSIF p_op = 'DELETE' THEN
        RETURN format('INSERT INTO deltapipe.changeset (run_id, node, op, key, before) '
                      'SELECT %s, %L, ''D'', %s, pg_catalog.to_jsonb(pg_catalog.array_agg(o)) FROM dp_old o '
                      'HAVING %s IS NOT NULL', p_run, p_name, ko, ka);
    END IF;
    -- an UPDATE: the old rows' keys with their before-images, then the new rows' keys
    -- (no image: where a key is both, its before-image counts; a key only among the
    -- new rows was inserted by a key update); no join of old and new rows: one
    -- aggregate over the old rows, the new rows' keys an InitPlan (a third cheaper
    -- to start than joining two aggregates, which every single-row UPDATE pays)
    RETURN format('INSERT INTO deltapipe.changeset (run_id, node, op, key, before) '
                  'SELECT %s, %L, ''U'', %s OPERATOR(pg_catalog.||) (SELECT coalesce(%s, ''[]'') FROM dp_new n), '
                  'pg_catalog.to_jsonb(pg_catalog.array_agg(o)) FROM dp_old o HAVING %s IS NOT NULL',
                  p_run, p_name, ko, jn, ka);
END
$fn$;

COMMENT ON FUNCTION deltapipe._capture_sql(text, text, text) IS
  'Private: the INSERT a capture trigger runs for one statement of a captured table (one changeset row per op, keys and before-images as arrays).';
