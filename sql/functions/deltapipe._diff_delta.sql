CREATE OR REPLACE FUNCTION deltapipe._diff_delta(p_ds deltapipe.dataset, p_typed text, p_delta text, p_mode text,
                                                p_has_same boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- diff() step 3: the net change, into the new table p_delta (<staging>_d): the
-- typed rows of p_typed compared with the target by key and row hash, with op I
-- (no row under the key), U (other values), H (same values read differently:
-- only the stored hash is refreshed) or, in changes mode (p_mode), D for a row
-- whose op is delete; in snapshot mode also D for each target row no line has.
-- With p_has_same (validate() set lines aside by hash) the target rows looked at
-- are those of _dp_old (deltapipe._diff_old_rows, which has the before-images
-- of the gone rows), else the target itself. Each row carries the key, the new
-- values and row hash, the old hash (_dp_old_hash), its line and the
-- before-image (_dp_before, jsonb). Returns nothing.
DECLARE
    target  text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    cols    text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(p_ds.columns) c);
    keys    text[] := p_ds.key_cols;
    nonkeys text[] := ARRAY(SELECT c FROM unnest(cols) c WHERE c <> ALL (keys));
    kjoin   text := (SELECT string_agg(format('s.%1$I = t.%1$I', k), ' AND ') FROM unnest(keys) k);
    klist   text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k);
    old     text := CASE WHEN p_has_same THEN '_dp_old' ELSE target END;  -- the rows looked at
    samerow text;
    sel     text;
BEGIN
    -- equal values, compared as text so that every type (json too) compares
    samerow := CASE WHEN cardinality(nonkeys) = 0 THEN 'true'
                    ELSE format('ROW(%s)::text = ROW(%s)::text',
                                (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(nonkeys) c),
                                (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(nonkeys) c)) END;
    -- before-images: an updated row's is already in _dp_old (fetched once, by key)
    sel := format('%s%s, s._dp_hash, t._dp_hash AS _dp_old_hash, s._dp_line,
                   %s AS _dp_before',
                  (SELECT string_agg(format('coalesce(s.%1$I, t.%1$I) AS %1$I', k), ', ') FROM unnest(keys) k),
                  coalesce((SELECT string_agg(format(', s.%I', c), '') FROM unnest(nonkeys) c), ''),
                  CASE WHEN p_has_same
                       THEN format('coalesce(t._dp_before, CASE WHEN t._dp_hash IS NOT NULL THEN to_jsonb(t) - %L - %L END)',
                                   '_dp_gone', '_dp_before')
                       ELSE 'CASE WHEN t._dp_hash IS NOT NULL THEN to_jsonb(t) END' END);
    IF p_mode IN ('snapshot', 'upsert', 'append') THEN
        EXECUTE format('CREATE UNLOGGED TABLE %s AS
                        SELECT (CASE WHEN t._dp_hash IS NULL THEN %L WHEN %s THEN %L ELSE %L END)::"char" AS _dp_op, %s
                        FROM %s s LEFT JOIN %s t ON %s
                        WHERE t._dp_hash IS NULL OR s._dp_hash <> t._dp_hash',
                       p_delta, 'I', samerow, 'H', 'U', sel, p_typed, old, kjoin);
        IF p_mode = 'snapshot' THEN
            -- rows of the target that the file no longer has
            EXECUTE format('INSERT INTO %s (_dp_op, %s, _dp_old_hash, _dp_before)
                            SELECT %L, %s, %s FROM %s t
                            WHERE %s NOT EXISTS (SELECT 1 FROM %s s WHERE %s)',
                           p_delta, klist, 'D', (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k),
                           CASE WHEN p_has_same THEN 't._dp_hash, t._dp_before' ELSE 't._dp_hash, to_jsonb(t)' END,
                           CASE WHEN p_has_same THEN '_dp_old' ELSE target END,
                           CASE WHEN p_has_same THEN 't._dp_gone AND' ELSE '' END, p_typed, kjoin);
        END IF;
    ELSE -- changes
        EXECUTE format('CREATE UNLOGGED TABLE %s AS
                        SELECT (CASE WHEN s._dp_op = %L THEN %L WHEN t._dp_hash IS NULL THEN %L WHEN %s THEN %L ELSE %L END)::"char" AS _dp_op, %s
                        FROM %s s LEFT JOIN %s t ON %s
                        WHERE (s._dp_op = %L AND t._dp_hash IS NOT NULL)
                           OR (s._dp_op <> %L AND (t._dp_hash IS NULL OR s._dp_hash <> t._dp_hash))',
                       p_delta, 'D', 'D', 'I', samerow, 'H', 'U', sel, p_typed, target, kjoin, 'D', 'D');
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._diff_delta(deltapipe.dataset, text, text, text, boolean) IS
  'Private, diff() step: compare the typed rows with the target by key and hash; the net change (ops I, U, D, H) into <staging>_d.';
