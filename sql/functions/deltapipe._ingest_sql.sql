CREATE OR REPLACE FUNCTION deltapipe._ingest_sql(p_ds deltapipe.dataset, p_op_key text, p_ignore_unknown boolean,
                                                p_strict boolean)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- ingest() step: the one statement that checks, coalesces and applies the rows
-- of an ingest into dataset p_ds, set-based. Its parameters: $1 the rows (a
-- JSON array of objects), $2 the keys a row may have (the columns and the op
-- key p_op_key), $3 the run, $4 the node run. In order:
--   chk    one row per array element: its position, its op (p_op_key, default
--          upsert), each field taken out once, and why the row is refused before
--          its values are typed: unknown op (DP131), unknown keys (DP130, unless
--          p_ignore_unknown), NULL key (DP102), a value that does not cast (cheap
--          tests of deltapipe._safe_cast_test; only the values they do not vouch
--          for are cast one by one, deltapipe._ingest_cast_error)
--   ruled  the typed values, and the dataset's rules on them (DP120; not for deletes)
--   acc    per row, in array order: the target row of its key (one probe of the
--          primary key each); whether the key exists before the op (after an
--          insert or upsert it does, after a delete it does not, an update leaves
--          it as it was); an insert of an existing key, an update or delete of a
--          missing one is rejected (DP132, DP133) with p_strict, else the insert is
--          an upsert and the others do nothing
--   chg    the net effect per key: I, U, D, or N (an update to the same values), from
--          window functions over the key's rows (no join: the planner cannot count them)
--   writes DELETE, UPDATE and INSERT of the target, the changeset (before- and
--          after-images, as a load writes them), the rejects
-- It returns one jsonb: received, after_coalesce, inserted, updated, deleted,
-- unchanged, skipped, rejected (position, column, sqlstate, reason) and dcsum (the
-- change of the dataset checksum). Runs nothing.
DECLARE
    target  text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    cols    text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(p_ds.columns) c);
    types   text[] := ARRAY(SELECT c->>'type' FROM jsonb_array_elements(p_ds.columns) c);
    keys    text[] := p_ds.key_cols;
    nonkeys text[] := ARRAY(SELECT c FROM unnest(cols) c WHERE c <> ALL (keys));
    klist   text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k);
    raw     text;
    test    text;
    fields  text := '';
    m       text[];
    checks  text := '';
    typedx  text := '';
    rulechk text;
    sep     text := 'chr(31)';
