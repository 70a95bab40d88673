CREATE OR REPLACE FUNCTION deltapipe._refresh_diff_distributed(p_pipeline text, p_model text, p_run_id bigint,
                                                              p_target text, p_newt text, p_key_cols text[],
                                                              OUT ins bigint, OUT upd bigint, OUT del bigint)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 2 for a distributed (Citus) model whose shape is
-- unchanged, instead of deltapipe._refresh_diff_keyed: the new table p_newt,
-- distributed and co-located with the target p_target, is compared with it by
-- key p_key_cols and row hash in one FULL JOIN on the key, which Citus runs
-- shard by shard; only the changed rows come back to the coordinator, straight
-- into the model's change log (run p_run_id: the new and the old row, no ctid).
-- pg_temp._dp_delta gets the op (I, U, D) and key of each, read from the log.
-- Returns the numbers of rows inserted, updated and deleted.
DECLARE
    log   text := deltapipe._model_log(p_pipeline, p_model, true);
    lcols text[];
    lseq  bigint := nextval(pg_get_serial_sequence('deltapipe.changeset', 'seq'));
BEGIN
    lcols := deltapipe._log_cols(log);
    EXECUTE format('INSERT INTO %s (_dp_seq, _dp_run, _dp_op, %s, %s)
                    SELECT %s, %s, CASE WHEN o._dp_hash IS NULL THEN %L WHEN n._dp_hash IS NULL THEN %L ELSE %L END, %s, %s
                      FROM %s n FULL JOIN %s o ON %s
                     WHERE n._dp_hash IS DISTINCT FROM o._dp_hash',
                   log, (SELECT string_agg(format('%I', c), ', ') FROM unnest(lcols) c),
                   (SELECT string_agg(format('%I', '_dp_o' || o), ', ') FROM generate_subscripts(lcols, 1) o),
                   lseq, p_run_id, 'I', 'D', 'U',
                   (SELECT string_agg(format('n.%I', c), ', ') FROM unnest(lcols) c),
                   (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(lcols) c),
                   p_newt, p_target,
                   (SELECT string_agg(format('n.%1$I = o.%1$I', k), ' AND ') FROM unnest(p_key_cols) k));
    UPDATE deltapipe.model SET log_seq = lseq WHERE pipeline = p_pipeline AND name = p_model;
    EXECUTE format('CREATE TEMP TABLE _dp_delta AS SELECT _dp_op, %s FROM %s WHERE _dp_seq = %s',
                   (SELECT string_agg(format('coalesce(%1$I, %2$I) AS %1$I', k, '_dp_o' || array_position(lcols, k)), ', ')
                      FROM unnest(p_key_cols) k),
                   log, lseq);
    SELECT count(*) FILTER (WHERE _dp_op = 'I'), count(*) FILTER (WHERE _dp_op = 'U'),
           count(*) FILTER (WHERE _dp_op = 'D')
      INTO ins, upd, del FROM pg_temp._dp_delta;
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_diff_distributed(text, text, bigint, text, text, text[]) IS
  'Private, refresh_model() step: diff a distributed model''s new table with the current one by key and row hash, shard by shard, into its change log.';
