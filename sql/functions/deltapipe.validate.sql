CREATE OR REPLACE FUNCTION deltapipe.validate(p_dataset text, p_staging text, p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Step 2 of a load: parse the raw lines of a staging table, cast them to the
-- dataset's types and hash each row, set-based. Good rows land in the typed
-- table <staging>_t; rows that do not parse, have the wrong number of fields,
-- a NULL key or a value that does not cast go to deltapipe.reject with their
-- line number, raw text, column, SQLSTATE and message.
--
-- Lines whose hash is already in the target are not parsed at all (see below).
-- The others are cast in one statement. If a row does not fit, that statement
-- fails, and the error tells the next try which rows to keep aside (the shape,
-- the bad value, or cheap tests of deltapipe._safe_cast_test on the failing
-- types); only those are checked one by one with exception handling. A few bad
-- rows cost little.
DECLARE
    ds        deltapipe.dataset := deltapipe._dataset(p_dataset);
    stg       text := deltapipe._staging(p_staging);
    fmt       text := coalesce(p_options->>'format', 'csv');
    delim     text := coalesce(p_options->>'delimiter', CASE fmt WHEN 'tsv' THEN E'\t' ELSE ',' END);
    quote     text := coalesce(p_options->>'quote', CASE fmt WHEN 'csv' THEN '"' ELSE '' END);
    nul       text := coalesce(p_options->>'null', '');
    header    boolean := coalesce((p_options->>'header')::boolean, fmt <> 'ndjson');
    mode      text := coalesce(p_options->>'mode', ds.mode);
    op_col    text := coalesce(p_options->>'op_column', 'op');
    run_id    bigint := (p_options->>'run_id')::bigint;
    nr_id     bigint := (p_options->>'node_run_id')::bigint;
    src_file  text := p_options->>'source_file';
    src       text := format('deltapipe_stage.%I', stg);
    first_load boolean := to_regclass(format('%I.%I', ds.target_schema, ds.target_table)) IS NULL;
    typed     text := deltapipe._typed_table(ds, stg, first_load);
    nstat     text := format('deltapipe_stage.%I', stg || '_n');
    cols      text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(ds.columns) c);
    types     text[] := ARRAY(SELECT c->>'type' FROM jsonb_array_elements(ds.columns) c);
    ncol      int := cardinality(cols);
    pos       int[];
    op_pos    int;
    nfields   int;
    hdr_line  bigint := 0;
    hdr       text[];
    missing   text[];
    extra     text[];
    fexpr     text;
    fsrc      text;
    bad       text;
    why       text;
    why_col   text;
    why_code  text;
    gexprs    text := '';
    allcasts  text := '';
    sel       text;
    sfsrc     text;
    mergejoin text;
    minscan   text;
    parts     int;
    fdecls    text;
    fassign   text;
    why_keep  text;
    why_fail  text;
    why_now   text;
    tests     text[] := array_fill(NULL::text, ARRAY[ncol]);
    tested    int[] := '{}';
    newcols   int[];
    vals      text[] := '{}';
    valcols   int[] := '{}';
    e_val     text;
    keep_shape boolean := false;
    attempt   int;
    e_state   text;
    e_msg     text;
    unlogged  text;
    tblopts   text;
    rulecheck text;
    ok        boolean;
    look      boolean := false;
    n_rows    bigint;
    n_badl    bigint;
    badl      text := format('deltapipe_stage.%I', stg || '_b');
    susp      text := format('deltapipe_stage.%I', stg || '_q');
    nbad      bigint;
    colnames  text := '';
    decls     text := '';
    checks    text := '';
    m         text[];
    castx     text[] := '{}';
    base      text;
    i         int;
    unterminated bigint;
    rows_in   bigint;
    rows_ok   bigint;
    seed      bigint;
    n_same    bigint := 0;
    target    text := format('%I.%I', ds.target_schema, ds.target_table);
    same      text := format('deltapipe_stage.%I', stg || '_s');
