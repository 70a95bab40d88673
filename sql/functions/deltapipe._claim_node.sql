CREATE OR REPLACE FUNCTION deltapipe._claim_node(p_run_id bigint, p_worker text DEFAULT NULL)
RETURNS TABLE (node_run_id bigint, node text, node_kind text)
LANGUAGE plpgsql
AS $fn$
-- Claim one ready node of the run: pending, and every upstream in the run done
-- or skipped. Concurrent workers skip each other's rows (SKIP LOCKED).
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE deltapipe.node_run n
       SET status = 'running', started_at = clock_timestamp(), worker = p_worker
     WHERE n.id = (SELECT c.id FROM deltapipe.node_run c
                    WHERE c.run_id = p_run_id AND c.status = 'pending'
                      AND NOT EXISTS (SELECT 1 FROM deltapipe.node_run u
                                       WHERE u.run_id = c.run_id AND u.node = ANY (c.upstreams)
                                         AND u.status NOT IN ('done', 'skipped'))
                    ORDER BY c.id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED)
       AND n.status = 'pending'
    RETURNING n.id, n.node, n.node_kind;
END
$fn$;

COMMENT ON FUNCTION deltapipe._claim_node(bigint, text) IS 'Private: claim one ready node of a run for a worker (FOR UPDATE SKIP LOCKED).';
