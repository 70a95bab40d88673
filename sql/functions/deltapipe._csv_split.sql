CREATE OR REPLACE FUNCTION deltapipe._csv_split(line text, delim text DEFAULT ',', quote text DEFAULT '"',
                                                null_str text DEFAULT '')
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $fn$
-- Split one CSV record whose fields may be quoted (quotes doubled inside a quoted
-- field; the record may span lines). An unquoted field equal to null_str is NULL,
-- a quoted one never is. Returns NULL when the quoting is malformed.
--
-- Called once per line holding the quote character, so it runs no SQL query and
-- as few statements as it can. parts = the line split on the quote character: odd
-- parts lie outside quotes, even parts inside; an empty odd part between two even
-- ones is a doubled quote. Each quoted field is replaced by one quote character (a
-- placeholder no unquoted field can equal: they hold no quote), the result is split
-- on the delimiter, and the placeholders are filled with the quoted texts.
DECLARE
    parts text[] := string_to_array(line, quote);
    n     int := cardinality(parts);
    -- only the placeholders could equal a null_str that is the quote character
    nul   text := CASE WHEN null_str = quote AND quote <> '' THEN NULL ELSE null_str END;
    flat  text;
    fld   text;
    p     text;
    vals  text[];
    res   text[];
    pos   int[];
BEGIN
    IF n = 3 THEN                           -- one quoted field: the usual case
        IF right(delim || parts[1], 1) <> delim OR left(parts[3] || delim, 1) <> delim THEN
            RETURN NULL;                    -- text between a quote and a delimiter
        END IF;
        RETURN array_replace(string_to_array(parts[1] || quote || parts[3], delim, nul), quote, parts[2]);
    END IF;
    IF coalesce(n % 2, 0) = 0 THEN
        RETURN NULL;                        -- an odd number of quote characters
    END IF;
    -- every field quoted and no quote inside one: "a","b",...,"z"
    IF left(line, 1) = quote AND right(line, 1) = quote THEN
        res := string_to_array(substr(line, 2, length(line) - 2), quote || delim || quote);
        IF 2 * cardinality(res) = n - 1 THEN
            RETURN res;                     -- the pieces hold no quote
        END IF;
    END IF;
    -- one quoted field with doubled quotes inside: 1,"say ""hi""",3
    IF strpos(line, quote || quote) > 0 THEN
        fld := array_to_string(parts[2:n - 1], quote);
        IF strpos(replace(fld, quote || quote, ''), quote) = 0 THEN
            IF right(delim || parts[1], 1) <> delim OR left(parts[n] || delim, 1) <> delim THEN
                RETURN NULL;
            END IF;
            RETURN array_replace(string_to_array(parts[1] || quote || parts[n], delim, nul), quote,
                                 replace(fld, quote || quote, quote));
        END IF;
    END IF;
    -- any other line
    IF n = 1 THEN
        RETURN string_to_array(line, delim, nul);
    END IF;
    flat := parts[1];
    IF right(delim || flat, 1) <> delim THEN
        RETURN NULL;
    END IF;
    fld := parts[2];
    FOR i IN 3..n BY 2 LOOP
        p := parts[i];
        IF p = '' AND i < n THEN            -- "" inside a quoted field
            fld := fld || quote || parts[i + 1];
            CONTINUE;
        END IF;
        IF left(p || delim, 1) <> delim OR i < n AND right(p, 1) <> delim THEN
            RETURN NULL;
        END IF;
        flat := flat || quote || p;
        vals := vals || fld;
        fld := parts[i + 1];
    END LOOP;
    res := string_to_array(flat, delim, nul);
    pos := array_positions(res, quote);
    FOR j IN 1..cardinality(pos) LOOP
        res[pos[j]] := vals[j];
    END LOOP;
    RETURN res;
END
$fn$;

COMMENT ON FUNCTION deltapipe._csv_split(text, text, text, text) IS
  'Private: split one CSV record into fields; NULL when the quoting is malformed.';
