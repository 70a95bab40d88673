CREATE OR REPLACE FUNCTION deltapipe._restore_node(p_run bigint, p_node text, p_kind text, p_strategy text,
                                                   p_table text, p_key text[])
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- Put one table back as it was before run p_run, from the before-images the run
-- recorded in deltapipe.changeset (a source) or in the model's change log
-- (deltapipe._model_log): inserted keys are deleted, updated rows get
-- their old values back, deleted rows come back. A table the run created
-- (strategy 'create') is dropped. Returns the number of rows restored.
DECLARE
    kjoin text := (SELECT string_agg(format('t.%1$I = b.%1$I', k), ' AND ') FROM unnest(p_key) k);
    cols  text;
    setcols text;
    n     bigint := 0;
    m     bigint;
    mp    record;
    log   text;
    lcols text[];
BEGIN
    IF p_strategy = 'create' THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', p_table);
        RETURN 0;
    END IF;
    IF to_regclass(p_table) IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP034', MESSAGE = format('table %s of %s is gone: cannot restore it', p_table, p_node);
    END IF;
    SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum),
           string_agg(format('%I', attname), ', ' ORDER BY attnum) FILTER (WHERE attname <> ALL (p_key))
      INTO cols, setcols
      FROM pg_attribute WHERE attrelid = p_table::regclass AND attnum > 0 AND NOT attisdropped;
    EXECUTE format('DELETE FROM %1$s t USING (SELECT (jsonb_populate_record(NULL::%1$s, key)).* FROM deltapipe.changeset
                                                WHERE run_id = %2$s AND node = %3$L AND op = ''I'') b WHERE %4$s',
                   p_table, p_run, p_node, kjoin);
    GET DIAGNOSTICS m = ROW_COUNT; n := n + m;
    -- the key columns are matched, never SET (a Citus table refuses any SET of its distribution column)
    EXECUTE format('UPDATE %1$s t SET (%5$s) = (SELECT %5$s FROM (SELECT b.*) x)
                    FROM (SELECT (jsonb_populate_record(NULL::%1$s, before)).* FROM deltapipe.changeset
                          WHERE run_id = %2$s AND node = %3$L AND op = ''U'') b WHERE %4$s',
                   p_table, p_run, p_node, kjoin, setcols);
    GET DIAGNOSTICS m = ROW_COUNT; n := n + m;
    EXECUTE format('INSERT INTO %1$s (%4$s) SELECT %4$s FROM (SELECT (jsonb_populate_record(NULL::%1$s, before)).*
                    FROM deltapipe.changeset WHERE run_id = %2$s AND node = %3$L AND op = ''D'') b',
                   p_table, p_run, p_node, cols);
    GET DIAGNOSTICS m = ROW_COUNT; n := n + m;
    -- a model's changes since this version are in its change log: the same three
    -- steps from the new rows (I: key) and the old rows (U, D: columns _dp_o<k>)
    IF p_kind = 'model' THEN
        SELECT x.pipeline, x.name INTO mp FROM deltapipe.model x JOIN deltapipe.run r ON r.pipeline = x.pipeline
         WHERE r.id = p_run AND x.name = p_node;
        log := deltapipe._model_log(mp.pipeline, mp.name);
    END IF;
    IF log IS NOT NULL THEN
        lcols := deltapipe._log_cols(log);
        EXECUTE format('DELETE FROM %s t USING %s b WHERE b._dp_run = %s AND b._dp_op = %L AND %s',
                       p_table, log, p_run, 'I', kjoin);
        GET DIAGNOSTICS m = ROW_COUNT; n := n + m;
        EXECUTE format('UPDATE %s t SET (%s_dp_hash) = ROW(%sNULL) FROM %s b WHERE b._dp_run = %s AND b._dp_op = %L AND %s',
                       p_table, (SELECT string_agg(format('%I, ', c), '') FROM unnest(lcols) c WHERE c <> ALL (p_key)),
                       (SELECT string_agg(format('b.%I, ', '_dp_o' || o), '') FROM generate_subscripts(lcols, 1) o
                         WHERE lcols[o] <> ALL (p_key)),
                       log, p_run, 'U',
                       (SELECT string_agg(format('t.%I = b.%I', k, '_dp_o' || array_position(lcols, k)), ' AND ') FROM unnest(p_key) k));
        GET DIAGNOSTICS m = ROW_COUNT; n := n + m;
        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s b WHERE b._dp_run = %s AND b._dp_op = %L',
                       p_table, (SELECT string_agg(format('%I', c), ', ') FROM unnest(lcols) c),
                       (SELECT string_agg(format('b.%I', '_dp_o' || o), ', ') FROM generate_subscripts(lcols, 1) o),
                       log, p_run, 'D');
        GET DIAGNOSTICS m = ROW_COUNT; n := n + m;
    END IF;
    -- a model's images leave out its row hash: computed again for the restored rows
    -- as the refresh computes it (every other column, in table order)
    IF p_kind = 'model' AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = p_table::regclass
                                       AND attname = '_dp_hash' AND NOT attisdropped) THEN
        IF deltapipe._is_distributed(p_table::regclass) THEN
            -- Citus refuses a STABLE expression (the record's text) over the columns in an
            -- UPDATE: the hashes are computed by a SELECT first, then written by key
            EXECUTE format('WITH h AS MATERIALIZED (SELECT %s, hashtextextended(ROW(%s)::text, 0) AS _dp_h FROM %s WHERE _dp_hash IS NULL)
                            UPDATE %s t SET _dp_hash = h._dp_h FROM h WHERE %s',
                           (SELECT string_agg(format('%I', k), ', ') FROM unnest(p_key) k),
                           (SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum) FROM pg_attribute
                             WHERE attrelid = p_table::regclass AND attnum > 0 AND NOT attisdropped AND attname <> '_dp_hash'),
                           p_table, p_table, (SELECT string_agg(format('t.%1$I = h.%1$I', k), ' AND ') FROM unnest(p_key) k));
        ELSE
            EXECUTE format('UPDATE %s SET _dp_hash = hashtextextended(ROW(%s)::text, 0) WHERE _dp_hash IS NULL', p_table,
                           (SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum) FROM pg_attribute
                             WHERE attrelid = p_table::regclass AND attnum > 0 AND NOT attisdropped AND attname <> '_dp_hash'));
        END IF;
    END IF;
    RETURN n;
END
$fn$;

COMMENT ON FUNCTION deltapipe._restore_node(bigint, text, text, text, text, text[]) IS
  'Private: restore one table to its state before a run from the changeset before-images.';
