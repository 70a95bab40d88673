CREATE OR REPLACE FUNCTION deltapipe._validate_casts(p_cols text[], p_types text[], p_pos int[], p_mode text, p_op_pos int,
                                                    OUT castx text[], OUT tests text[], OUT gexprs text, OUT colnames text)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- validate() step 4c: the typed expressions. Takes the dataset's columns p_cols,
-- their types p_types, their field positions p_pos and, in changes mode p_mode,
-- the op column's p_op_pos. Returns for each column the cast of its field
-- (castx; a too long value for a length-limited type fails with 22001 instead
-- of being truncated; the typmod of the type is kept by every expression) and a cheap test (deltapipe._safe_cast_test) that, when
-- true, guarantees the cast succeeds (tests, ' AND (...)'; NULL when the cast
-- cannot fail); and the select list of the typed row (gexprs: each cast where
-- the row is not refused, _dp_why IS NULL; the op as "char") with its column
-- names (colnames). Runs nothing.
DECLARE
    base text;
    m    text[];
BEGIN
    castx := '{}';
    tests := array_fill(NULL::text, ARRAY[cardinality(p_cols)]);
    gexprs := '';
    colnames := '';
    FOR i IN 1..cardinality(p_cols) LOOP
        base := regexp_replace(p_types[i], '\(.*\)', '');
        m := regexp_match(p_types[i], '^(character varying|character|bit varying|bit)\((\d+)\)$');
        IF m IS NOT NULL THEN
            -- an explicit cast would truncate silently; refuse too-long values instead
            castx[i] := format('CASE WHEN char_length(_dp_f%1$s) > %2$s THEN deltapipe._fail(%3$L, %4$L)::%5$s ELSE (_dp_f%1$s)::%5$s END',
                               p_pos[i], m[2], '22001', format('value too long for type %s', p_types[i]), p_types[i]);
        ELSIF base <> p_types[i] THEN
            castx[i] := format('((_dp_f%s)::%s)::%s', p_pos[i], base, p_types[i]);
        ELSE
            castx[i] := format('(_dp_f%s)::%s', p_pos[i], p_types[i]);
        END IF;
        IF deltapipe._safe_cast_test('x', p_types[i]) <> 'true' THEN
            tests[i] := format(' AND (_dp_f%1$s IS NULL OR %2$s)', p_pos[i],
                               deltapipe._safe_cast_test(format('_dp_f%s', p_pos[i]), p_types[i]));
        END IF;
        -- ELSE NULL of the type: the CASE keeps the type's typmod (without it, a first load's
        -- CREATE TABLE AS would make numeric(12,2) numeric, varchar(20) character varying)
        gexprs := gexprs || format(', CASE WHEN _dp_why IS NULL THEN %s ELSE NULL::%s END AS %I', castx[i], p_types[i], p_cols[i]);
        colnames := colnames || format(', %I', p_cols[i]);
    END LOOP;
    IF p_mode = 'changes' THEN
        gexprs := gexprs || format(', upper(left(btrim(_dp_f%s), 1))::"char" AS _dp_op', p_op_pos);
        colnames := colnames || ', _dp_op';
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_casts(text[], text[], int[], text, int) IS
  'Private, validate() step: the cast of each column''s field, a cheap test per cast, and the typed select list.';
