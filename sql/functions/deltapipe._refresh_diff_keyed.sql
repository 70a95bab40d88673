CREATE OR REPLACE FUNCTION deltapipe._refresh_diff_keyed(p_pipeline text, p_model text, p_run_id bigint, p_target text,
                                                        p_newt text, p_key_cols text[],
                                                        OUT ins bigint, OUT upd bigint, OUT del bigint)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 2, a keyed model whose shape is unchanged: the new table
-- p_newt compared with the target p_target by key p_key_cols and row hash. The
-- net delta goes to the temporary table _dp_delta (_dp_op I, U or D, the key,
-- the ctids of the old and the new row: _dp_otid, _dp_ntid) and, through
-- deltapipe._log_delta, to the model's change log (run p_run_id). Returns the
-- numbers of rows inserted, updated and deleted.
DECLARE
    kjoin text;
BEGIN
    kjoin := (SELECT string_agg(format('n.%1$I = o.%1$I', k), ' AND ') FROM unnest(p_key_cols) k);
    EXECUTE format('CREATE TEMP TABLE _dp_delta AS
                    SELECT CASE WHEN o._dp_hash IS NULL THEN %L WHEN n._dp_hash IS NULL THEN %L ELSE %L END AS _dp_op,
                           %s, o.ctid AS _dp_otid, n.ctid AS _dp_ntid
                      FROM %s n FULL JOIN %s o ON %s
                     WHERE n._dp_hash IS DISTINCT FROM o._dp_hash',
                   'I', 'D', 'U',
                   (SELECT string_agg(format('coalesce(n.%1$I, o.%1$I) AS %1$I', k), ', ') FROM unnest(p_key_cols) k),
                   p_newt, p_target, kjoin);
    PERFORM deltapipe._log_delta(p_pipeline, p_model, p_run_id, p_target, p_newt);
    SELECT count(*) FILTER (WHERE _dp_op = 'I'), count(*) FILTER (WHERE _dp_op = 'U'),
           count(*) FILTER (WHERE _dp_op = 'D')
      INTO ins, upd, del FROM pg_temp._dp_delta;
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_diff_keyed(text, text, bigint, text, text, text[]) IS
  'Private, refresh_model() step: diff the new table with the current one by key and row hash into _dp_delta and the model''s change log.';
