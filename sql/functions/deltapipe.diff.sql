CREATE OR REPLACE FUNCTION deltapipe.diff(p_dataset text, p_staging text, p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Load step 3: collapse duplicate keys (the last line wins; in changes mode the
-- last op by order_column, then line), then compare with the target. Lines that
-- validate() already found unchanged by hash are in <staging>_s; the others were
-- parsed into <staging>_t and are compared by key and value. The net change
-- lands in <staging>_d with op I (insert), U (update), D (delete; snapshot and
-- changes modes) or H (same values, new row hash: only the hash is rewritten).
DECLARE
    ds       deltapipe.dataset := deltapipe._dataset(p_dataset);
    stg      text := deltapipe._staging(p_staging);
    mode     text := coalesce(p_options->>'mode', ds.mode);
    ord_col  text := p_options->>'order_column';
    typed    text := deltapipe._typed_table(ds, stg);
    nstat    text := format('deltapipe_stage.%I', stg || '_n');
    seed     bigint;
    same     text := format('deltapipe_stage.%I', stg || '_s');
    delta    text := format('deltapipe_stage.%I', stg || '_d');
    target   text := format('%I.%I', ds.target_schema, ds.target_table);
    cols     text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(ds.columns) c);
    keys     text[] := ds.key_cols;
    nonkeys  text[];
    kjoin    text;
    klist    text;
    samerow  text;
    dups     bigint := 0;
    n        bigint;
    n_typed  bigint;
    n_same   bigint := 0;
    n_gone   bigint;
    n_want   bigint;
    gone     text;
    n_i      bigint := 0;
    n_u      bigint := 0;
    n_d      bigint := 0;
    n_h      bigint := 0;
    refused  bigint := 0;
    exists_t boolean := to_regclass(target) IS NOT NULL;
    has_same boolean := to_regclass(same) IS NOT NULL;
    keep     text := 'max(_dp_line)';
    sel      text;
    old      text := format('%I.%I', ds.target_schema, ds.target_table);  -- or _dp_old, the rows looked at
