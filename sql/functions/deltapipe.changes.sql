CREATE OR REPLACE FUNCTION deltapipe.changes(p_pipeline text, p_model text, p_run bigint DEFAULT NULL)
RETURNS TABLE (run_id bigint, seq bigint, op character(1), key jsonb, before jsonb, after jsonb)
LANGUAGE plpgsql
STABLE
AS $fn$
-- The changes a model's refreshes made (its change log in deltapipe_log), in the
-- shape of deltapipe.changeset rows: op I/U/D; key: the key columns of the row
-- (a model without a key: the whole new row, or the old one for D); before: the
-- old row (U and D); after: the new row (I and U). Only run p_run's when given,
-- else all, in order.
--   SELECT * FROM deltapipe.changes('shop', 'by_customer', 42);
DECLARE
    m    record;
    log  text;
    cols text[];
BEGIN
    SELECT * INTO m FROM deltapipe.model x WHERE x.pipeline = p_pipeline AND x.name = p_model;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DP203', MESSAGE = format('unknown model %s in pipeline %s', p_model, p_pipeline),
            HINT = 'list the models with `deltapipe plan DIR`';
    END IF;
    log := deltapipe._model_log(p_pipeline, p_model);
    IF log IS NULL THEN
        RETURN;
    END IF;
    cols := deltapipe._log_cols(log);
    RETURN QUERY EXECUTE format(
        'SELECT l._dp_run, l._dp_seq, l._dp_op::character(1), %s, CASE WHEN l._dp_op <> %L THEN %s END,
                CASE WHEN l._dp_op <> %L THEN %s END
           FROM %s l WHERE %s ORDER BY l._dp_seq',
        CASE WHEN cardinality(m.key_cols) > 0
             THEN deltapipe._jsonb_obj_sql(m.key_cols, ARRAY(SELECT format('coalesce(l.%I, l.%I)', k, '_dp_o' || array_position(cols, k))
                                                              FROM unnest(m.key_cols) k))
             ELSE format('CASE WHEN l._dp_op = %L THEN %s ELSE %s END', 'D',
                         deltapipe._jsonb_obj_sql(cols, ARRAY(SELECT format('l.%I', '_dp_o' || o) FROM generate_subscripts(cols, 1) o)),
                         deltapipe._jsonb_obj_sql(cols, ARRAY(SELECT format('l.%I', c) FROM unnest(cols) c)))
        END,
        'I', deltapipe._jsonb_obj_sql(cols, ARRAY(SELECT format('l.%I', '_dp_o' || o) FROM generate_subscripts(cols, 1) o)),
        'D', deltapipe._jsonb_obj_sql(cols, ARRAY(SELECT format('l.%I', c) FROM unnest(cols) c)),
        log, CASE WHEN p_run IS NULL THEN 'true' ELSE format('l._dp_run = %s', p_run) END);
END
$fn$;

COMMENT ON FUNCTION deltapipe.changes(text, text, bigint) IS
  'The changes a model''s refreshes made (of one run, or all): op I/U/D, key, before- and after-image, as deltapipe.changeset shows a source''s.';