BEGIN
    IF fmt NOT IN ('csv', 'tsv', 'ndjson') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('unknown format %s', fmt),
            HINT = 'use csv, tsv or ndjson';
    END IF;
    IF length(delim) <> 1 OR length(quote) > 1 OR delim = quote THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = 'delimiter must be one character and differ from the quote character';
    END IF;

    -- Records that span lines (a quoted field with a newline): pair up the lines
    -- with an odd number of quote characters and glue each pair's range.
    -- (deltapipe load glues them while streaming the file and says so: option glued.)
    IF fmt <> 'ndjson' AND quote <> '' AND NOT coalesce((p_options->>'glued')::boolean, false) THEN
        EXECUTE format($q$
            CREATE TEMP TABLE _dp_ml ON COMMIT DROP AS
            WITH odd AS (
                SELECT _dp_line, row_number() OVER (ORDER BY _dp_line) AS rn
                FROM %s
                WHERE strpos(_dp_raw, %L) > 0
                  AND (length(_dp_raw) - length(replace(_dp_raw, %L, ''))) %% 2 = 1)
            SELECT a._dp_line AS first, b._dp_line AS last
            FROM odd a LEFT JOIN odd b ON b.rn = a.rn + 1
            WHERE a.rn %% 2 = 1$q$, src, quote, quote);
        SELECT min(first) INTO unterminated FROM _dp_ml WHERE last IS NULL;
        IF unterminated IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'DP012',
                MESSAGE = format('unterminated quoted field starting at line %s', unterminated),
                DETAIL = 'the file ends inside a quoted field',
                HINT = 'check the quoting of that line, or give the right --quote / --format';
        END IF;
        IF EXISTS (SELECT 1 FROM _dp_ml) THEN
            CREATE TEMP TABLE _dp_mll ON COMMIT DROP AS
                SELECT m.first, g AS line FROM _dp_ml m, generate_series(m.first, m.last) g;
            ANALYZE _dp_mll;
            -- one pass: take the lines of each multi-line record out, put the glued record back
            EXECUTE format($q$
                WITH del AS (
                    DELETE FROM %1$s s USING _dp_mll l WHERE s._dp_line = l.line
                    RETURNING l.first, s._dp_line, s._dp_raw)
                INSERT INTO %1$s (_dp_line, _dp_raw)
                SELECT first, string_agg(_dp_raw, E'\n' ORDER BY _dp_line) FROM del GROUP BY first$q$, src);
            DROP TABLE _dp_mll;
        END IF;
        DROP TABLE _dp_ml;
    END IF;

    -- Field extraction, as an expression over r._dp_raw (or j for ndjson).
    IF fmt = 'ndjson' THEN
        fexpr := format('CASE WHEN jsonb_typeof(j) = %L THEN ARRAY[%s] END', 'object',
                        (SELECT string_agg(format('j->>%L', c), ', ' ORDER BY o)
                         FROM unnest(cols || CASE WHEN mode = 'changes' THEN ARRAY[op_col] ELSE '{}' END)
                              WITH ORDINALITY u(c, o)));
        pos := ARRAY(SELECT generate_series(1, ncol));
        op_pos := ncol + 1;
        nfields := ncol + CASE WHEN mode = 'changes' THEN 1 ELSE 0 END;
    ELSE
        IF quote = '' THEN
            fexpr := format('string_to_array(r._dp_raw, %L, %L)', delim, nul);
        ELSE
            fexpr := format('CASE WHEN strpos(r._dp_raw, %1$L) = 0 THEN string_to_array(r._dp_raw, %2$L, %3$L)
                                  ELSE deltapipe._csv_split(r._dp_raw, %2$L, %1$L, %3$L) END', quote, delim, nul);
        END IF;
        IF header THEN
            -- the header is line 1 unless the file starts with empty lines (LIMIT 1 stops at the first block)
            EXECUTE format('SELECT r._dp_line, %s FROM %s r WHERE r._dp_line = 1 AND r._dp_raw <> %L LIMIT 1',
                           fexpr, src, '') INTO hdr_line, hdr;
            IF hdr_line IS NULL THEN
                EXECUTE format('SELECT r._dp_line, %s FROM %s r WHERE r._dp_raw <> %L ORDER BY r._dp_line LIMIT 1',
                               fexpr, src, '') INTO hdr_line, hdr;
            END IF;
            IF hdr_line IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'DP013', MESSAGE = 'the file is empty',
                    HINT = 'a file with a header needs at least the header line';
            END IF;
            hdr := ARRAY(SELECT btrim(h) FROM unnest(hdr) h);
            IF EXISTS (SELECT 1 FROM unnest(hdr) h GROUP BY h HAVING count(*) > 1) THEN
                RAISE EXCEPTION USING ERRCODE = 'DP011', MESSAGE = format('the header repeats column(s) %s',
                    (SELECT string_agg(h, ', ') FROM (SELECT h FROM unnest(hdr) h GROUP BY h HAVING count(*) > 1) d));
            END IF;
            pos := ARRAY(SELECT array_position(hdr, c) FROM unnest(cols) WITH ORDINALITY u(c, o) ORDER BY o);
            missing := ARRAY(SELECT c FROM unnest(cols) WITH ORDINALITY u(c, o)
                             WHERE array_position(hdr, c) IS NULL ORDER BY o);
            extra := ARRAY(SELECT h FROM unnest(hdr) WITH ORDINALITY u(h, o)
                           WHERE h <> ALL (cols) AND NOT (mode = 'changes' AND h = op_col) ORDER BY o);
            IF cardinality(missing) > 0 OR cardinality(extra) > 0 THEN
                RAISE EXCEPTION USING ERRCODE = CASE WHEN cardinality(missing) > 0 THEN 'DP010' ELSE 'DP011' END,
                    MESSAGE = format('the file header does not match dataset %s: %s', ds.name,
                                     concat_ws('; ',
                                               CASE WHEN cardinality(missing) > 0 THEN 'missing ' || array_to_string(missing, ', ') END,
                                               CASE WHEN cardinality(extra) > 0 THEN 'not in the dataset ' || array_to_string(extra, ', ') END)),
                    DETAIL = format('header: %s', array_to_string(hdr, ', ')),
                    HINT = CASE WHEN cardinality(hdr) = 1 AND ncol > 1 THEN 'is the delimiter right? (--delimiter, --format)'
                                WHEN cardinality(missing) = 0 THEN 'load with --on-schema-change add-columns to add them'
                                ELSE 'rename the columns in the file, or add/recreate the dataset''s columns' END;
            END IF;
            op_pos := array_position(hdr, op_col);
            IF mode = 'changes' AND op_pos IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'DP010', MESSAGE = format('changes mode needs an op column %s in the file', op_col),
                    HINT = 'name it with --op-column';
            END IF;
            nfields := cardinality(hdr);
        ELSE
            pos := ARRAY(SELECT generate_series(1, ncol));
            op_pos := ncol + 1;
            nfields := ncol + CASE WHEN mode = 'changes' THEN 1 ELSE 0 END;
        END IF;
    END IF;

    -- Row hash: the raw record text, seeded with everything that shapes how it is
    -- read (format options, header, column names and types). Equal hash, equal row.
    seed := hashtextextended(concat_ws(chr(31), fmt, delim, quote, nul, array_to_string(hdr, chr(30)),
                                       array_to_string(cols, chr(30)), array_to_string(types, chr(30)),
                                       (ds.options->'rules')::text), 0);
    -- Unchanged rows skip parsing altogether: one hash join of the staged lines
    -- with the target by row hash. Only what did not match is kept, in
    -- <staging>_s: lines that are changed or new (with their raw text, to be
    -- parsed) and target rows that no line matched ("gone": updated or deleted,
    -- with key, hash and ctid).
    -- <staging>_n keeps the number of matched lines and the hash seed.
    EXECUTE format('DROP TABLE IF EXISTS %s, %s', same, nstat);
    IF mode <> 'changes' AND NOT first_load AND NOT coalesce((p_options->>'full_validate')::boolean, false) THEN
        -- No ANALYZE of the staged lines (it costs more than it helps) and a hash join
        -- whatever the estimates say: a merge join would sort both sides.
        IF p_options ? 'staged_lines' AND (fmt = 'ndjson' OR quote = '' OR coalesce((p_options->>'glued')::boolean, false)) THEN
            -- counted by deltapipe load while streaming the file (staged lines not glued here since)
            rows_in := (p_options->>'staged_lines')::bigint - CASE WHEN hdr_line > 0 THEN 1 ELSE 0 END;
        ELSE
            EXECUTE format('SELECT count(*) FROM %s WHERE _dp_line > %s AND _dp_raw <> %L', src, hdr_line, '') INTO rows_in;
        END IF;
    END IF;
    -- The join reads the whole target: for a file of few lines next to a large table
    -- (say 10,000 upserts into 1M rows) parsing every line and comparing by key
    -- (index probes) costs less.
    IF rows_in IS NOT NULL AND rows_in * 10 < ds.row_count THEN
        rows_in := NULL;  -- counted from the parsed rows, as without the join
    ELSIF rows_in IS NOT NULL THEN
        -- PostgreSQL 15 runs a hash full join in one process. Split by hash value into
        -- parts (one per parallel worker), each part a full join of its own: the parts
        -- run side by side under a Parallel Append. The scans inside stay serial (no
        -- Gather below the Append), and the hash is computed once per line
        -- (deltapipe._fence() keeps the subquery that computes it).
        parts := CASE WHEN current_setting('max_parallel_workers_per_gather')::int >= 2 THEN 2 ELSE 1 END;
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
                FULL JOIN (SELECT _dp_hash, ctid AS _dp_tid%5$s FROM %7$s WHERE %8$s) t ON t._dp_hash = s.hh
                WHERE s._dp_line IS NULL OR t._dp_hash IS NULL$q$,
                (SELECT string_agg(format(', t.%1$I', k), '') FROM unnest(ds.key_cols) k),
                seed, src, hdr_line,
                (SELECT string_agg(format(', %I', k), '') FROM unnest(ds.key_cols) k),
                CASE WHEN parts = 1 THEN 'true' ELSE format('hh & %s = %s', parts - 1, part) END,
                target,
                CASE WHEN parts = 1 THEN 'true' ELSE format('_dp_hash & %s = %s', parts - 1, part) END),
                ' UNION ALL ')
            FROM generate_series(0, parts - 1) part);
        PERFORM set_config('min_parallel_table_scan_size', minscan, true);
        PERFORM set_config('enable_mergejoin', mergejoin, true);
        EXECUTE format('SELECT %s - count(_dp_line) FROM %s', rows_in, same) INTO n_same;
        EXECUTE format('CREATE UNLOGGED TABLE %s AS SELECT %s::bigint AS matched, %s::bigint AS seed', nstat, n_same, seed);
        -- statistics of the columns that later statements join and filter on only
        -- (sampling the raw text costs more than the rest of the table's stats)
        EXECUTE format('ANALYZE %s (_dp_line, _dp_h%s)', same, (SELECT string_agg(format(', %I', k), '') FROM unnest(ds.key_cols) k));
        -- the changed lines are parsed from there (the gone rows have no line: every
        -- statement reading the lines below skips them)
        src := same;
    END IF;

    -- Rows come from the (changed) staged lines (/*EXCL*/: minus some lines, see below),
    -- split once per line (deltapipe._fence(): see the typed rows statement).
    IF fmt = 'ndjson' THEN
        fsrc := format('SELECT _dp_line, hashtextextended(_dp_raw, %s) AS _dp_hash, %s AS f, deltapipe._fence() AS _dp_0
                        FROM (SELECT r._dp_line, r._dp_raw, r._dp_raw::jsonb AS j, deltapipe._fence() AS _dp_0
                              FROM %s r WHERE r._dp_raw <> %L /*EXCL*/) r', seed, fexpr, src, '');
    ELSE
        fsrc := format('SELECT r._dp_line, hashtextextended(r._dp_raw, %s) AS _dp_hash, %s AS f, deltapipe._fence() AS _dp_0
                        FROM %s r WHERE r._dp_line > %s AND r._dp_raw <> %L /*EXCL*/', seed, fexpr, src, hdr_line, '');
    END IF;

    -- The fields, each once out of the array (subscripts are not free): _dp_n is the
    -- number of fields, _dp_f<k> the k-th. Tests and casts below read these.
    sfsrc := format('SELECT _dp_line, _dp_hash, cardinality(f) AS _dp_n%s, deltapipe._fence() AS _dp_2 FROM (%s) s0',
                    (SELECT string_agg(format(', f[%s] AS _dp_f%s', k, k), '' ORDER BY k)
                     FROM (SELECT DISTINCT k FROM unnest(pos || CASE WHEN mode = 'changes' THEN ARRAY[op_pos] END) k
                           WHERE k IS NOT NULL) u),
                    fsrc);
    fdecls := (SELECT string_agg(format('_dp_f%s text; ', k), '' ORDER BY k)
               FROM (SELECT DISTINCT k FROM unnest(pos || CASE WHEN mode = 'changes' THEN ARRAY[op_pos] END) k
                     WHERE k IS NOT NULL) u);
    fassign := (SELECT string_agg(format('_dp_f%s := f[%s]; ', k, k), '' ORDER BY k)
                FROM (SELECT DISTINCT k FROM unnest(pos || CASE WHEN mode = 'changes' THEN ARRAY[op_pos] END) k
                      WHERE k IS NOT NULL) u);

    -- Shape checks: why a row is refused before any cast.
    bad := format('_dp_n IS NULL OR _dp_n <> %s', nfields);
    why := format('CASE WHEN _dp_n IS NULL THEN %L WHEN _dp_n <> %s THEN format(%L, _dp_n)',
                  CASE fmt WHEN 'ndjson' THEN 'not a JSON object' ELSE 'malformed quoting' END, nfields,
                  'expected ' || nfields || ' fields, found %s');
    why_col := 'CASE WHEN _dp_n IS NULL OR _dp_n <> ' || nfields || ' THEN NULL::text';
    why_code := format('CASE WHEN _dp_n IS NULL THEN %L WHEN _dp_n <> %s THEN %L',
                       CASE fmt WHEN 'ndjson' THEN 'DP106' ELSE 'DP103' END, nfields, 'DP101');
    FOR i IN 1..ncol LOOP
        IF cols[i] = ANY (ds.key_cols) THEN
            bad := bad || format(' OR _dp_f%s IS NULL', pos[i]);
            why := why || format(' WHEN _dp_f%s IS NULL THEN %L', pos[i], format('key column %s is null', cols[i]));
            why_col := why_col || format(' WHEN _dp_f%s IS NULL THEN %L', pos[i], cols[i]);
            why_code := why_code || format(' WHEN _dp_f%s IS NULL THEN %L', pos[i], 'DP102');
        END IF;
    END LOOP;
    IF mode = 'changes' THEN
        bad := bad || format(' OR coalesce(lower(btrim(_dp_f%s)), %L) NOT IN (%L, %L, %L, %L, %L, %L, %L)',
                             op_pos, '', 'i', 'insert', 'u', 'update', 'upsert', 'd', 'delete');
        why := why || format(' ELSE format(%L, _dp_f%s)', 'unknown op %s (use insert, update or delete)', op_pos);
        why_col := why_col || format(' ELSE %L', op_col);
        why_code := why_code || format(' ELSE %L', 'DP104');
    END IF;
    why := why || ' END';
    why_col := why_col || ' END';
    why_code := why_code || ' END';

    -- Typed expressions, and for each a cheap test that, when true, guarantees the cast succeeds.
    FOR i IN 1..ncol LOOP
        base := regexp_replace(types[i], '\(.*\)', '');
        m := regexp_match(types[i], '^(character varying|character|bit varying|bit)\((\d+)\)$');
        IF m IS NOT NULL THEN
            -- an explicit cast would truncate silently; refuse too-long values instead
            castx[i] := format('CASE WHEN char_length(_dp_f%1$s) > %2$s THEN deltapipe._fail(%3$L, %4$L)::%5$s ELSE (_dp_f%1$s)::%5$s END',
                               pos[i], m[2], '22001', format('value too long for type %s', types[i]), types[i]);
        ELSIF base <> types[i] THEN
            castx[i] := format('((_dp_f%s)::%s)::%s', pos[i], base, types[i]);
        ELSE
            castx[i] := format('(_dp_f%s)::%s', pos[i], types[i]);
        END IF;
        IF deltapipe._safe_cast_test('x', types[i]) <> 'true' THEN
            tests[i] := format(' AND (_dp_f%1$s IS NULL OR %2$s)', pos[i],
                               deltapipe._safe_cast_test(format('_dp_f%s', pos[i]), types[i]));
        END IF;
        gexprs := gexprs || format(', CASE WHEN _dp_why IS NULL THEN %s END AS %I', castx[i], cols[i]);
        colnames := colnames || format(', %I', cols[i]);
    END LOOP;
    IF mode = 'changes' THEN
        gexprs := gexprs || format(', upper(left(btrim(_dp_f%s), 1))::"char" AS _dp_op', op_pos);
        colnames := colnames || ', _dp_op';
    END IF;

    -- The typed rows in one statement, run by parallel workers: each subquery level
    -- calls deltapipe._fence() so that the planner keeps it (the split and the reason
    -- are computed once per row) without the OFFSET 0 that would keep the work out of
    -- the workers. /*WHY*/ is the reason a row is refused before any cast (see
    -- why_* below); the casts only run where it is NULL.
    -- Validation rules: a row for which one is false is rejected with the rule's name.
    SELECT 'CASE' || string_agg(format(' WHEN NOT coalesce((%s)::boolean, true) THEN %L', r->>'predicate',
                                       concat_ws(chr(31), 'DP120', '', format('rule %s failed: %s', r->>'name', r->>'predicate'))), '')
           || ' END'
      INTO rulecheck FROM jsonb_array_elements(ds.options->'rules') r;
    sel := format($q$
        SELECT _dp_line%1$s, _dp_hash, %3$s AS _dp_why
        FROM (SELECT _dp_line, _dp_hash, _dp_why%4$s, deltapipe._fence() AS _dp_1
              FROM (SELECT sf.*, /*WHY*/ AS _dp_why, deltapipe._fence() AS _dp_1
                    FROM (%5$s) sf) s1) y$q$,
        colnames, NULL, CASE WHEN rulecheck IS NULL THEN '_dp_why' ELSE format('coalesce(_dp_why, %s)', rulecheck) END,
        gexprs, sfsrc);
    -- The reason a row is refused: wrong shape (kept, to be rejected) ...
    why_keep := format('CASE WHEN %s THEN concat_ws(chr(31), %s, coalesce(%s, %L), %s) END', bad, why_code, why_col, '', why);
    -- ... or the same, but failing the statement (see the tries below).
    why_fail := format('CASE WHEN %s THEN deltapipe._fail(%L, %L) END', bad, 'DP199', 'a row of the wrong shape');
    unlogged := CASE WHEN first_load THEN '' ELSE 'UNLOGGED' END;
    -- a first load's typed rows become the target: room on each page (fillfactor 90) lets
    -- the next loads' updates stay on their page (HOT: no new index entry)
    tblopts := CASE WHEN first_load THEN 'WITH (fillfactor = 90)' ELSE '' END;

    -- Row checker for suspicious rows: one exception block for the whole row, and
    -- only when that fails one per column to name the column, SQLSTATE and message.
    FOR i IN 1..ncol LOOP
        decls := decls || format('v%s %s; ', i, types[i]);
        allcasts := allcasts || format('v%s := %s; ', i, castx[i]);
        checks := checks || format($c$
            BEGIN v%1$s := %2$s; EXCEPTION WHEN others THEN RETURN %3$L || chr(31) || SQLSTATE || chr(31) || SQLERRM; END;$c$,
            i, castx[i], cols[i]);
    END LOOP;
    -- the body goes in as a quoted literal: names and options inside it cannot end it
    EXECUTE format('CREATE OR REPLACE FUNCTION pg_temp._dp_check(raw text) RETURNS text LANGUAGE plpgsql AS %L',
        format($f$
        DECLARE f text[]; j jsonb; _dp_n int; %1$s
        BEGIN
            %2$s
            _dp_n := cardinality(f); %6$s
            IF %3$s THEN RETURN NULL; END IF;
            BEGIN %4$s RETURN NULL; EXCEPTION WHEN others THEN NULL; END;
            %5$s
            RETURN NULL;
        END $f$,
        fdecls || decls,
        CASE WHEN fmt = 'ndjson'
             THEN format('BEGIN j := raw::jsonb; EXCEPTION WHEN others THEN RETURN %L || chr(31) || SQLSTATE || chr(31) || SQLERRM; END; f := %s;',
                         '', fexpr)
             ELSE format('f := %s;', replace(fexpr, 'r._dp_raw', 'raw')) END,
        bad, allcasts, checks, fassign));

    EXECUTE format('DROP TABLE IF EXISTS %s', typed);
    -- Try the statement. The first try fails on any bad row, so a clean file needs no
    -- second look. When it fails, the error says why: a row of the wrong shape (then
    -- such rows are kept with their reason), or a value that does not cast to some
    -- type. Then rows holding that value in a column of that type are kept as
    -- suspects (chr(30), NULL values) by the next try: bad values tend to repeat
    -- ("N/A", "maybe"), and comparing is cheap. After 8 values, the columns of the
    -- failing types get cheap tests instead (a row failing one is a suspect). Each
    -- retry fails early if it fails at all.
    FOR attempt IN 1..ncol + 10 LOOP
        IF keep_shape OR cardinality(tested) > 0 OR cardinality(vals) > 0 THEN
            why_now := format('CASE WHEN %s THEN concat_ws(chr(31), %s, coalesce(%s, %L), %s)%s%s END', bad, why_code, why_col, '', why,
                              CASE WHEN cardinality(vals) > 0
                                   THEN format(' WHEN %s THEN chr(30)',
                                               (SELECT string_agg(format('_dp_f%s IN (%s)', pos[c],
                                                                         (SELECT string_agg(quote_literal(v), ', ') FROM unnest(vals) v)),
                                                                  ' OR ') FROM unnest(valcols) c))
                                   ELSE '' END,
                              CASE WHEN cardinality(tested) > 0
                                   THEN format(' WHEN NOT (true%s) THEN chr(30)',
                                               (SELECT string_agg(tests[t], '') FROM unnest(tested) t))
                                   ELSE '' END);
        ELSE
            why_now := why_fail;
        END IF;
        BEGIN
            EXECUTE format('CREATE %s TABLE %s %s AS %s', unlogged, typed, tblopts, replace(sel, '/*WHY*/', why_now));
            GET DIAGNOSTICS n_rows = ROW_COUNT;
            ok := true;
        EXCEPTION WHEN others THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
            ok := false;
        END;
        EXIT WHEN ok;
        IF e_state = 'DP199' AND NOT keep_shape THEN
            keep_shape := true;
            CONTINUE;
        END IF;
        EXIT WHEN fmt = 'ndjson' AND e_msg LIKE '%type json%';       -- not JSON: checked line by line below
        -- the columns whose type the message names (all the others when it names none)
        newcols := ARRAY(SELECT k FROM generate_subscripts(tests, 1) k
                         WHERE tests[k] IS NOT NULL AND k <> ALL (tested)
                           AND (strpos(e_msg, 'type ' || replace(replace(regexp_replace(types[k], '\(.*\)', ''),
                                        ' without time zone', ''), 'character varying', 'character')) > 0
                                OR (e_msg LIKE 'date/time%' OR e_msg LIKE '%time zone%') AND types[k] ~ '^(date|time)'
                                OR e_msg LIKE 'numeric field overflow%' AND types[k] LIKE 'numeric%'));
        IF cardinality(newcols) = 0 THEN
            newcols := ARRAY(SELECT k FROM generate_subscripts(tests, 1) k WHERE tests[k] IS NOT NULL AND k <> ALL (tested));
        END IF;
        EXIT WHEN cardinality(newcols) = 0;                                -- a cheap test vouched for a bad value
        e_val := substring(e_msg FROM '"(.*)"');
        IF e_val IS NOT NULL AND cardinality(vals) < 8 AND NOT e_val = ANY (vals) THEN
            vals := vals || e_val;
            valcols := valcols || ARRAY(SELECT c FROM unnest(newcols) c WHERE c <> ALL (valcols));
        ELSE
            tested := tested || newcols;
        END IF;
    END LOOP;
    look := ok AND (keep_shape OR cardinality(tested) > 0 OR cardinality(vals) > 0 OR rulecheck IS NOT NULL);

    -- Last resort (not JSON, or a cheap test was wrong): check every row one by one,
    -- put the refused lines aside (<staging>_b), and build the table without them.
    EXECUTE format('DROP TABLE IF EXISTS %s, %s', badl, susp);
    EXECUTE format('CREATE UNLOGGED TABLE %s (_dp_line bigint, e text)', badl);
    IF NOT ok THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', typed);
        IF fmt = 'ndjson' THEN
            -- a line that is not JSON would fail any test reading its fields: check every line
            EXECUTE format('CREATE UNLOGGED TABLE %s AS SELECT _dp_line, _dp_raw FROM %s r WHERE r._dp_raw <> %L',
                           susp, src, '');
        ELSE
            EXECUTE format('CREATE UNLOGGED TABLE %s AS SELECT s._dp_line, r._dp_raw FROM (%s) s
                            JOIN %s r ON r._dp_line = s._dp_line WHERE NOT (%s)', susp, sfsrc, src, bad);
        END IF;
        EXECUTE format('INSERT INTO %s SELECT _dp_line, e FROM (SELECT _dp_line, pg_temp._dp_check(_dp_raw) AS e FROM %s) c
                        WHERE e IS NOT NULL', badl, susp);
        EXECUTE format('DROP TABLE %s', susp);
        EXECUTE format('ANALYZE %s', badl);
        EXECUTE format('CREATE %s TABLE %s %s AS %s', unlogged, typed, tblopts,
                       replace(replace(sel, '/*WHY*/', why_keep), '/*EXCL*/',
                               format('AND NOT EXISTS (SELECT 1 FROM %s b WHERE b._dp_line = r._dp_line)', badl)));
        GET DIAGNOSTICS n_rows = ROW_COUNT;
        look := true;
        EXECUTE format($q$
            INSERT INTO deltapipe.reject (run_id, node_run_id, dataset, source_file, line_no, raw_line, column_name, sqlstate, message)
            SELECT %L::bigint, %L::bigint, %L, %L, b._dp_line, r._dp_raw,
                   nullif(split_part(e, chr(31), 1), ''), split_part(e, chr(31), 2),
                   CASE WHEN split_part(e, chr(31), 1) = '' THEN 'invalid JSON: ' ELSE '' END || split_part(e, chr(31), 3)
            FROM %s b JOIN %s r ON r._dp_line = b._dp_line$q$,
            run_id, nr_id, ds.name, src_file, badl, src);
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', badl) INTO n_badl;
    EXECUTE format('DROP TABLE %s', badl);
    rows_in := coalesce(rows_in, n_rows + n_badl);

    -- Rows kept with a reason (shape, rule) or as suspects: out of the table in one
    -- pass, with their raw line; suspects are checked one by one (the bad ones get
    -- their reason, the others go back, cast); the refused go to the rejects.
    nbad := 0;
    IF look THEN
        EXECUTE format('CREATE TEMP TABLE _dp_w ON COMMIT DROP AS
                        SELECT ctid AS tid, _dp_line, _dp_why, NULL::text AS _dp_raw FROM %s WHERE _dp_why IS NOT NULL', typed);
        GET DIAGNOSTICS nbad = ROW_COUNT;
        IF nbad > 0 THEN
            ANALYZE _dp_w;
            EXECUTE format('UPDATE _dp_w w SET _dp_raw = r._dp_raw FROM %s r WHERE r._dp_line = w._dp_line', src);
            EXECUTE format('DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT tid FROM _dp_w))', typed);
            UPDATE _dp_w SET _dp_why = (SELECT concat_ws(chr(31), split_part(e, chr(31), 2), split_part(e, chr(31), 1),
                                                         split_part(e, chr(31), 3))
                                        FROM (SELECT pg_temp._dp_check(_dp_raw) AS e) c WHERE e IS NOT NULL)
             WHERE _dp_why = chr(30);
            IF EXISTS (SELECT 1 FROM _dp_w WHERE _dp_why IS NULL) THEN
                -- suspects that cast after all: back in, with the rules applied
                EXECUTE format('INSERT INTO %s %s', typed,
                               replace(replace(sel, '/*WHY*/', why_keep), '/*EXCL*/',
                                       'AND r._dp_line IN (SELECT _dp_line FROM _dp_w WHERE _dp_why IS NULL)'));
                DELETE FROM _dp_w WHERE _dp_why IS NULL;
                IF rulecheck IS NOT NULL THEN
                    EXECUTE format('INSERT INTO _dp_w SELECT NULL, w._dp_line, w._dp_why, r._dp_raw
                                    FROM (SELECT _dp_line, _dp_why FROM %s WHERE _dp_why IS NOT NULL) w
                                    JOIN %s r ON r._dp_line = w._dp_line', typed, src);
                    EXECUTE format('DELETE FROM %s WHERE _dp_why IS NOT NULL', typed);
                END IF;
            END IF;
            INSERT INTO deltapipe.reject (run_id, node_run_id, dataset, source_file, line_no, raw_line, column_name, sqlstate, message)
            SELECT run_id, nr_id, ds.name, src_file, w._dp_line, w._dp_raw, nullif(split_part(w._dp_why, chr(31), 2), ''),
                   split_part(w._dp_why, chr(31), 1), split_part(w._dp_why, chr(31), 3)
            FROM _dp_w w;
            GET DIAGNOSTICS nbad = ROW_COUNT;
        END IF;
        DROP TABLE _dp_w;
    END IF;
    rows_ok := n_rows - nbad;
    IF NOT first_load THEN
        EXECUTE format('ANALYZE %s (_dp_line, _dp_hash%s)', typed, (SELECT string_agg(format(', %I', k), '') FROM unnest(ds.key_cols) k));
    END IF;
    RETURN jsonb_build_object('rows_in', rows_in, 'valid', rows_ok + n_same, 'unchanged_lines', n_same,
                              'rejected', rows_in - rows_ok - n_same, 'typed_table', typed, 'header_line', hdr_line,
                              'typed_rows', rows_ok);
END
$fn$;

COMMENT ON FUNCTION deltapipe.validate(text, text, jsonb) IS
  'Load step 2: parse, cast and hash the staged lines into <staging>_t; bad rows go to deltapipe.reject with line, raw text, column and reason.';
