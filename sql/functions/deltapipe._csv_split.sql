CREATE OR REPLACE FUNCTION deltapipe._csv_split(line text, delim text DEFAULT ',', quote text DEFAULT '"',
                                                null_str text DEFAULT '')
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $fn$
-- Split one CSV record exactly as PostgreSQL's COPY (FORMAT csv) reads it (the
-- record may span lines). A quote character opens a quoted part anywhere in a
-- field, the next one closes it, and a doubled quote inside a quoted part is one
-- quote character: ' "a b"' is ' a b', 'x"y,z"w' is 'xy,zw', '"a""b"' is 'a"b'.
-- A field holding no quote character and equal to null_str is NULL; a field
-- with a quote never is. Returns NULL where COPY refuses the record: a quoted
-- part that is not closed, a carriage return outside quotes.
--
-- Called once per line holding the quote character (or a carriage return), so
-- it runs no SQL query and as few statements as it can. parts = the line split
-- on the quote character: odd parts lie outside quotes, even parts inside; an
-- empty odd part between two even ones is a doubled quote. The usual lines take
-- a shortcut: each quoted text is replaced by one quote character (a placeholder
-- no unquoted text holds), the result is split on the delimiter, and the field
-- holding the placeholder gets the quoted text in its place.
DECLARE
    parts text[] := string_to_array(line, quote);
    n     int := cardinality(parts);
    -- a field holding a placeholder can equal a null_str holding the quote character: no NULLs
    -- then (an unquoted field cannot hold it)
    nul   text := CASE WHEN quote <> '' AND strpos(null_str, quote) > 0 THEN NULL ELSE null_str END;
    fld   text;
    p     text;
    cur   text;
    curq  boolean;
    k     int;
    res   text[];
    pcs   text[];
BEGIN
    IF coalesce(n % 2, 0) = 0 THEN
        RETURN NULL;                        -- an odd number of quote characters: not closed
    END IF;
    IF n = 1 THEN                           -- no quote (a carriage return brought it here)
        RETURN CASE WHEN strpos(line, E'\r') = 0 THEN string_to_array(line, delim, nul) END;
    END IF;
    IF n = 3 THEN                           -- one quoted text: the usual case
        fld := parts[2];
    ELSIF left(line, 1) = quote AND right(line, 1) = quote THEN
        -- every field quoted and no quote inside one: "a","b",...,"z"
        res := string_to_array(substr(line, 2, length(line) - 2), quote || delim || quote);
        IF 2 * cardinality(res) = n - 1 THEN
            RETURN res;                     -- the pieces hold no quote
        END IF;
    END IF;
    IF fld IS NULL AND strpos(line, quote || quote) > 0 THEN
        -- one quoted text with doubled quotes inside: 1,"say ""hi""",3
        fld := array_to_string(parts[2:n - 1], quote);
        IF strpos(replace(fld, quote || quote, ''), quote) = 0 THEN
            fld := replace(fld, quote || quote, quote);
        ELSE
            fld := NULL;
        END IF;
    END IF;
    IF fld IS NOT NULL THEN
        p := parts[1] || quote || parts[n];
        IF strpos(p, E'\r') > 0 THEN
            RETURN NULL;                    -- a carriage return outside quotes
        END IF;
        res := string_to_array(p, delim, nul);
        k := length(parts[1]) - length(replace(parts[1], delim, '')) + 1;  -- the field holding the quoted text
        res[k] := replace(res[k], quote, fld);
        RETURN res;
    END IF;
    -- any other line: field by field
    res := '{}';
    cur := '';
    curq := false;
    FOR i IN 1..n LOOP
        p := parts[i];
        IF i % 2 = 0 THEN                   -- inside quotes
            cur := cur || p;
            curq := true;
        ELSIF p = '' THEN
            IF i > 1 AND i < n THEN         -- "" inside a quoted text
                cur := cur || quote;
            END IF;
        ELSIF strpos(p, E'\r') > 0 THEN
            RETURN NULL;                    -- a carriage return outside quotes
        ELSE
            pcs := string_to_array(p, delim);
            k := cardinality(pcs);
            IF k = 1 THEN
                cur := cur || p;
            ELSE
                cur := cur || pcs[1];
                res := res || CASE WHEN curq OR cur IS DISTINCT FROM nul THEN cur END;
                FOR j IN 2..k - 1 LOOP
                    res := res || CASE WHEN pcs[j] IS DISTINCT FROM nul THEN pcs[j] END;
                END LOOP;
                cur := pcs[k];
                curq := false;
            END IF;
        END IF;
    END LOOP;
    RETURN res || CASE WHEN curq OR cur IS DISTINCT FROM nul THEN cur END;
END
$fn$;

COMMENT ON FUNCTION deltapipe._csv_split(text, text, text, text) IS
  'Private: split one CSV record into fields as COPY (FORMAT csv) does; NULL where COPY refuses it (a quote not closed, a carriage return outside quotes).';
