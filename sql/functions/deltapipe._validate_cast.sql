CREATE OR REPLACE FUNCTION deltapipe._validate_cast(p_typed text, p_create_typed text, p_sel text,
                                                   p_why_shape text, p_why_fail text,
                                                   p_fmt text, p_types text[], p_pos int[], p_tests text[],
                                                   OUT ok boolean, OUT n_rows bigint, OUT kept boolean)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- validate() step 5: build the typed table p_typed (p_create_typed || p_sel,
-- step 4d) in one statement, trying again while it fails. The first try fails on
-- any bad row (p_why_fail), so a clean file needs no second look. When it fails,
-- the error says why: a row of the wrong shape (then such rows are kept with their
-- reason, p_why_shape), or a value that does not cast to some type. Then rows
-- holding that value in a column of that type (p_types, fields p_pos) are kept
-- as suspects (reason chr(30); NULL values) by the next try: bad values tend to
-- repeat ("N/A", "maybe"), and comparing is cheap. After 8 values, the columns
-- of the failing types get cheap tests (p_tests, step 4c) instead (a row failing
-- one is a suspect). Each retry fails early if it fails at all.
-- Returns whether a try succeeded (ok; not when a line is no JSON, p_fmt
-- ndjson, or when a cheap test vouched for a bad value: then every line is
-- checked, deltapipe._validate_check_lines), the rows it wrote (n_rows), and
-- whether it kept rows aside with a reason or as suspects (kept).
DECLARE
    why_now    text;
    tested     int[] := '{}';
    newcols    int[];
    vals       text[] := '{}';
    valcols    int[] := '{}';
    e_val      text;
    keep_shape boolean := false;
    e_state    text;
    e_msg      text;
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %s', p_typed);
    FOR attempt IN 1..cardinality(p_types) + 10 LOOP
        IF keep_shape OR cardinality(tested) > 0 OR cardinality(vals) > 0 THEN
            why_now := p_why_shape
                       || CASE WHEN cardinality(vals) > 0
                               THEN format(' WHEN %s THEN chr(30)',
                                           (SELECT string_agg(format('_dp_f%s IN (%s)', p_pos[c],
                                                                     (SELECT string_agg(quote_literal(v), ', ') FROM unnest(vals) v)),
                                                              ' OR ') FROM unnest(valcols) c))
                               ELSE '' END
                       || CASE WHEN cardinality(tested) > 0
                               THEN format(' WHEN NOT (true%s) THEN chr(30)',
                                           (SELECT string_agg(p_tests[t], '') FROM unnest(tested) t))
                               ELSE '' END
                       || ' END';
        ELSE
            why_now := p_why_fail;
        END IF;
        BEGIN
            EXECUTE p_create_typed || replace(p_sel, '/*WHY*/', why_now);
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
        EXIT WHEN p_fmt = 'ndjson' AND e_msg LIKE '%type json%';       -- not JSON: checked line by line
        -- the columns whose type the message names (all the others when it names none)
        newcols := ARRAY(SELECT k FROM generate_subscripts(p_tests, 1) k
                         WHERE p_tests[k] IS NOT NULL AND k <> ALL (tested)
                           AND (strpos(e_msg, 'type ' || replace(replace(regexp_replace(p_types[k], '\(.*\)', ''),
                                        ' without time zone', ''), 'character varying', 'character')) > 0
                                OR (e_msg LIKE 'date/time%' OR e_msg LIKE '%time zone%') AND p_types[k] ~ '^(date|time)'
                                OR e_msg LIKE 'numeric field overflow%' AND p_types[k] LIKE 'numeric%'));
        IF cardinality(newcols) = 0 THEN
            newcols := ARRAY(SELECT k FROM generate_subscripts(p_tests, 1) k WHERE p_tests[k] IS NOT NULL AND k <> ALL (tested));
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
    kept := keep_shape OR cardinality(tested) > 0 OR cardinality(vals) > 0;
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_cast(text, text, text, text, text, text, text[], int[], text[]) IS
  'Private, validate() step: build the typed table in one statement; on failure retry, keeping aside the rows the error points at.';
