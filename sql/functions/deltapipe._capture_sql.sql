CREATE OR REPLACE FUNCTION deltapipe._capture_sql(p_name text, p_op text, p_run text)
RETURNS text
LANGUAGE plpgsql
STABLE
AS $fn$
-- The statement a capture trigger runs after an INSERT, UPDATE or DELETE (p_op)
-- of a captured table (p_name in deltapipe.tracked), reading its transition
-- tables dp_new / dp_old: ONE set-based INSERT of one changeset row per op, the
-- statement's keys and before-images as two arrays side by side
-- (deltapipe._input_delta reads them element by element) under run p_run (an
-- expression). An UPDATE pairs old and new rows by key (a key update is a
-- delete and an insert). No after-image: a refresh reads the new row from the table.
DECLARE
    t  record;
    kn text;
    ko text;
    jn text;
BEGIN
    SELECT * INTO t FROM deltapipe.tracked WHERE name = p_name;
    jn := (SELECT string_agg(format('%L, n.%I', k, k), ', ') FROM unnest(t.key_cols) k);
    ko := (SELECT string_agg(format('%L, o.%I', k, k), ', ') FROM unnest(t.key_cols) k);
    kn := (SELECT string_agg(format('o.%1$I = n.%1$I', k), ' AND ') FROM unnest(t.key_cols) k);
    IF p_op = 'INSERT' THEN
        RETURN format('INSERT INTO deltapipe.changeset (run_id, node, op, key) '
                      'SELECT %s, %L, ''I'', jsonb_agg(jsonb_build_object(%s)) FROM dp_new n HAVING count(*) > 0',
                      p_run, p_name, jn);
    ELSIF p_op = 'DELETE' THEN
        RETURN format('INSERT INTO deltapipe.changeset (run_id, node, op, key, before) '
                      'SELECT %s, %L, ''D'', jsonb_agg(jsonb_build_object(%s)), jsonb_agg(to_jsonb(o)) FROM dp_old o '
                      'HAVING count(*) > 0', p_run, p_name, ko);
    END IF;
    RETURN format($q$INSERT INTO deltapipe.changeset (run_id, node, op, key, before)
        SELECT %1$s, %2$L, x.op, jsonb_agg(x.key), CASE WHEN x.op = 'I' THEN NULL ELSE jsonb_agg(x.before) END
          FROM (SELECT CASE WHEN o.%6$I IS NULL THEN 'I' WHEN n.%6$I IS NULL THEN 'D' ELSE 'U' END AS op,
                       CASE WHEN n.%6$I IS NULL THEN jsonb_build_object(%4$s) ELSE jsonb_build_object(%3$s) END AS key,
                       CASE WHEN o.%6$I IS NULL THEN NULL ELSE to_jsonb(o) END AS before
                  FROM dp_old o FULL JOIN dp_new n ON %5$s) x
         GROUP BY x.op$q$, p_run, p_name, jn, ko, kn, t.key_cols[1]);
END
$fn$;

COMMENT ON FUNCTION deltapipe._capture_sql(text, text, text) IS
  'Private: the INSERT a capture trigger runs for one statement of a captured table (one changeset row per op, keys and before-images as arrays).';
