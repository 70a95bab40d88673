CREATE OR REPLACE FUNCTION deltapipe._input_delta(p_pipeline text, p_upstream text, p_kind text, p_idx int,
                                                  p_lo bigint, p_hi bigint, p_runs bigint[],
                                                  p_prev text DEFAULT NULL, p_cur text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Build pg_temp._dp_d_<p_idx>: the net change of one upstream (a source dataset
-- or a model of the pipeline) between changeset seq p_lo (exclusive) and p_hi,
-- counting only the changes of runs p_runs (the caller found them in the range),
-- as rows of the upstream's visible columns with a weight _dp_w (+n / -n copies).
-- A source's changes are read from deltapipe.changeset, and coalesce per key: the
-- oldest before-image is the old row, the current table row is the new one (one
-- run: its after-images, which the load wrote next to the before-images); a
-- row inserted and deleted in between, or changed and changed back, leaves
-- nothing. The changes of one run hold each key once and never an unchanged row,
-- so one run needs no coalescing or netting.
-- A model's changes are read from its change log (deltapipe._model_log): +1 per
-- new row (I, U), -1 per old row (U, D), netted when several runs count (or the
-- model has no key): the changes of a key chain (a->b, b->c), so the weights add up.
-- A source's range is (p_lo, p_prev] .. (p_hi, p_cur]: sequence numbers with the
-- snapshots they were read in (deltapipe._changes_range: each change exactly once,
-- whatever order loads commit in).
-- Returns {"rows": sum of |weights|, "net": sum of weights}.
DECLARE
    tbl   text;
    keys  text[];
    cols  text[];
    clist text;
    tname text := format('_dp_d_%s', p_idx);
    runs  text := format('c.run_id = ANY (%L::bigint[])', coalesce(p_runs, '{}'));
    one   boolean := cardinality(coalesce(p_runs, '{}')) <= 1;
    res   jsonb;
    rk    "char";
    st    text;
    kexpr text;
    log   text;
    lcols text[];
    plain boolean;
    img   text;
    recs  text[] := '{}';
    batched boolean := false;
BEGIN
    IF p_kind = 'source' THEN
        SELECT format('%I.%I', target_schema, target_table), key_cols INTO tbl, keys
          FROM deltapipe.dataset WHERE name = p_upstream;
        IF tbl IS NULL THEN  -- a tracked table
            SELECT format('%I.%I', target_schema, target_table), key_cols INTO tbl, keys
              FROM deltapipe.tracked WHERE name = p_upstream;
        END IF;
        -- a capture run (deltapipe.track, or writes to a dataset's table outside its
        -- loads) logs one row per statement and key: coalesced like several runs
        batched := EXISTS (SELECT 1 FROM deltapipe.run x WHERE x.id = ANY (p_runs) AND x.kind = 'capture');
        IF batched THEN
            one := false;
        END IF;
    ELSE
        SELECT format('%I.%I', target_schema, target_table), key_cols INTO tbl, keys
          FROM deltapipe.model WHERE pipeline = p_pipeline AND name = p_upstream;
    END IF;
    IF tbl IS NULL OR to_regclass(tbl) IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP301', MESSAGE = format('upstream %s has no table', p_upstream),
            DETAIL = format('pipeline %s', p_pipeline), HINT = 'load the source or run its model first';
    END IF;
    cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                   WHERE a.attrelid = tbl::regclass AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attname NOT LIKE '\_dp\_%' ORDER BY a.attnum);
    clist := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
    -- the name may hold a table or (an upstream's delta kept by this session) a view
    SELECT c.relkind INTO rk FROM pg_class c WHERE c.oid = to_regclass(format('pg_temp.%I', tname));
    IF rk = 'v' THEN
        EXECUTE format('DROP VIEW pg_temp.%I', tname);
    ELSIF rk IS NOT NULL THEN
        EXECUTE format('DROP TABLE pg_temp.%I', tname);
    END IF;
    IF p_kind = 'model' THEN
        log := deltapipe._model_log(p_pipeline, p_upstream);
        IF log IS NULL THEN
            EXECUTE format('CREATE TEMP TABLE %I AS SELECT %s, 0::bigint AS _dp_w FROM %s LIMIT 0', tname, clist, tbl);
        ELSE
            lcols := deltapipe._log_cols(log);
            EXECUTE format($q$
                CREATE TEMP TABLE %1$I AS
                WITH z AS (SELECT %2$s, 1 AS _dp_w FROM %3$s c WHERE c._dp_seq > %4$s AND c._dp_seq <= %5$s AND %6$s AND c._dp_op <> 'D'
                                                                AND NOT (c._dp_op = 'U' AND %9$s)
                           UNION ALL
                           SELECT %7$s, -1 FROM %3$s c WHERE c._dp_seq > %4$s AND c._dp_seq <= %5$s AND %6$s AND c._dp_op <> 'I'
                                                          AND NOT (c._dp_op = 'U' AND %9$s))
                %8$s$q$,
                tname, (SELECT string_agg(format('c.%I', c), ', ') FROM unnest(cols) c), log, p_lo, p_hi,
                replace(runs, 'c.run_id', 'c._dp_run'),
                (SELECT string_agg(format('c.%I', '_dp_o' || array_position(lcols, c)), ', ') FROM unnest(cols) c),
                CASE WHEN one AND keys IS NOT NULL AND cardinality(keys) > 0
                     THEN format('SELECT %s, _dp_w::bigint AS _dp_w FROM z', clist)
                     ELSE format('SELECT %1$s, sum(_dp_w)::bigint AS _dp_w FROM z GROUP BY %1$s HAVING sum(_dp_w) <> 0', clist)
                END,
                -- (an update whose visible columns are the same, as text: only a hidden count or sum changed)
                format('ROW(%s)::text = ROW(%s)::text', (SELECT string_agg(format('c.%I', c), ', ') FROM unnest(cols) c),
                       (SELECT string_agg(format('c.%I', '_dp_o' || array_position(lcols, c)), ', ') FROM unnest(cols) c)));
        END IF;
    ELSIF keys IS NOT NULL AND cardinality(keys) > 0 THEN
        -- every column of a type whose value jsonb keeps as it is, and that casts from
        -- its text form (not json text, arrays and their bounds, composites, domains)
        plain := NOT EXISTS (
            SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = tbl::regclass AND a.attnum > 0 AND NOT a.attisdropped
               AND (t.oid = 'json'::regtype OR t.typcategory = 'A' OR t.typtype NOT IN ('b', 'e')));
        FOREACH img IN ARRAY ARRAY['before', 'after'] LOOP
            recs := recs || CASE WHEN plain
                THEN format('LATERAL (SELECT %s)',
                            (SELECT string_agg(format('(cs.%I->>%L)::%s AS %I', img, a.attname,
                                                      format_type(a.atttypid, a.atttypmod), a.attname), ', ' ORDER BY a.attnum)
                               FROM pg_attribute a
                              WHERE a.attrelid = tbl::regclass AND a.attnum > 0 AND NOT a.attisdropped
                                AND a.attname = ANY (cols)))
                ELSE format('jsonb_populate_record(NULL::%s, cs.%I)', tbl, img) END;
        END LOOP;
        kexpr := (SELECT string_agg(format('(c.key->>%L)::%s', k,
                                           (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                                             WHERE a.attrelid = tbl::regclass AND a.attname = k)), ', ')
                    FROM unnest(keys) k);
        EXECUTE format($q$
            CREATE TEMP TABLE %1$I AS
            WITH cs AS (SELECT %11$s c.key, c.op, c.before, %15$s AS after
                          FROM %18$s
                         WHERE c.node = %2$L AND %3$s AND %5$s
                         %12$s),
                 z AS (SELECT %6$s, -1 AS _dp_w FROM cs, %16$s o
                        WHERE cs.op <> 'I' AND cs.before IS NOT NULL
                       UNION ALL
                       SELECT %6$s, 1 FROM cs, %17$s o
                        WHERE cs.after IS NOT NULL
                       UNION ALL
                       SELECT %8$s, 1 FROM (SELECT * FROM cs WHERE cs.after IS NULL ORDER BY %14$s) cs JOIN %7$s t ON %9$s)
            %13$s$q$,
            tname, p_upstream, deltapipe._changes_range(p_lo, p_hi, p_prev, p_cur), NULL, runs,
            (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c), tbl,
            (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c),
            (SELECT string_agg(format('t.%1$I = (cs.key->>%1$L)::%2$s', k,
                                      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                                        WHERE a.attrelid = tbl::regclass AND a.attname = k)), ' AND ')
               FROM unnest(keys) k),
            clist,
            -- several runs: the oldest change of each key (compared as typed values:
            -- writers may give a number as a jsonb number or as its text form)
            CASE WHEN one THEN '' ELSE format('DISTINCT ON (%s)', kexpr) END,
            -- (one statement's capture may name a key twice: as an old row, with its
            -- before-image, and as a new one: the before-image counts)
            CASE WHEN one THEN '' ELSE format('ORDER BY %s, c.seq, c.before IS NULL', kexpr) END,
            CASE WHEN one THEN format('SELECT %s, _dp_w::bigint AS _dp_w FROM z', clist)
                 ELSE format('SELECT %1$s, sum(_dp_w)::bigint AS _dp_w FROM z GROUP BY %1$s HAVING sum(_dp_w) <> 0', clist)
            END,
            -- the current rows are looked up in key order (index and pages in order)
            (SELECT string_agg(format('(cs.key->>%L)::%s', k,
                                      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                                        WHERE a.attrelid = tbl::regclass AND a.attname = k)), ', ')
               FROM unnest(keys) k),
            -- one run: its after-images are the new rows (no lookup); several runs, or
            -- changes written without one (deletes, older revisions), or a table with a
            -- column whose value jsonb does not keep as it is (json text, arrays and
            -- their bounds, composites, domains): the current row
            CASE WHEN one AND plain THEN 'c.after' ELSE 'NULL::jsonb' END,
            -- an image's values: plain columns cast from their text (a third less time
            -- than jsonb_populate_record), others as jsonb_populate_record reads them
            recs[1], recs[2],
            -- a capture trigger logs one row per statement and op, its keys and
            -- before-images as two arrays side by side: one change per element
            CASE WHEN batched THEN
                format('(SELECT c0.seq, c0.run_id, c0.op,
                        CASE WHEN jsonb_typeof(x.key) = ''object'' THEN x.key ELSE jsonb_build_object(%L, x.key) END AS key,
                        x.before, c0.after, c0.xid, c0.node
                    FROM deltapipe.changeset c0
                   CROSS JOIN LATERAL ROWS FROM (
                         jsonb_array_elements(CASE WHEN jsonb_typeof(c0.key) = ''array'' THEN c0.key ELSE jsonb_build_array(c0.key) END),
                         jsonb_array_elements(CASE WHEN jsonb_typeof(c0.key) = ''array'' THEN c0.before ELSE jsonb_build_array(c0.before) END)
                       ) x(key, before)) c', keys[1])
                 ELSE 'deltapipe.changeset c' END);
    ELSE
        EXECUTE format($q$
            CREATE TEMP TABLE %1$I AS
            WITH cs AS (SELECT c.op, c.key, c.before
                          FROM deltapipe.changeset c
                         WHERE c.node = %2$L AND %3$s AND %5$s),
                 z AS (SELECT %6$s, 1 AS _dp_w FROM cs, jsonb_populate_record(NULL::%7$s, cs.key) o
                        WHERE cs.op IN ('I', 'U')
                       UNION ALL
                       SELECT %6$s, -1 AS _dp_w FROM cs, jsonb_populate_record(NULL::%7$s, cs.before) o
                        WHERE cs.op IN ('D', 'U'))
            SELECT %8$s, sum(_dp_w)::bigint AS _dp_w FROM z GROUP BY %8$s HAVING sum(_dp_w) <> 0$q$,
            tname, p_upstream, deltapipe._changes_range(p_lo, p_hi, p_prev, p_cur), NULL, runs,
            (SELECT string_agg(format('o.%I', c), ', ') FROM unnest(cols) c), tbl, clist);
    END IF;
    EXECUTE format('SELECT jsonb_build_object(%L, coalesce(sum(abs(_dp_w)), 0), %L, coalesce(sum(_dp_w), 0)) FROM pg_temp.%I',
                   'rows', 'net', tname) INTO res;
    -- statistics from a sample of 300 rows (not up to 30,000): the plans that read a
    -- delta need its size and rough distinct counts (which 300 rows give for keys,
    -- near-unique columns and columns of few values alike), and a full-sample
    -- ANALYZE of a 20,000-row delta takes as long as building it (300: a tenth of
    -- the time of 3,000)
    st := current_setting('default_statistics_target');
    PERFORM set_config('default_statistics_target', '1', true);
    EXECUTE format('ANALYZE pg_temp.%I', tname);
    PERFORM set_config('default_statistics_target', st, true);
    RETURN res;
END
$fn$;

COMMENT ON FUNCTION deltapipe._input_delta(text, text, text, int, bigint, bigint, bigint[], text, text) IS
  'Private: pg_temp._dp_d_<i> = the net change of an upstream between two changeset positions (changes of the given runs), as rows with weights.';
