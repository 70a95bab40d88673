CREATE OR REPLACE FUNCTION deltapipe.lineage_apply(p_root text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Merge the edges staged in the session's temp table dp_lineage_stage
-- (file, kind, src_kind, src_name, dst_kind, dst_name; a row with kind 'file' and no
-- dst only declares the file) into the lineage graph, set-based: the staged edges
-- become the complete set of edges of every file under p_root. Edges that did not
-- change are not touched; nodes that no edge uses any more are removed.
DECLARE
    prefix  text := rtrim(p_root, '/') || '/';
    added   bigint;
    removed bigint;
    nodes   bigint;
    gone    bigint;
BEGIN
    IF p_root IS NULL OR p_root = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP402', MESSAGE = 'lineage_apply: empty root directory',
            DETAIL = 'p_root names the scanned directory; edges of files under it are replaced.',
            HINT = 'pass the absolute path of the scanned directory';
    END IF;
    IF to_regclass('pg_temp.dp_lineage_stage') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP403', MESSAGE = 'lineage_apply: no staged lineage in this session',
            DETAIL = 'expected a temp table dp_lineage_stage (file, kind, src_kind, src_name, dst_kind, dst_name)',
            HINT = 'CREATE TEMP TABLE dp_lineage_stage and COPY the edges into it first (deltapipe lineage scan does this)';
    END IF;

    INSERT INTO deltapipe.lineage_node (kind, name)
    SELECT DISTINCT k, n FROM (
        SELECT 'file' AS k, file AS n FROM pg_temp.dp_lineage_stage
        UNION ALL SELECT src_kind, src_name FROM pg_temp.dp_lineage_stage WHERE src_name IS NOT NULL
        UNION ALL SELECT dst_kind, dst_name FROM pg_temp.dp_lineage_stage WHERE dst_name IS NOT NULL) s
    ON CONFLICT (kind, name) DO NOTHING;
    GET DIAGNOSTICS nodes = ROW_COUNT;

    CREATE TEMP TABLE IF NOT EXISTS dp_lineage_new (src bigint, dst bigint, kind text, file text) ON COMMIT DROP;
    TRUNCATE dp_lineage_new;
    INSERT INTO dp_lineage_new
    SELECT DISTINCT a.id, b.id, s.kind, s.file
      FROM pg_temp.dp_lineage_stage s
      JOIN deltapipe.lineage_node a ON a.kind = s.src_kind AND a.name = s.src_name
      JOIN deltapipe.lineage_node b ON b.kind = s.dst_kind AND b.name = s.dst_name
     WHERE s.kind <> 'file';

    DELETE FROM deltapipe.lineage_edge e
     WHERE left(e.file, length(prefix)) = prefix
       AND NOT EXISTS (SELECT 1 FROM dp_lineage_new n
                        WHERE (n.src, n.dst, n.kind, n.file) = (e.src, e.dst, e.kind, e.file));
    GET DIAGNOSTICS removed = ROW_COUNT;

    INSERT INTO deltapipe.lineage_edge (src, dst, kind, file)
    SELECT src, dst, kind, file FROM dp_lineage_new
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;

    -- files under the root that are gone, and nodes no edge uses any more
    DELETE FROM deltapipe.lineage_node f
     WHERE f.kind = 'file' AND left(f.name, length(prefix)) = prefix
       AND NOT EXISTS (SELECT 1 FROM pg_temp.dp_lineage_stage s WHERE s.file = f.name);
    DELETE FROM deltapipe.lineage_node x
     WHERE x.kind <> 'file'
       AND NOT EXISTS (SELECT 1 FROM deltapipe.lineage_edge e WHERE e.src = x.id OR e.dst = x.id);
    GET DIAGNOSTICS gone = ROW_COUNT;

    RETURN jsonb_build_object('edges_added', added, 'edges_removed', removed, 'nodes_added', nodes,
                              'nodes_removed', gone);
END
$fn$;

COMMENT ON FUNCTION deltapipe.lineage_apply(text) IS
  'Replace the lineage edges of the files under p_root with those staged in the temp table dp_lineage_stage, '
  'writing only the edges that changed. Returns {edges_added, edges_removed, nodes_added, nodes_removed}.';
