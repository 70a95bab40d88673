CREATE OR REPLACE FUNCTION deltapipe._safe_cast_test(p_expr text, p_type text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $fn$
-- SQL text of a cheap boolean test on the text expression p_expr that, when true,
-- guarantees p_expr::p_type succeeds (false means "check this value the slow
-- way", not "invalid"). Only a few fast C-level string functions per test (translate,
-- ltrim, substr): no regular expressions, which are slow in bulk.
DECLARE
    d   text := '0123456789';
    m   text[];
BEGIN
    -- "all characters are digits" is ltrim(x, '0123456789') = ''
    IF p_type IN ('text', 'character varying', 'character', 'name') THEN
        RETURN 'true';
    END IF;
    m := regexp_match(p_type, '^(character varying|character)\((\d+)\)$');
    IF m IS NOT NULL THEN
        RETURN format('char_length(%s) <= %s', p_expr, m[2]);
    END IF;
    IF p_type IN ('bigint', 'integer', 'smallint') THEN
        -- at most 18 / 9 / 4 digits always fit
        RETURN format('((length(%1$s) BETWEEN 1 AND %3$s AND ltrim(%1$s, %2$L) = '''')
                        OR (left(%1$s, 1) = ''-'' AND length(%1$s) BETWEEN 2 AND %4$s AND ltrim(substr(%1$s, 2), %2$L) = ''''))',
                      p_expr, d, CASE p_type WHEN 'bigint' THEN 18 WHEN 'integer' THEN 9 ELSE 4 END,
                      CASE p_type WHEN 'bigint' THEN 19 WHEN 'integer' THEN 10 ELSE 5 END);
    END IF;
    IF p_type IN ('numeric', 'double precision', 'real') THEN
        -- digits with at most one point and a leading minus, at least one digit, short enough for real/double
        RETURN format('(length(%1$s) BETWEEN 1 AND 30 AND translate(%1$s, %2$L, '''') IN ('''', ''.'', ''-'', ''-.'')
                        AND strpos(%1$s, ''-'') <= 1 AND translate(%1$s, ''-.'', '''') <> '''')', p_expr, d);
    END IF;
    IF p_type = 'boolean' THEN
        RETURN format('lower(%s) IN (''t'', ''f'', ''true'', ''false'', ''yes'', ''no'', ''y'', ''n'', ''on'', ''off'', ''1'', ''0'')', p_expr);
    END IF;
    IF p_type IN ('date', 'timestamp without time zone', 'timestamp with time zone') THEN
        -- YYYY-MM-DD, optionally followed by [ T]HH:MI:SS for timestamps (one translate() for the
        -- shape); day within the month's length (29 February is left to the slow check)
        RETURN format($t$(translate(%1$s, '123456789', '000000000') IN (%2$s)
            AND substr(%1$s, 1, 4) <> '0000'
            AND substr(%1$s, 6, 2) BETWEEN '01' AND '12'
            AND substr(%1$s, 9, 2) BETWEEN '01' AND CASE substr(%1$s, 6, 2) WHEN '02' THEN '28'
                                                     WHEN '04' THEN '30' WHEN '06' THEN '30' WHEN '09' THEN '30'
                                                     WHEN '11' THEN '30' ELSE '31' END
            AND (length(%1$s) = 10 OR (substr(%1$s, 12, 2) <= '23' AND substr(%1$s, 15, 2) <= '59'
                                       AND substr(%1$s, 18, 2) <= '59')))$t$,
            p_expr, CASE WHEN p_type = 'date' THEN quote_literal('0000-00-00')
                         ELSE concat_ws(', ', quote_literal('0000-00-00'), quote_literal('0000-00-00 00:00:00'),
                                        quote_literal('0000-00-00T00:00:00')) END);
    END IF;
    RETURN 'false';
END
$fn$;

COMMENT ON FUNCTION deltapipe._safe_cast_test(text, text) IS
  'Private: SQL of a cheap test that guarantees a text value casts to a type (false = check it the slow way).';
