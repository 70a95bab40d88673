CREATE OR REPLACE FUNCTION deltapipe._validate_glue_lines(p_src text, p_quote text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- validate() step 1: records that span lines (a quoted field with a newline).
-- Pairs up the lines of the staging table p_src (qualified name) that hold an
-- odd number of p_quote characters and replaces each pair's range of lines by
-- one row, the glued record, at the line number of its first line.
-- A quoted field still open at the end of the file makes one record of the lines
-- from its first to the last (then rejected as malformed quoting). Returns nothing.
-- (deltapipe load glues them while streaming the file and says so: option glued;
-- then validate() does not call this.)
DECLARE
    unterminated bigint;
BEGIN
    EXECUTE format($q$
        CREATE TEMP TABLE _dp_ml ON COMMIT DROP AS
        WITH odd AS (
            SELECT _dp_line, row_number() OVER (ORDER BY _dp_line) AS rn
            FROM %s
            WHERE strpos(_dp_raw, %L) > 0
              AND (length(_dp_raw) - length(replace(_dp_raw, %L, ''))) %% 2 = 1)
        SELECT a._dp_line AS first, b._dp_line AS last
        FROM odd a LEFT JOIN odd b ON b.rn = a.rn + 1
        WHERE a.rn %% 2 = 1$q$, p_src, p_quote, p_quote);
    -- a quoted field still open at the end of the file: its record runs to the last line
    -- (as COPY reads it), and is rejected as one (its quoting is malformed)
    SELECT min(first) INTO unterminated FROM _dp_ml WHERE last IS NULL;
    IF unterminated IS NOT NULL THEN
        EXECUTE format('UPDATE _dp_ml SET last = (SELECT max(_dp_line) FROM %s) WHERE first = %s', p_src, unterminated);
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
            SELECT first, string_agg(_dp_raw, E'\n' ORDER BY _dp_line) FROM del GROUP BY first$q$, p_src);
        DROP TABLE _dp_mll;
    END IF;
    DROP TABLE _dp_ml;
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_glue_lines(text, text) IS
  'Private, validate() step: glue the lines of records whose quoted fields hold newlines into one staged row each.';
