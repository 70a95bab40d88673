CREATE OR REPLACE FUNCTION deltapipe._refresh_diff_keyless(p_pipeline text, p_model text, p_run_id bigint, p_target text,
                                                          p_newt text, OUT ins bigint, OUT del bigint)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 2, a keyless model whose shape is unchanged: the new
-- table p_newt compared with the target p_target as multisets, by row hash: the
-- k-th copy of a row matches the k-th copy on the other side, the copies left
-- unmatched are the net delta. It goes to the temporary table _dp_delta (_dp_op
-- I or D, the ctids of the old and the new row: _dp_otid, _dp_ntid) and, through
-- deltapipe._log_delta, to the model's change log (run p_run_id). Returns the
-- numbers of rows inserted and deleted (a keyless row is never updated).
BEGIN
    -- a multiset: the k-th copy of a row matches the k-th copy on the other side
    EXECUTE format('CREATE TEMP TABLE _dp_delta AS
                    SELECT CASE WHEN n._dp_hash IS NULL THEN %1$L ELSE %2$L END AS _dp_op,
                           o._dp_tid AS _dp_otid, n._dp_tid AS _dp_ntid
                      FROM (SELECT _dp_hash, ctid AS _dp_tid,
                                   row_number() OVER (PARTITION BY _dp_hash) AS _dp_rn FROM %3$s x) o
                      FULL JOIN (SELECT _dp_hash, ctid AS _dp_tid,
                                        row_number() OVER (PARTITION BY _dp_hash) AS _dp_rn FROM %4$s x) n
                        ON n._dp_hash = o._dp_hash AND n._dp_rn = o._dp_rn
                     WHERE n._dp_hash IS NULL OR o._dp_hash IS NULL',
                   'D', 'I', p_target, p_newt);
    PERFORM deltapipe._log_delta(p_pipeline, p_model, p_run_id, p_target, p_newt);
    SELECT count(*) FILTER (WHERE _dp_op = 'I'), count(*) FILTER (WHERE _dp_op = 'D')
      INTO ins, del FROM pg_temp._dp_delta;
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_diff_keyless(text, text, bigint, text, text) IS
  'Private, refresh_model() step: diff the new table with the current one as multisets of row hashes into _dp_delta and the model''s change log.';