BEGIN
    IF mode NOT IN ('snapshot', 'upsert', 'append', 'changes') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('unknown load mode %s', mode),
            HINT = 'use snapshot, upsert, append or changes';
    END IF;
    IF ord_col IS NOT NULL THEN
        IF NOT ord_col = ANY (cols) THEN
            RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('order column %s is not a column of dataset %s', ord_col, ds.name);
        END IF;
        keep := format('(array_agg(_dp_line ORDER BY %I DESC NULLS FIRST, _dp_line DESC))[1]', ord_col);
    END IF;
    nonkeys := ARRAY(SELECT c FROM unnest(cols) c WHERE c <> ALL (keys));
    kjoin := (SELECT string_agg(format('s.%1$I = t.%1$I', k), ' AND ') FROM unnest(keys) k);
    klist := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k);
    -- equal values, compared as text so that every type (json too) compares
    samerow := CASE WHEN cardinality(nonkeys) = 0 THEN 'true'
                    ELSE format('ROW(%s)::text = ROW(%s)::text',
                                (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(nonkeys) c),
                                (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(nonkeys) c)) END;

    -- duplicate keys among the parsed rows: keep one row per key (on a first
    -- load apply() finds them for free while building the primary key)
    IF exists_t OR mode = 'changes' THEN
        dups := deltapipe._dedup(typed, keys, keep);
    END IF;

    IF has_same THEN
        -- the target rows the rest of the diff looks at, fetched once: those no line
        -- matched by hash ("gone": updated or deleted, with their before-images) and
        -- those under the key of a changed line
        -- The gone rows by the ctid validate() saw them at (no index lookups), as long as
        -- each is still there with the same key and hash. In snapshot mode each is a
        -- delete or an update; otherwise only those under the key of a changed line
        -- matter (the others are rows the file does not mention).
        EXECUTE format('SELECT count(*) FROM %s WHERE _dp_line IS NULL', same) INTO n_gone;
        gone := CASE WHEN mode = 'snapshot' THEN format('SELECT * FROM %s g WHERE g._dp_line IS NULL', same)
                     ELSE format('SELECT * FROM %s g WHERE g._dp_line IS NULL AND (%s) IN (SELECT %s FROM %s)',
                                 same, (SELECT string_agg(format('g.%I', k), ', ') FROM unnest(keys) k), klist, typed) END;
        IF mode = 'snapshot' THEN
            n_want := n_gone;
        ELSE
            EXECUTE format('SELECT count(*) FROM (%s) g', gone) INTO n_want;
        END IF;
        EXECUTE format('CREATE TEMP TABLE _dp_old ON COMMIT DROP AS
                        SELECT t.*, true AS _dp_gone, to_jsonb(t) AS _dp_before FROM %1$s t
                        WHERE t.ctid = ANY (ARRAY(SELECT _dp_tid FROM (%3$s) g))
                          AND (%2$s, t._dp_hash) IN (SELECT %4$s, _dp_h FROM (%3$s) g)',
                       target, (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k), gone, klist);
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n = n_want THEN
            -- and the rows under the keys of the other changed lines (a duplicate of an unchanged line)
            EXECUTE format('INSERT INTO _dp_old SELECT t.*, false, NULL FROM %1$s t
                            WHERE (%2$s) IN (SELECT %3$s FROM %4$s s WHERE NOT EXISTS (SELECT 1 FROM _dp_old g WHERE %5$s))',
                           target, (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k),
                           (SELECT string_agg(format('s.%I', k), ', ') FROM unnest(keys) k), typed,
                           (SELECT string_agg(format('g.%1$I = s.%1$I', k), ' AND ') FROM unnest(keys) k));
        ELSE
            -- the target changed since (another writer): by key, as validate() saw them
            DROP TABLE _dp_old;
            EXECUTE format('CREATE TEMP TABLE _dp_old ON COMMIT DROP AS
                            SELECT t.*, g.%4$I IS NOT NULL AS _dp_gone, CASE WHEN g.%4$I IS NOT NULL THEN to_jsonb(t) END AS _dp_before
                            FROM %1$s t LEFT JOIN (SELECT %3$s FROM (%5$s) g) g ON %6$s
                            WHERE (%2$s) IN (SELECT %3$s FROM (%5$s) g UNION ALL SELECT %3$s FROM %7$s)',
                           target, (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k), klist, keys[1], gone,
                           (SELECT string_agg(format('g.%1$I = t.%1$I', k), ' AND ') FROM unnest(keys) k), typed);
        END IF;
        n := n_gone;  -- the target rows no line matched, when validate() joined
        old := '_dp_old';
        EXECUTE format('SELECT matched, seed FROM %s', nstat) INTO n_same, seed;
        IF n_same > ds.row_count - n THEN
            -- identical lines matched one target row several times
            dups := dups + n_same - (ds.row_count - n);
            n_same := ds.row_count - n;
        END IF;
        -- a key both unchanged on one line and changed on another: the later line wins
        EXECUTE format('CREATE TEMP TABLE _dp_x ON COMMIT DROP AS
                        SELECT s._dp_line AS cline, t._dp_hash AS h
                        FROM %s s JOIN _dp_old t ON %s
                        WHERE NOT t._dp_gone', typed, kjoin);
        SELECT count(*) INTO n FROM _dp_x;
        IF n > 0 THEN
            EXECUTE format('CREATE TEMP TABLE _dp_x2 ON COMMIT DROP AS
                            SELECT x.cline, max(r._dp_line) AS uline
                            FROM _dp_x x JOIN deltapipe_stage.%I r ON hashtextextended(r._dp_raw, %s) = x.h
                            WHERE r._dp_line > 0 GROUP BY x.cline', stg, seed);
            -- the changed line comes first: it is the duplicate, the table row stays
            EXECUTE format('DELETE FROM %s s USING _dp_x2 x WHERE s._dp_line = x.cline AND x.uline > x.cline', typed);
            -- the unchanged line comes first: it is the duplicate, the changed row applies
            n_same := n_same - (SELECT count(*) FROM _dp_x2 WHERE cline > uline);
            dups := dups + n;
            DROP TABLE _dp_x2;
        END IF;
        DROP TABLE _dp_x;
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
        RETURN jsonb_build_object('mode', mode, 'duplicates', dups, 'inserted', n_i, 'updated', 0, 'deleted', 0,
                                  'unchanged', n_typed - n_i, 'refused', 0, 'first_load', true);
    END IF;
    IF mode = 'snapshot' AND n_typed + n_same = 0 AND ds.row_count > 0
       AND NOT coalesce((p_options->>'allow_empty')::boolean, false) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP014',
            MESSAGE = format('the file has no valid rows: a snapshot load would delete all %s rows of %s', ds.row_count, ds.name),
            HINT = 'check the file and its rejects; pass --allow-empty (allow_empty) if the table should really be emptied';
    END IF;

    -- before-images: an updated row's is already in _dp_old (fetched once, by key)
    sel := format('%s%s, s._dp_hash, t._dp_hash AS _dp_old_hash, s._dp_line,
                   %s AS _dp_before',
                  (SELECT string_agg(format('coalesce(s.%1$I, t.%1$I) AS %1$I', k), ', ') FROM unnest(keys) k),
                  coalesce((SELECT string_agg(format(', s.%I', c), '') FROM unnest(nonkeys) c), ''),
                  CASE WHEN has_same
                       THEN format('coalesce(t._dp_before, CASE WHEN t._dp_hash IS NOT NULL THEN to_jsonb(t) - %L - %L END)',
                                   '_dp_gone', '_dp_before')
                       ELSE 'CASE WHEN t._dp_hash IS NOT NULL THEN to_jsonb(t) END' END);
    IF mode IN ('snapshot', 'upsert', 'append') THEN
        EXECUTE format('CREATE UNLOGGED TABLE %s AS
                        SELECT (CASE WHEN t._dp_hash IS NULL THEN %L WHEN %s THEN %L ELSE %L END)::"char" AS _dp_op, %s
                        FROM %s s LEFT JOIN %s t ON %s
                        WHERE t._dp_hash IS NULL OR s._dp_hash <> t._dp_hash',
                       delta, 'I', samerow, 'H', 'U', sel, typed, old, kjoin);
        IF mode = 'snapshot' THEN
            -- rows of the target that the file no longer has
            EXECUTE format('INSERT INTO %s (_dp_op, %s, _dp_old_hash, _dp_before)
                            SELECT %L, %s, %s FROM %s t
                            WHERE %s NOT EXISTS (SELECT 1 FROM %s s WHERE %s)',
                           delta, klist, 'D', (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k),
                           CASE WHEN has_same THEN 't._dp_hash, t._dp_before' ELSE 't._dp_hash, to_jsonb(t)' END,
                           CASE WHEN has_same THEN '_dp_old' ELSE target END,
                           CASE WHEN has_same THEN 't._dp_gone AND' ELSE '' END, typed, kjoin);
        ELSIF mode = 'append' THEN
            -- append never changes an existing row: a different row under an existing key is refused
            EXECUTE format($q$
                INSERT INTO deltapipe.reject (run_id, node_run_id, dataset, source_file, line_no, raw_line, column_name, sqlstate, message)
                SELECT %L::bigint, %L::bigint, %L, %L, d._dp_line, r._dp_raw, NULL, 'DP105',
                       'append mode: key already exists with different values'
                FROM %s d JOIN deltapipe_stage.%I r ON r._dp_line = d._dp_line
                WHERE d._dp_op = 'U'$q$,
                p_options->>'run_id', p_options->>'node_run_id', ds.name, p_options->>'source_file', delta, stg);
            EXECUTE format('DELETE FROM %s WHERE _dp_op = %L', delta, 'U');
            GET DIAGNOSTICS refused = ROW_COUNT;
            n_typed := n_typed - refused;
        END IF;
    ELSE -- changes
        EXECUTE format('CREATE UNLOGGED TABLE %s AS
                        SELECT (CASE WHEN s._dp_op = %L THEN %L WHEN t._dp_hash IS NULL THEN %L WHEN %s THEN %L ELSE %L END)::"char" AS _dp_op, %s
                        FROM %s s LEFT JOIN %s t ON %s
                        WHERE (s._dp_op = %L AND t._dp_hash IS NOT NULL)
                           OR (s._dp_op <> %L AND (t._dp_hash IS NULL OR s._dp_hash <> t._dp_hash))',
                       delta, 'D', 'D', 'I', samerow, 'H', 'U', sel, typed, target, kjoin, 'D', 'D');
    END IF;
    IF has_same THEN
        DROP TABLE _dp_old;
    END IF;
    EXECUTE format('ANALYZE %s (_dp_op, %s)', delta, klist);  -- not the before-images (jsonb)
    EXECUTE format('SELECT count(*) FILTER (WHERE _dp_op = %L), count(*) FILTER (WHERE _dp_op = %L),
                           count(*) FILTER (WHERE _dp_op = %L), count(*) FILTER (WHERE _dp_op = %L) FROM %s',
                   'I', 'U', 'D', 'H', delta)
        INTO n_i, n_u, n_d, n_h;
    RETURN jsonb_build_object('mode', mode, 'duplicates', dups, 'inserted', n_i, 'updated', n_u, 'deleted', n_d,
                              'rehashed', n_h,
                              'unchanged', n_same + n_typed - n_i - n_u - CASE WHEN mode = 'changes' THEN n_d ELSE 0 END,
                              'refused', refused, 'first_load', false);
END
$fn$;

COMMENT ON FUNCTION deltapipe.diff(text, text, jsonb) IS
  'Load step 3: collapse duplicate keys, compare with the target by hash and value; the net change goes to <staging>_d.';
