CREATE OR REPLACE FUNCTION deltapipe._diff_old_rows(p_ds deltapipe.dataset, p_stg text, p_typed text, p_mode text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- diff() step 1 (when validate() set lines aside by hash, <staging>_s of staging
-- p_stg): the target rows the rest of the diff looks at, fetched once into the
-- temporary table _dp_old (the target's columns, _dp_gone, _dp_before): those
-- no line matched by hash ("gone": updated or deleted, with their before-images
-- as jsonb) and those under the key of a changed line of the typed table p_typed.
-- The gone rows are fetched by the ctid validate() saw them at (no index
-- lookups), as long as each is still there with the same key and hash. In
-- snapshot mode (p_mode) each is a delete or an update; otherwise only those
-- under the key of a changed line matter (the others are rows the file does not
-- mention). If the target changed since (another writer), all are looked up by
-- key instead. Returns the number of gone rows (target rows no line matched).
DECLARE
    same   text := format('deltapipe_stage.%I', p_stg || '_s');
    target text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    keys   text[] := p_ds.key_cols;
    klist  text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k);
    n      bigint;
    n_gone bigint;
    n_want bigint;
    gone   text;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s WHERE _dp_line IS NULL', same) INTO n_gone;
    gone := CASE WHEN p_mode = 'snapshot' THEN format('SELECT * FROM %s g WHERE g._dp_line IS NULL', same)
                 ELSE format('SELECT * FROM %s g WHERE g._dp_line IS NULL AND (%s) IN (SELECT %s FROM %s)',
                             same, (SELECT string_agg(format('g.%I', k), ', ') FROM unnest(keys) k), klist, p_typed) END;
    IF p_mode = 'snapshot' THEN
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
                       (SELECT string_agg(format('s.%I', k), ', ') FROM unnest(keys) k), p_typed,
                       (SELECT string_agg(format('g.%1$I = s.%1$I', k), ' AND ') FROM unnest(keys) k));
    ELSE
        -- the target changed since (another writer): by key, as validate() saw them
        DROP TABLE _dp_old;
        EXECUTE format('CREATE TEMP TABLE _dp_old ON COMMIT DROP AS
                        SELECT t.*, g.%4$I IS NOT NULL AS _dp_gone, CASE WHEN g.%4$I IS NOT NULL THEN to_jsonb(t) END AS _dp_before
                        FROM %1$s t LEFT JOIN (SELECT %3$s FROM (%5$s) g) g ON %6$s
                        WHERE (%2$s) IN (SELECT %3$s FROM (%5$s) g UNION ALL SELECT %3$s FROM %7$s)',
                       target, (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k), klist, keys[1], gone,
                       (SELECT string_agg(format('g.%1$I = t.%1$I', k), ' AND ') FROM unnest(keys) k), p_typed);
    END IF;
    RETURN n_gone;
END
$fn$;

COMMENT ON FUNCTION deltapipe._diff_old_rows(deltapipe.dataset, text, text, text) IS
  'Private, diff() step: fetch once, into _dp_old, the target rows the diff looks at (by the ctid validate() saw, else by key).';
