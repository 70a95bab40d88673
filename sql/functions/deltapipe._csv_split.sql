CREATE OR REPLACE FUNCTION deltapipe._csv_split(line text, delim text DEFAULT ',', quote text DEFAULT '"',
                                                null_str text DEFAULT '')
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $fn$
-- Split one CSV record whose fields may be quoted (quotes doubled inside a quoted
-- field; the record may span lines). An unquoted field equal to null_str is NULL,
-- a quoted one never is. Returns NULL when the quoting is malformed.
DECLARE
    parts text[] := string_to_array(line, quote);
    n     int := cardinality(parts);
    buf   text := '';
    p     text;
BEGIN
    IF n % 2 = 0 THEN
        RETURN NULL;                        -- an odd number of quote characters
    END IF;
    FOR i IN 1..n LOOP
        p := parts[i];
        IF i % 2 = 1 THEN                   -- outside quotes
            IF p = '' AND i > 1 AND i < n THEN
                buf := buf || quote;        -- "" inside a quoted field
            ELSIF p = '' THEN
                NULL;
            ELSE
                IF i > 1 AND left(p, 1) <> delim THEN RETURN NULL; END IF;
                IF i < n AND right(p, 1) <> delim THEN RETURN NULL; END IF;
                buf := buf || replace(p, delim, E'\x1f');
            END IF;
        ELSE
            buf := buf || E'\x1e' || p;     -- mark quoted content
        END IF;
    END LOOP;
    RETURN ARRAY(
        SELECT CASE WHEN x LIKE E'\x1e%' THEN replace(x, E'\x1e', '')
                    WHEN x = null_str THEN NULL
                    ELSE x END
        FROM unnest(string_to_array(buf, E'\x1f')) WITH ORDINALITY AS u(x, o)
        ORDER BY o);
END
$fn$;

COMMENT ON FUNCTION deltapipe._csv_split(text, text, text, text) IS
  'Private: split one CSV record into fields; NULL when the quoting is malformed.';
