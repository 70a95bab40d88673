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
-- Lines whose hash is already in the target are not parsed at all (step 3).
-- The others are cast in one statement. If a row does not fit, that statement
-- fails, and the error tells the next try which rows to keep aside (the shape,
-- the bad value, or cheap tests of deltapipe._safe_cast_test on the failing
-- types); only those are checked one by one with exception handling. A few bad
-- rows cost little.
--
-- The steps, each a private routine deltapipe._validate_*:
--   0 bad_bytes        records staged as bytes (not valid text) are rejected
--   1 glue_lines       records that span lines become one row
--   2 split_expr       how a line splits into fields;
--     header           which field is which column (from the header line)
--   3 unchanged_lines  lines already in the target are set aside unparsed
--   4 field_rows, shape, casts, typed_select, row_checker
--                      the SQL of the typed rows statement and of the row checker
--   5 cast             the typed rows in one statement, retried with suspects aside
--   6 check_lines      the last resort: every line checked one by one
--   7 reject_kept      the rows kept aside are rechecked or rejected
DECLARE
    ds         deltapipe.dataset := deltapipe._dataset(p_dataset);
    stg        text := deltapipe._staging(p_staging);
    fmt        text := coalesce(p_options->>'format', 'csv');
    delim      text := coalesce(p_options->>'delimiter', CASE fmt WHEN 'tsv' THEN E'\t' ELSE ',' END);
    quote      text := coalesce(p_options->>'quote', CASE fmt WHEN 'csv' THEN '"' ELSE '' END);
    nul        text := coalesce(p_options->>'null', '');
    header     boolean := coalesce((p_options->>'header')::boolean, fmt <> 'ndjson');
    mode       text := coalesce(p_options->>'mode', ds.mode);
    op_col     text := coalesce(p_options->>'op_column', 'op');
    first_load boolean := to_regclass(format('%I.%I', ds.target_schema, ds.target_table)) IS NULL;
    typed      text := deltapipe._typed_table(ds, stg, first_load);
    src        text := format('deltapipe_stage.%I', stg);  -- the staged lines
    cols       text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(ds.columns) c);
    types      text[] := ARRAY(SELECT c->>'type' FROM jsonb_array_elements(ds.columns) c);
    fexpr      text;     -- splits a line into its fields
    hd         record;   -- the header: hdr_line, hdr, pos, op_pos, nfields
    seed       bigint;   -- of the row hash
    un         record;   -- the unchanged lines: rows_in, n_same, src (the lines to parse)
    fr         record;   -- the rows of fields: sfsrc, fdecls, fassign
    sh         record;   -- the shape checks: bad, why_shape, why_keep, why_fail
    ca         record;   -- the casts: castx, tests, gexprs, colnames
    ts         record;   -- the typed rows statement: sel, rulecheck, create_typed
    tr         record;   -- the tries: ok, n_rows, kept
    cl         record;   -- the line by line check: n_rows, n_badl
    n_rows     bigint;
    nbad       bigint := 0;
    nbytes     bigint;   -- records rejected for their bytes (step 0)
    hdr_bad boolean;
    rows_in    bigint;
    rows_ok    bigint;
