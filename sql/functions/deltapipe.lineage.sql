CREATE OR REPLACE FUNCTION deltapipe.lineage(p_name text, p_direction text DEFAULT 'upstream', p_depth int DEFAULT NULL)
RETURNS TABLE (depth int, kind text, name text, via text, file text)
LANGUAGE plpgsql STABLE
AS $fn$
-- Tables (or columns) a table (or column) derives from (upstream) or that derive
-- from it (downstream), up to p_depth hops, by a recursive query over the
-- 'derives' edges. via: the neighbour one hop closer to p_name; file: where the
-- derivation is written.
DECLARE
    start_id bigint;
BEGIN
    IF p_direction IS NULL OR p_direction NOT IN ('upstream', 'downstream') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP402', MESSAGE = format('unknown lineage direction %s', p_direction),
            DETAIL = 'the direction says which way to follow the derivations',
            HINT = 'use upstream or downstream';
    END IF;
    IF p_depth IS NOT NULL AND p_depth < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'DP402', MESSAGE = format('lineage depth must be at least 1, got %s', p_depth),
            DETAIL = 'depth counts hops from the start node', HINT = 'omit the depth for the whole graph';
    END IF;
    start_id := deltapipe._lineage_node(p_name);
    RETURN QUERY
    WITH RECURSIVE walk (id, depth, via, file, path) AS (
        SELECT start_id, 0, NULL::bigint, NULL::text, ARRAY[start_id]
        UNION ALL
        SELECT nxt.id, w.depth + 1, w.id, nxt.file, w.path || nxt.id
          FROM walk w
          CROSS JOIN LATERAL (
              SELECT e.src AS id, e.file FROM deltapipe.lineage_edge e
               WHERE p_direction = 'upstream' AND e.dst = w.id AND e.kind = 'derives'
              UNION ALL
              SELECT e.dst, e.file FROM deltapipe.lineage_edge e
               WHERE p_direction = 'downstream' AND e.src = w.id AND e.kind = 'derives') nxt
         WHERE NOT nxt.id = ANY (w.path)
           AND (p_depth IS NULL OR w.depth < p_depth)
    ), best AS (
        SELECT DISTINCT ON (w.id, w.via, w.file) w.id, w.depth, w.via, w.file
          FROM walk w WHERE w.depth > 0
         ORDER BY w.id, w.via, w.file, w.depth
    )
    SELECT min(b.depth) OVER (PARTITION BY b.id)::int, n.kind, n.name, v.name, b.file
      FROM best b
      JOIN deltapipe.lineage_node n ON n.id = b.id
      JOIN deltapipe.lineage_node v ON v.id = b.via
     ORDER BY 1, 3, 4, 5;
END
$fn$;

COMMENT ON FUNCTION deltapipe.lineage(text, text, int) IS
  'Upstream or downstream lineage of a table ([schema.]table) or column ([schema.]table.column): '
  'one row per derivation (depth, kind, name, via, file), following derives edges recursively up to p_depth hops.';
