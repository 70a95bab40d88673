CREATE OR REPLACE FUNCTION deltapipe._validate_unchanged_lines(p_ds deltapipe.dataset, p_stg text, p_src text,
                                                               p_options jsonb, p_fmt text, p_quote text, p_mode text,
                                                               p_first_load boolean, p_hdr_line bigint, p_seed bigint,
                                                               OUT rows_in bigint, OUT n_same bigint, OUT src text)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- validate() step 3: unchanged rows skip parsing altogether. One hash join of
-- the staged lines (staging table p_src, of staging p_stg; lines after the
-- header line p_hdr_line) with the target by row hash (hashtextextended of the
-- raw line, seeded with p_seed). Only what did not match is kept, in
-- <staging>_s: lines that are changed or new (with their raw text, to be
-- parsed) and target rows that no line matched ("gone": updated or deleted,
-- with key, hash and ctid). <staging>_n keeps the number of matched lines and
-- the hash seed (diff() reads them).
-- Not on a first load, in changes mode, with option full_validate, or for a
-- file of few lines next to a large table (then every line is parsed).
-- Returns the number of lines (rows_in, NULL when there was no join: then
-- validate() counts them from the parsed rows), the number of unchanged lines
-- and the table the remaining lines are to be read from: <staging>_s after the
-- join, else p_src.
DECLARE
    target    text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    same      text := format('deltapipe_stage.%I', p_stg || '_s');
    nstat     text := format('deltapipe_stage.%I', p_stg || '_n');
    parts     int;
    mergejoin text;
    minscan   text;
    tsrc      text := target;   -- the target rows the join reads
    tid       text := 'ctid';
BEGIN
    n_same := 0;
    src := p_src;
    EXECUTE format('DROP TABLE IF EXISTS %s, %s', same, nstat);
    IF p_mode <> 'changes' AND NOT p_first_load AND NOT coalesce((p_options->>'full_validate')::boolean, false) THEN
        -- No ANALYZE of the staged lines (it costs more than it helps) and a hash join
        -- whatever the estimates say: a merge join would sort both sides.
        IF p_options ? 'staged_lines' AND (p_fmt = 'ndjson' OR p_quote = '' OR coalesce((p_options->>'glued')::boolean, false)) THEN
            -- counted by deltapipe load while streaming the file (staged lines not glued here since)
            rows_in := (p_options->>'staged_lines')::bigint - CASE WHEN p_hdr_line > 0 THEN 1 ELSE 0 END;
        ELSE
            EXECUTE format('SELECT count(*) FROM %s WHERE _dp_line > %s AND _dp_raw <> %L', p_src, p_hdr_line, '') INTO rows_in;
        END IF;
    END IF;
    -- The join reads the whole target: for a file of few lines next to a large table
    -- (say 10,000 upserts into 1M rows) parsing every line and comparing by key
    -- (index probes) costs less.
    IF rows_in IS NOT NULL AND rows_in * 10 < p_ds.row_count THEN
        rows_in := NULL;  -- counted from the parsed rows, as without the join
    ELSIF rows_in IS NOT NULL THEN
        -- PostgreSQL 15 runs a hash full join in one process. Split by hash value into
        -- parts (one per parallel worker), each part a full join of its own: the parts
        -- run side by side under a Parallel Append. The scans inside stay serial (no
        -- Gather below the Append), and the hash is computed once per line
        -- (deltapipe._fence() keeps the subquery that computes it).
        parts := CASE WHEN current_setting('max_parallel_workers_per_gather')::int >= 2 THEN 2 ELSE 1 END;
        IF deltapipe._is_distributed(target::regclass) THEN
            -- a Citus table: its hashes, row ids and keys come to the coordinator once, into a
            -- temporary table the join then reads (joined with the distributed table itself,
            -- Citus would first copy the staged lines, raw text and all, into an intermediate result)
            DROP TABLE IF EXISTS pg_temp._dp_tcopy;
            EXECUTE format('CREATE TEMP TABLE _dp_tcopy AS SELECT _dp_hash, ctid AS _dp_tid%s FROM %s',
                           (SELECT string_agg(format(', %I', k), '') FROM unnest(p_ds.key_cols) k), target);
            tsrc := 'pg_temp._dp_tcopy';
            tid := '_dp_tid';
        END IF;
        mergejoin := current_setting('enable_mergejoin');
        minscan := current_setting('min_parallel_table_scan_size');
        PERFORM set_config('enable_mergejoin', 'off', true);
        PERFORM set_config('min_parallel_table_scan_size', '1TB', true);
        EXECUTE format('CREATE UNLOGGED TABLE %s AS ', same) || (
            SELECT string_agg(format($q$
                SELECT s._dp_line, t._dp_hash AS _dp_h, t._dp_tid, s._dp_raw%1$s
                FROM (SELECT _dp_line, _dp_raw, hh
                      FROM (SELECT _dp_line, _dp_raw, hashtextextended(_dp_raw, %2$s) + 0 * deltapipe._fence() AS hh
                            FROM %3$s WHERE _dp_line > %4$s AND _dp_raw <> '') x
                      WHERE %6$s) s
                FULL JOIN (SELECT _dp_hash, %9$s AS _dp_tid%5$s FROM %7$s WHERE %8$s) t ON t._dp_hash = s.hh
                WHERE s._dp_line IS NULL OR t._dp_hash IS NULL$q$,
                (SELECT string_agg(format(', t.%1$I', k), '') FROM unnest(p_ds.key_cols) k),
                p_seed, p_src, p_hdr_line,
                (SELECT string_agg(format(', %I', k), '') FROM unnest(p_ds.key_cols) k),
                CASE WHEN parts = 1 THEN 'true' ELSE format('hh & %s = %s', parts - 1, part) END,
                tsrc,
                CASE WHEN parts = 1 THEN 'true' ELSE format('_dp_hash & %s = %s', parts - 1, part) END, tid),
                ' UNION ALL ')
            FROM generate_series(0, parts - 1) part);
        DROP TABLE IF EXISTS pg_temp._dp_tcopy;
        PERFORM set_config('min_parallel_table_scan_size', minscan, true);
        PERFORM set_config('enable_mergejoin', mergejoin, true);
        EXECUTE format('SELECT %s - count(_dp_line) FROM %s', rows_in, same) INTO n_same;
        EXECUTE format('CREATE UNLOGGED TABLE %s AS SELECT %s::bigint AS matched, %s::bigint AS seed', nstat, n_same, p_seed);
        -- statistics of the columns that later statements join and filter on only
        -- (sampling the raw text costs more than the rest of the table's stats)
        EXECUTE format('ANALYZE %s (_dp_line, _dp_h%s)', same, (SELECT string_agg(format(', %I', k), '') FROM unnest(p_ds.key_cols) k));
        -- the changed lines are parsed from there (the gone rows have no line: every
        -- statement reading the lines below skips them)
        src := same;
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_unchanged_lines(deltapipe.dataset, text, text, jsonb, text, text, text, boolean, bigint, bigint) IS
  'Private, validate() step: set aside the staged lines already in the target by one hash join on the row hash (into <staging>_s).';
