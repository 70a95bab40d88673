CREATE OR REPLACE FUNCTION deltapipe._diff_refuse_append(p_ds deltapipe.dataset, p_stg text, p_delta text, p_options jsonb)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- diff() step 4, append mode: append never changes an existing row, so a
-- different row under an existing key (op U in the net change p_delta) is
-- refused: rejected as DP105 with its raw line (from the staging table of
-- p_stg; run_id, node_run_id and source_file from the load's p_options) and
-- taken out of the change. Returns the number of rows refused.
DECLARE
    refused bigint;
BEGIN
    EXECUTE format($q$
        INSERT INTO deltapipe.reject (run_id, node_run_id, dataset, source_file, line_no, raw_line, column_name, sqlstate, message)
        SELECT %L::bigint, %L::bigint, %L, %L, d._dp_line, r._dp_raw, NULL, 'DP105',
               'append mode: key already exists with different values'
        FROM %s d JOIN deltapipe_stage.%I r ON r._dp_line = d._dp_line
        WHERE d._dp_op = 'U'$q$,
        p_options->>'run_id', p_options->>'node_run_id', p_ds.name, p_options->>'source_file', p_delta, p_stg);
    EXECUTE format('DELETE FROM %s WHERE _dp_op = %L', p_delta, 'U');
    GET DIAGNOSTICS refused = ROW_COUNT;
    RETURN refused;
END
$fn$;

COMMENT ON FUNCTION deltapipe._diff_refuse_append(deltapipe.dataset, text, text, jsonb) IS
  'Private, diff() step: in append mode, reject (DP105) and drop from the change the rows that would update an existing key.';
