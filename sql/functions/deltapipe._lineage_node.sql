CREATE OR REPLACE FUNCTION deltapipe._lineage_node(p_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
AS $fn$
-- Find a table or column of the lineage graph by the name a user types:
-- schema.table, table (schema public), schema.table.column or table.column.
DECLARE
    n bigint;
    cand text;
BEGIN
    FOREACH cand IN ARRAY ARRAY[p_name, lower(p_name)] LOOP
        SELECT x.id INTO n FROM deltapipe.lineage_node x
         WHERE (x.kind = 'table' AND x.name IN (cand, 'public.' || cand))
            OR (x.kind = 'column' AND x.name IN (cand, 'public.' || cand))
         ORDER BY x.kind = 'table' DESC, x.name = cand DESC
         LIMIT 1;
        IF FOUND THEN
            RETURN n;
        END IF;
    END LOOP;
    RAISE EXCEPTION USING ERRCODE = 'DP401',
        MESSAGE = format('unknown table or column %s in the lineage graph', p_name),
        DETAIL = format('the graph holds %s tables and %s columns',
                        (SELECT count(*) FROM deltapipe.lineage_node WHERE kind = 'table'),
                        (SELECT count(*) FROM deltapipe.lineage_node WHERE kind = 'column')),
        HINT = 'scan the SQL files first: deltapipe lineage scan DIR; name a table as [schema.]table or a column as [schema.]table.column';
END
$fn$;

COMMENT ON FUNCTION deltapipe._lineage_node(text) IS
  'Private: the id of the lineage node (table or column) a user-typed name refers to; DP401 when there is none.';
