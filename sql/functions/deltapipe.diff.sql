CREATE OR REPLACE FUNCTION deltapipe.diff(p_dataset text, p_staging text, p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Load step 3: collapse duplicate keys (the last line wins; in changes mode the
-- last op by order_column, then line), then compare with the target. Lines that
-- validate() already found unchanged by hash are in <staging>_s; the others were
-- parsed into <staging>_t and are compared by key and value. The net change
-- lands in <staging>_d with op I (insert), U (update), D (delete; snapshot and
-- changes modes; history mode is diffed as snapshot) or H (same values, new row
-- hash: only the hash is rewritten).
--
-- The steps, each a private routine deltapipe._diff_* (after deltapipe._dedup
-- of the parsed rows):
--   1 old_rows         the target rows looked at, fetched once (by ctid)
--   2 unchanged_dups   duplicate keys between unchanged and changed lines
--   3 delta            the net change
--   4 refuse_append    append mode: rows that would change a row are rejected
DECLARE
    ds       deltapipe.dataset := deltapipe._dataset(p_dataset);
    stg      text := deltapipe._staging(p_staging);
    mode     text := coalesce(p_options->>'mode', ds.mode);
    ord_col  text := p_options->>'order_column';
    typed    text := deltapipe._typed_table(ds, stg);
    same     text := format('deltapipe_stage.%I', stg || '_s');
    delta    text := format('deltapipe_stage.%I', stg || '_d');
    target   text := format('%I.%I', ds.target_schema, ds.target_table);
    cols     text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(ds.columns) c);
    klist    text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(ds.key_cols) k);
    dups     bigint := 0;
    n_typed  bigint;
    n_same   bigint := 0;
    n_gone   bigint;
    n_i      bigint := 0;
    n_u      bigint := 0;
    n_d      bigint := 0;
    n_h      bigint := 0;
    refused  bigint := 0;
    exists_t boolean := to_regclass(target) IS NOT NULL;
    has_same boolean := to_regclass(same) IS NOT NULL;
    keep     text := 'max(_dp_line)';
    ud       record;  -- deltapipe._diff_unchanged_dups: n_same, dups
    shown    text;    -- the mode as given (history is diffed as snapshot)
BEGIN
    IF mode NOT IN ('snapshot', 'upsert', 'append', 'changes', 'history') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('unknown load mode %s', mode),
            HINT = 'use snapshot, upsert, append, changes or history';
    END IF;
    -- history mode diffs as a snapshot; apply() also writes the change as versions
    shown := mode;
    IF mode = 'history' THEN
        mode := 'snapshot';
    END IF;
    IF ord_col IS NOT NULL THEN
        IF NOT ord_col = ANY (cols) THEN
            RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('order column %s is not a column of dataset %s', ord_col, ds.name);
        END IF;
        keep := format('(array_agg(_dp_line ORDER BY %I DESC NULLS FIRST, _dp_line DESC))[1]', ord_col);
    END IF;

    -- duplicate keys among the parsed rows: keep one row per key (on a first
    -- load apply() finds them for free while building the primary key)
    IF exists_t OR mode = 'changes' THEN
        dups := deltapipe._dedup(typed, ds.key_cols, keep);
    END IF;

    IF has_same THEN
        -- 1. the target rows looked at, into _dp_old (dropped below, after the delta)
        n_gone := deltapipe._diff_old_rows(ds, stg, typed, mode);
        -- 2. the unchanged lines and their duplicates
        ud := deltapipe._diff_unchanged_dups(ds, stg, typed, n_gone);
        n_same := ud.n_same;
        dups := dups + ud.dups;
    END IF;
    IF NOT exists_t AND mode <> 'changes' AND p_options ? 'typed_rows' THEN
        n_typed := (p_options->>'typed_rows')::bigint;  -- as validate() left them (nothing removed since)
    ELSE
        EXECUTE format('SELECT count(*) FROM %s', typed) INTO n_typed;
    END IF;

    EXECUTE format('DROP TABLE IF EXISTS %s', delta);
    IF NOT exists_t THEN
        -- first load: everything is new; apply() builds the table from the typed rows
        n_i := n_typed;
        IF mode = 'changes' THEN
            EXECUTE format('SELECT count(*) FILTER (WHERE _dp_op <> %L) FROM %s', 'D', typed) INTO n_i;
        END IF;
        RETURN jsonb_build_object('mode', shown, 'duplicates', dups, 'inserted', n_i, 'updated', 0, 'deleted', 0,
                                  'unchanged', n_typed - n_i, 'refused', 0, 'first_load', true);
    END IF;
    IF mode = 'snapshot' AND n_typed + n_same = 0 AND ds.row_count > 0
       AND NOT coalesce((p_options->>'allow_empty')::boolean, false) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP014',
            MESSAGE = format('the file has no valid rows: a snapshot load would delete all %s rows of %s', ds.row_count, ds.name),
            HINT = 'check the file and its rejects; pass --allow-empty (allow_empty) if the table should really be emptied';
    END IF;

    -- 3, 4. the net change; in append mode without the rows that would change a row
    PERFORM deltapipe._diff_delta(ds, typed, delta, mode, has_same);
    IF mode = 'append' THEN
        refused := deltapipe._diff_refuse_append(ds, stg, delta, p_options);
        n_typed := n_typed - refused;
    END IF;
    IF has_same THEN
        DROP TABLE _dp_old;
    END IF;
    EXECUTE format('ANALYZE %s (_dp_op, %s)', delta, klist);  -- not the before-images (jsonb)
    EXECUTE format('SELECT count(*) FILTER (WHERE _dp_op = %L), count(*) FILTER (WHERE _dp_op = %L),
                           count(*) FILTER (WHERE _dp_op = %L), count(*) FILTER (WHERE _dp_op = %L) FROM %s',
                   'I', 'U', 'D', 'H', delta)
        INTO n_i, n_u, n_d, n_h;
    RETURN jsonb_build_object('mode', shown, 'duplicates', dups, 'inserted', n_i, 'updated', n_u, 'deleted', n_d,
                              'rehashed', n_h,
                              'unchanged', n_same + n_typed - n_i - n_u - CASE WHEN mode = 'changes' THEN n_d ELSE 0 END,
                              'refused', refused, 'first_load', false);
END
$fn$;

COMMENT ON FUNCTION deltapipe.diff(text, text, jsonb) IS
  'Load step 3: collapse duplicate keys, compare with the target by hash and value; the net change goes to <staging>_d.';
