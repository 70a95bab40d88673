CREATE OR REPLACE FUNCTION deltapipe._validate_header(p_ds deltapipe.dataset, p_src text, p_fexpr text, p_header boolean,
                                                     p_cols text[], p_mode text, p_op_col text,
                                                     OUT hdr_line bigint, OUT hdr text[], OUT pos int[],
                                                     OUT op_pos int, OUT nfields int)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- validate() step 2b: which field of a line holds which column. With p_header
-- (csv/tsv files that have one), reads the header line of the staging table
-- p_src, split by p_fexpr, and matches it with the dataset's columns p_cols:
-- DP013 when the file is empty, DP011 for a repeated or unknown column, DP010
-- for a missing one or (changes mode p_mode) a missing op column p_op_col.
-- Without a header, the fields are the columns in order, then the op column.
-- Returns the header's line number (0: none) and its names, the field position
-- of each column (pos, in the order of p_cols), that of the op column and the
-- number of fields a line must have.
DECLARE
    ncol    int := cardinality(p_cols);
    missing text[];
    extra   text[];
BEGIN
    hdr_line := 0;
    IF NOT p_header THEN
        pos := ARRAY(SELECT generate_series(1, ncol));
        op_pos := ncol + 1;
        nfields := ncol + CASE WHEN p_mode = 'changes' THEN 1 ELSE 0 END;
        RETURN;
    END IF;
    -- the header is line 1 unless the file starts with empty lines (LIMIT 1 stops at the first block)
    EXECUTE format('SELECT r._dp_line, %s FROM %s r WHERE r._dp_line = 1 AND r._dp_raw <> %L LIMIT 1',
                   p_fexpr, p_src, '') INTO hdr_line, hdr;
    IF hdr_line IS NULL THEN
        EXECUTE format('SELECT r._dp_line, %s FROM %s r WHERE r._dp_raw <> %L ORDER BY r._dp_line LIMIT 1',
                       p_fexpr, p_src, '') INTO hdr_line, hdr;
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
    pos := ARRAY(SELECT array_position(hdr, c) FROM unnest(p_cols) WITH ORDINALITY u(c, o) ORDER BY o);
    missing := ARRAY(SELECT c FROM unnest(p_cols) WITH ORDINALITY u(c, o)
                     WHERE array_position(hdr, c) IS NULL ORDER BY o);
    extra := ARRAY(SELECT h FROM unnest(hdr) WITH ORDINALITY u(h, o)
                   WHERE h <> ALL (p_cols) AND NOT (p_mode = 'changes' AND h = p_op_col) ORDER BY o);
    IF cardinality(missing) > 0 OR cardinality(extra) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = CASE WHEN cardinality(missing) > 0 THEN 'DP010' ELSE 'DP011' END,
            MESSAGE = format('the file header does not match dataset %s: %s', p_ds.name,
                             concat_ws('; ',
                                       CASE WHEN cardinality(missing) > 0 THEN 'missing ' || array_to_string(missing, ', ') END,
                                       CASE WHEN cardinality(extra) > 0 THEN 'not in the dataset ' || array_to_string(extra, ', ') END)),
            DETAIL = format('header: %s', array_to_string(hdr, ', ')),
            HINT = CASE WHEN cardinality(hdr) = 1 AND ncol > 1 THEN 'is the delimiter right? (--delimiter, --format)'
                        WHEN cardinality(missing) = 0 THEN 'load with --on-schema-change add-columns to add them'
                        ELSE 'rename the columns in the file, or add/recreate the dataset''s columns' END;
    END IF;
    op_pos := array_position(hdr, p_op_col);
    IF p_mode = 'changes' AND op_pos IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP010', MESSAGE = format('changes mode needs an op column %s in the file', p_op_col),
            HINT = 'name it with --op-column';
    END IF;
    nfields := cardinality(hdr);
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_header(deltapipe.dataset, text, text, boolean, text[], text, text) IS
  'Private, validate() step: read and check the header line; the field position of each column and the number of fields.';