BEGIN
    IF fmt NOT IN ('csv', 'tsv', 'ndjson') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('unknown format %s', fmt),
            HINT = 'use csv, tsv or ndjson';
    END IF;
    IF length(delim) <> 1 OR length(quote) > 1 OR delim = quote THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = 'delimiter must be one character and differ from the quote character';
    END IF;

    -- 0. Records staged as bytes (not valid text: an invalid byte, a NUL) are rejected with their bytes.
    nbytes := deltapipe._validate_bad_bytes(ds, src, p_options);

    -- 1. Records that span lines (deltapipe load glues them while streaming the file and says so: option glued).
    IF fmt <> 'ndjson' AND quote <> '' AND NOT coalesce((p_options->>'glued')::boolean, false) THEN
        PERFORM deltapipe._validate_glue_lines(src, quote);
    END IF;

    -- 2. The fields of a line, and which is which column.
    fexpr := deltapipe._validate_split_expr(fmt, delim, quote, nul, cols, mode, op_col);
    IF nbytes > 0 AND header AND fmt <> 'ndjson' THEN
        -- the header line itself is not text: no column can be matched
        SELECT min(line_no) INTO n_rows FROM deltapipe.reject
         WHERE node_run_id = (p_options->>'node_run_id')::bigint AND raw_bytes IS NOT NULL;
        IF n_rows IS NOT NULL THEN
            EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %s WHERE _dp_line < %s AND _dp_raw <> %L)', src, n_rows, '')
               INTO hdr_bad;
        END IF;
        IF coalesce(hdr_bad, false) THEN
            RAISE EXCEPTION USING ERRCODE = 'DP013',
                MESSAGE = format('the header line (line %s) is not valid %s text', n_rows,
                                 upper(coalesce(nullif(p_options->>'encoding', ''), 'UTF8'))),
                HINT = 'give the file''s encoding with --encoding, or fix its first line';
        END IF;
    END IF;
    hd := deltapipe._validate_header(ds, src, fexpr, header AND fmt <> 'ndjson', cols, mode, op_col);

    -- 3. Row hash: the raw record text, seeded with everything that shapes how it is
    -- read (format options, header, column names and types). Equal hash, equal row.
    -- Lines whose hash is in the target are set aside unparsed.
    seed := hashtextextended(concat_ws(chr(31), fmt, delim, quote, nul, array_to_string(hd.hdr, chr(30)),
                                       array_to_string(cols, chr(30)), array_to_string(types, chr(30)),
                                       (ds.options->'rules')::text), 0);
    un := deltapipe._validate_unchanged_lines(ds, stg, src, p_options, fmt, quote, mode, first_load, hd.hdr_line, seed);

    -- 4. The SQL: the lines to parse as rows of fields, why a row is refused before
    -- any cast, the casts, the typed rows statement, the row checker.
    fr := deltapipe._validate_field_rows(fmt, fexpr, un.src, hd.hdr_line, seed, hd.pos, hd.op_pos, mode);
    sh := deltapipe._validate_shape(fmt, hd.nfields, cols, ds.key_cols, hd.pos, mode, hd.op_pos, op_col);
    ca := deltapipe._validate_casts(cols, types, hd.pos, mode, hd.op_pos);
    ts := deltapipe._validate_typed_select(ds, fr.sfsrc, ca.gexprs, ca.colnames, typed, first_load);
    PERFORM deltapipe._validate_row_checker(fmt, fexpr, fr.fdecls, fr.fassign, sh.bad, cols, types, ca.castx);

    -- 5. The typed rows in one statement, retried with the rows the error points at kept aside.
    tr := deltapipe._validate_cast(typed, ts.create_typed, ts.sel, sh.why_shape, sh.why_fail, fmt, types, hd.pos, ca.tests);

    -- 6. Last resort (not JSON, or a cheap test was wrong): every line checked one by one.
    cl := deltapipe._validate_check_lines(tr.ok, ds, stg, p_options, un.src, fmt, fr.sfsrc, sh.bad,
                                          typed, ts.create_typed, ts.sel, sh.why_keep);
    n_rows := CASE WHEN tr.ok THEN tr.n_rows ELSE cl.n_rows END;
    rows_in := coalesce(un.rows_in, n_rows + cl.n_badl) + nbytes;

    -- 7. Rows kept with a reason (shape, rule) or as suspects: rechecked, or rejected.
    IF NOT tr.ok OR tr.kept OR ts.rulecheck IS NOT NULL THEN
        nbad := deltapipe._validate_reject_kept(ds, p_options, un.src, typed, ts.sel, sh.why_keep, ts.rulecheck);
    END IF;
    rows_ok := n_rows - nbad;
    IF NOT first_load THEN
        EXECUTE format('ANALYZE %s (_dp_line, _dp_hash%s)', typed, (SELECT string_agg(format(', %I', k), '') FROM unnest(ds.key_cols) k));
    END IF;
    RETURN jsonb_build_object('rows_in', rows_in, 'valid', rows_ok + un.n_same, 'unchanged_lines', un.n_same,
                              'rejected', rows_in - rows_ok - un.n_same, 'typed_table', typed, 'header_line', hd.hdr_line,
                              'typed_rows', rows_ok);
END
$fn$;

COMMENT ON FUNCTION deltapipe.validate(text, text, jsonb) IS
  'Load step 2: parse, cast and hash the staged lines into <staging>_t; bad rows go to deltapipe.reject with line, raw text, column and reason.';