BEGIN
    FOR i IN 1..cardinality(cols) LOOP
        -- the value as text (a JSON null is NULL), taken out of the object once (src) as
        -- _dp_f<i>; json and jsonb columns take the JSON value itself
        fields := fields || format(', %s AS _dp_f%s',
                                   CASE WHEN types[i] IN ('jsonb', 'json') THEN format('nullif(e.j->%L, %L::jsonb)', cols[i], 'null')
                                        ELSE format('e.j->>%L', cols[i]) END, i);
        raw := format('_dp_f%s', i);
        IF types[i] NOT IN ('jsonb', 'json') THEN
            test := deltapipe._safe_cast_test(raw, types[i]);
            m := regexp_match(types[i], '^numeric\((\d+)(?:,(\d+))?\)$');
            IF m IS NOT NULL THEN
                -- numeric(p,s): a plain number whose integer digits fit, and whose fraction
                -- either fits (no rounding) or leaves room for a carry; others the slow way
                test := format('(%1$s AND (length(ltrim(split_part(ltrim(%2$s, %3$L), %4$L, 1), %5$L)) < %6$s
                                           OR (length(ltrim(split_part(ltrim(%2$s, %3$L), %4$L, 1), %5$L)) = %6$s
                                               AND length(split_part(%2$s, %4$L, 2)) <= %7$s)))',
                               deltapipe._safe_cast_test(raw, 'numeric'), raw, '-', '.', '0',
                               m[1]::int - coalesce(m[2], '0')::int, coalesce(m[2], '0')::int);
            END IF;
            IF test <> 'true' THEN
                checks := checks || format(', CASE WHEN %s%s IS NOT NULL AND NOT %s THEN deltapipe._ingest_cast_error(%s, %L, %L) END',
                                           CASE WHEN cols[i] = ANY (keys) THEN '' ELSE format('_dp_opn <> %L AND ', 'delete') END,
                                           raw, test, raw, types[i], cols[i]);
            END IF;
        END IF;
        typedx := typedx || format(', CASE WHEN _dp_why IS NULL%s THEN (%s)::%s END AS %I',
                                   CASE WHEN cols[i] = ANY (keys) THEN '' ELSE format(' AND _dp_opn <> %L', 'delete') END,
                                   raw, types[i], cols[i]);
    END LOOP;
    SELECT 'CASE' || string_agg(format(' WHEN NOT coalesce((%s)::boolean, true) THEN concat_ws(chr(31), %L, %L, %L)',
                                       r->>'predicate', 'DP120', '', format('rule %s failed: %s', r->>'name', r->>'predicate')), '')
           || ' END'
      INTO rulechk FROM jsonb_array_elements(p_ds.options->'rules') r;
    RETURN format($q$
    WITH chk AS MATERIALIZED (
        SELECT src.*, coalesce(
                 CASE WHEN _dp_opn NOT IN ('insert', 'update', 'upsert', 'delete')
                      THEN concat_ws(chr(31), 'DP131', %1$L, format('unknown op %%s (insert, update, upsert or delete)', _dp_j->>%1$L)) END,
                 %2$s
                 %3$s
                 %4$s) AS _dp_why
          FROM (SELECT e.o AS _dp_pos, e.j AS _dp_j, lower(coalesce(e.j->>%1$L, 'upsert')) AS _dp_opn%7$s
                  FROM jsonb_array_elements($1) WITH ORDINALITY e(j, o) OFFSET 0) src
    ), ruled AS MATERIALIZED (
        %6$s
    ), ok AS (
        SELECT * FROM ruled WHERE _dp_why2 IS NULL
    ), acc AS MATERIALIZED (
        -- per row: whether its key exists before it (_dp_exb), why it is refused (_dp_why3) or
        -- does nothing (_dp_noop); per key (one sort for both windows): the last row that sets
        -- values (_dp_vpos), the last row (_dp_lpos), the last op that decides existence (_dp_fin)
        SELECT a.*,
               max(a._dp_pos) FILTER (WHERE a._dp_why3 IS NULL AND NOT a._dp_noop AND a._dp_opn <> 'delete') OVER w AS _dp_vpos,
               max(a._dp_pos) OVER w AS _dp_lpos,
               max(a._dp_pos * 2 + CASE WHEN a._dp_opn = 'delete' THEN 0 ELSE 1 END) FILTER (WHERE a._dp_opn <> 'update') OVER w AS _dp_fin
          FROM (SELECT s.*,
                       CASE WHEN NOT %13$L THEN NULL
                            WHEN s._dp_opn = 'insert' AND s._dp_exb THEN concat_ws(chr(31), 'DP132', '', 'insert of a key that exists')
                            WHEN s._dp_opn IN ('update', 'delete') AND NOT s._dp_exb
                            THEN concat_ws(chr(31), 'DP133', '', format('%%s of a key that does not exist', s._dp_opn)) END AS _dp_why3,
                       s._dp_opn IN ('update', 'delete') AND NOT s._dp_exb AS _dp_noop
                  FROM (SELECT s0.*, CASE WHEN s0._dp_prev IS NULL THEN s0._dp_ex0 ELSE s0._dp_prev %% 2 = 1 END AS _dp_exb
                          FROM (SELECT ok.*, t._dp_hash IS NOT NULL AS _dp_ex0, t._dp_hash AS _dp_old_hash, t AS _dp_t,
                                       max(ok._dp_pos * 2 + CASE WHEN ok._dp_opn = 'delete' THEN 0 ELSE 1 END) FILTER (WHERE ok._dp_opn <> 'update')
                                         OVER (PARTITION BY %12$s ORDER BY ok._dp_pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS _dp_prev
                                  FROM ok LEFT JOIN %10$s t ON %11$s) s0) s) a
        WINDOW w AS (PARTITION BY %9$s)
    ), chg AS MATERIALIZED (
        -- one row per key: its last row that sets values (else its last row), with the net op
        SELECT x.*, CASE WHEN x._dp_op1 = 'U' AND %14$s = %8$s THEN 'N' ELSE x._dp_op1 END::"char" AS _dp_op,
               CASE WHEN x._dp_ex0 THEN to_jsonb(x._dp_t) END AS _dp_before,
               CASE WHEN x._dp_op1 IN ('I', 'U') THEN hashtextextended(ROW(%16$s)::text, 0) END AS _dp_hash
          FROM (SELECT y.*, CASE WHEN NOT y._dp_ex0 AND y._dp_exf AND y._dp_vpos IS NOT NULL THEN 'I'
                                 WHEN y._dp_ex0 AND NOT y._dp_exf THEN 'D'
                                 WHEN y._dp_ex0 AND y._dp_exf AND y._dp_vpos IS NOT NULL THEN 'U' END AS _dp_op1
                  FROM (SELECT acc.*, CASE WHEN acc._dp_fin IS NULL THEN acc._dp_ex0 ELSE acc._dp_fin %% 2 = 1 END AS _dp_exf
                          FROM acc WHERE acc._dp_pos = coalesce(acc._dp_vpos, acc._dp_lpos)) y) x
         WHERE x._dp_op1 IS NOT NULL
    ), del AS (
        DELETE FROM %10$s t USING chg s WHERE s._dp_op = 'D' AND %17$s RETURNING 1
    ), upd AS (
        UPDATE %10$s t SET %18$s FROM chg s WHERE s._dp_op = 'U' AND %17$s RETURNING 1
    ), ins AS (
        INSERT INTO %10$s (%19$s, _dp_hash) SELECT %19$s, _dp_hash FROM chg WHERE _dp_op = 'I' RETURNING 1
    ), cs AS (
        INSERT INTO deltapipe.changeset (run_id, node, op, key, before, after)
        SELECT $3, %20$L, s._dp_op, jsonb_build_object(%21$s), s._dp_before, CASE WHEN s._dp_op <> 'D' THEN %22$s END
          FROM chg s WHERE s._dp_op <> 'N'
    ), rejs AS MATERIALIZED (
        SELECT _dp_pos, _dp_why2 AS why FROM ruled WHERE _dp_why2 IS NOT NULL
        UNION ALL
        SELECT _dp_pos, _dp_why3 FROM acc WHERE _dp_why3 IS NOT NULL
    ), rj AS (
        INSERT INTO deltapipe.reject (run_id, node_run_id, dataset, line_no, raw_line, column_name, sqlstate, message)
        SELECT $3, $4, %20$L, _dp_pos, ($1 -> (_dp_pos::int - 1))::text, nullif(split_part(why, chr(31), 2), ''), split_part(why, chr(31), 1),
               split_part(why, chr(31), 3)
          FROM rejs
    )
    SELECT jsonb_build_object(
        'received', jsonb_array_length($1),
        'after_coalesce', (SELECT count(*) FROM chg),
        'inserted', (SELECT count(*) FROM ins),
        'updated', (SELECT count(*) FROM upd),
        'deleted', (SELECT count(*) FROM del),
        'unchanged', (SELECT count(*) FROM chg WHERE _dp_op = 'N'),
        'skipped', (SELECT count(*) FROM acc WHERE _dp_noop AND _dp_why3 IS NULL),
        'rejected', (SELECT coalesce(jsonb_agg(jsonb_build_object('position', _dp_pos, 'column', nullif(split_part(why, chr(31), 2), ''),
                                                                  'sqlstate', split_part(why, chr(31), 1),
                                                                  'reason', split_part(why, chr(31), 3)) ORDER BY _dp_pos), '[]')
                       FROM rejs),
        'dcsum', (SELECT coalesce(sum(CASE _dp_op WHEN 'I' THEN _dp_hash::numeric WHEN 'D' THEN -_dp_old_hash::numeric
                                               ELSE _dp_hash::numeric - _dp_old_hash::numeric END), 0)
                    FROM chg WHERE _dp_op <> 'N'))
    $q$,
    p_op_key,                                                                        -- 1
    CASE WHEN p_ignore_unknown THEN '' ELSE
        'CASE WHEN _dp_j - $2 <> ''{}''::jsonb THEN concat_ws(chr(31), ''DP130'', '''', ''unknown column(s) ''
              || (SELECT string_agg(k, '', '' ORDER BY k) FROM jsonb_object_keys(_dp_j - $2) k)) END,' END,  -- 2
    (SELECT string_agg(format('CASE WHEN _dp_f%s IS NULL THEN concat_ws(chr(31), %L, %L, %L) END,',
                              array_position(cols, k), 'DP102', k, format('NULL in key column %s', k)), ' ') FROM unnest(keys) k),  -- 3
    'NULL::text' || checks,                                                          -- 4
    NULL,                                                                            -- 5 (unused)
    -- the typed values; with rules, checked on them one level up
    CASE WHEN rulechk IS NULL THEN format('SELECT _dp_pos, _dp_opn, _dp_why, _dp_why AS _dp_why2%s FROM chk', typedx)
         ELSE format('SELECT t.*, coalesce(_dp_why, CASE WHEN _dp_opn <> %L THEN %s END) AS _dp_why2
                        FROM (SELECT _dp_pos, _dp_opn, _dp_why%s FROM chk) t', 'delete', rulechk, typedx) END,  -- 6
    fields,                                                                          -- 7
    CASE WHEN cardinality(nonkeys) = 0 THEN '''''::text'
         ELSE format('ROW(%s)::text', (SELECT string_agg(format('(x._dp_t).%I', c), ', ') FROM unnest(nonkeys) c)) END,  -- 8
    klist,                                                                           -- 9
    target,                                                                          -- 10
    (SELECT string_agg(format('t.%1$I = ok.%1$I', k), ' AND ') FROM unnest(keys) k),  -- 11
    (SELECT string_agg(format('ok.%I', k), ', ') FROM unnest(keys) k),               -- 12
    p_strict,                                                                        -- 13
    CASE WHEN cardinality(nonkeys) = 0 THEN '''''::text'
         ELSE format('ROW(%s)::text', (SELECT string_agg(format('x.%I', c), ', ') FROM unnest(nonkeys) c)) END,  -- 14
    NULL,                                                                            -- 15 (unused)
    (SELECT string_agg(format('x.%I', c), ', ') FROM unnest(cols) c),                -- 16
    (SELECT string_agg(format('t.%1$I = s.%1$I', k), ' AND ') FROM unnest(keys) k),  -- 17
    (SELECT string_agg(format('%1$I = s.%1$I', c), ', ') FROM unnest(nonkeys || '_dp_hash'::text) c),  -- 18
    (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),                  -- 19
    p_ds.name,                                                                       -- 20
    (SELECT string_agg(format('%L, s.%I', k, k), ', ') FROM unnest(keys) k),         -- 21
    -- (jsonb_build_object takes at most 100 arguments: 50 columns a call)
    (SELECT string_agg(format('jsonb_build_object(%s)', q.p), ' || ')
       FROM (SELECT string_agg(format('%L, s.%I', u.c, u.c), ', ' ORDER BY u.i) AS p
               FROM unnest(cols) WITH ORDINALITY u(c, i) GROUP BY (u.i - 1) / 50) q)   -- 22
    );
END
$fn$;

COMMENT ON FUNCTION deltapipe._ingest_sql(deltapipe.dataset, text, boolean, boolean) IS
  'Private, ingest() step: the one statement that checks, coalesces and applies an ingest''s rows and writes its changeset and rejects.';
