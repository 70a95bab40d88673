CREATE OR REPLACE FUNCTION deltapipe._log_delta(p_pipeline text, p_model text, p_run bigint, p_old text, p_new text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- Record a full refresh's net change in the model's change log: the rows of
-- pg_temp._dp_delta (_dp_op I/U/D, _dp_otid: the old row's ctid in table p_old,
-- _dp_ntid: the new row's in table p_new), their rows fetched by ctid, under one
-- new position (deltapipe.model.log_seq). Returns the number of rows logged.
DECLARE
    log   text := deltapipe._model_log(p_pipeline, p_model, true);
    lcols text[];
    lseq  bigint := nextval(pg_get_serial_sequence('deltapipe.changeset', 'seq'));
    n     bigint;
BEGIN
    lcols := deltapipe._log_cols(log);
    EXECUTE format('INSERT INTO %s (_dp_seq, _dp_run, _dp_op, %s, %s)
                    SELECT %s, %s, d._dp_op, %s, %s
                      FROM pg_temp._dp_delta d
                      LEFT JOIN LATERAL (SELECT * FROM %s x WHERE x.ctid = d._dp_ntid) n ON true
                      LEFT JOIN LATERAL (SELECT * FROM %s x WHERE x.ctid = d._dp_otid) o ON true',
                   log, (SELECT string_agg(format('%I', c), ', ') FROM unnest(lcols) c),
                   (SELECT string_agg(format('%I', '_dp_o' || o), ', ') FROM generate_subscripts(lcols, 1) o),
                   lseq, p_run,
                   (SELECT string_agg(format('n.%I', c), ', ') FROM unnest(lcols) c),
                   (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(lcols) c),
                   p_new, p_old);
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE deltapipe.model SET log_seq = lseq WHERE pipeline = p_pipeline AND name = p_model;
    RETURN n;
END
$fn$;

COMMENT ON FUNCTION deltapipe._log_delta(text, text, bigint, text, text) IS
  'Private: record a full refresh''s net change (pg_temp._dp_delta, rows by ctid) in the model''s change log.';
