CREATE OR REPLACE FUNCTION deltapipe._node_failed(p_node_run_id bigint, p_error text, p_sqlstate text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- Record a failed node. Its downstream nodes will not run (skipped, with the
-- reason); without keep_going in the run's args every other pending node of
-- the run is skipped too. Running nodes finish.
DECLARE
    nr deltapipe.node_run;
    keep boolean;
BEGIN
    UPDATE deltapipe.node_run SET status = 'failed', finished_at = clock_timestamp(), error = p_error,
                                  sqlstate = p_sqlstate
     WHERE id = p_node_run_id RETURNING * INTO nr;
    SELECT coalesce((args->>'keep_going')::boolean, false) INTO keep FROM deltapipe.run WHERE id = nr.run_id;
    WITH RECURSIVE down(node) AS (
        SELECT n.node FROM deltapipe.node_run n WHERE n.run_id = nr.run_id AND nr.node = ANY (n.upstreams)
        UNION
        SELECT n.node FROM deltapipe.node_run n JOIN down d ON d.node = ANY (n.upstreams) WHERE n.run_id = nr.run_id
    )
    UPDATE deltapipe.node_run n SET status = 'skipped', finished_at = clock_timestamp(),
           skip_reason = format('upstream %s failed', nr.node)
      FROM down WHERE n.run_id = nr.run_id AND n.node = down.node AND n.status = 'pending';
    IF NOT keep THEN
        UPDATE deltapipe.node_run n SET status = 'skipped', finished_at = clock_timestamp(),
               skip_reason = format('run stopped after %s failed (use --keep-going to run independent nodes)', nr.node)
         WHERE n.run_id = nr.run_id AND n.status = 'pending';
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._node_failed(bigint, text, text) IS 'Private: mark a node failed and skip its downstream (and, without keep_going, the rest of the run).';
