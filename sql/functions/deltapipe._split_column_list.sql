CREATE OR REPLACE FUNCTION deltapipe._split_column_list(spec text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
AS $fn$
-- Split 'id bigint, "a,b" text, amount numeric(10,2)' on the commas that separate
-- columns: not inside double quotes, not inside parentheses.
DECLARE
    out    text[] := '{}';
    cur    text := '';
    ch     text;
    quoted boolean := false;
    depth  int := 0;
BEGIN
    FOR i IN 1..coalesce(length(spec), 0) LOOP
        ch := substr(spec, i, 1);
        IF ch = '"' THEN
            quoted := NOT quoted;
        ELSIF NOT quoted AND ch = '(' THEN
            depth := depth + 1;
        ELSIF NOT quoted AND ch = ')' THEN
            depth := depth - 1;
        ELSIF NOT quoted AND depth = 0 AND ch = ',' THEN
            out := out || cur;
            cur := '';
            CONTINUE;
        END IF;
        cur := cur || ch;
    END LOOP;
    RETURN out || cur;
END
$fn$;

COMMENT ON FUNCTION deltapipe._split_column_list(text) IS
  'Private: split a column list on the commas outside double quotes and parentheses.';
