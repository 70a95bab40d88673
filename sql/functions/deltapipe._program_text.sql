CREATE OR REPLACE FUNCTION deltapipe._program_text(p_text text, p_vars jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
AS $fn$
-- A refresh program's statement with its placeholders filled: each @@name@@ whose
-- name is a variable of p_vars becomes that variable's value (a JSON null: NULL),
-- in one pass, so a value is never read again for placeholders; any other text,
-- @@ included (a full-text search operator), stays as it is.
DECLARE
    res  text := '';
    rest text := p_text;
    p    int;
    e    int;
    name text;
BEGIN
    LOOP
        p := strpos(rest, '@@');
        EXIT WHEN p = 0;
        e := strpos(substr(rest, p + 2), '@@');
        EXIT WHEN e = 0;
        name := substr(rest, p + 2, e - 1);
        IF name ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND p_vars ? name THEN
            res := res || left(rest, p - 1) || coalesce(p_vars->>name, 'NULL');
            rest := substr(rest, p + e + 3);
        ELSE
            res := res || left(rest, p + 1);
            rest := substr(rest, p + 2);
        END IF;
    END LOOP;
    RETURN res || rest;
END
$fn$;

COMMENT ON FUNCTION deltapipe._program_text(text, jsonb) IS
  'Private: a refresh program''s statement with its @@name@@ placeholders replaced by the values of the variables.';
