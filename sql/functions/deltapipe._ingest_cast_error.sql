CREATE OR REPLACE FUNCTION deltapipe._ingest_cast_error(p_value text, p_type text, p_column text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- ingest() step, the slow check of one value whose cheap test
-- (deltapipe._safe_cast_test) was false: casts p_value to p_type in an
-- exception block. Returns NULL when the cast succeeds, else the reject reason
-- 'sqlstate chr(31) column chr(31) message' for column p_column. A value too
-- long for a length-limited type is refused (22001) instead of truncated, as
-- a load does.
DECLARE
    m text[] := regexp_match(p_type, '^(character varying|character|bit varying|bit)\((\d+)\)$');
BEGIN
    IF m IS NOT NULL AND char_length(p_value) > m[2]::int THEN
        RETURN concat_ws(chr(31), '22001', p_column, format('value too long for type %s', p_type));
    END IF;
    -- the type comes from the catalog (a normalized type name), the value is a literal
    EXECUTE format('SELECT %L::%s', p_value, p_type);
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN concat_ws(chr(31), SQLSTATE, p_column, SQLERRM);
END
$fn$;

COMMENT ON FUNCTION deltapipe._ingest_cast_error(text, text, text) IS
  'Private, ingest() step: cast one suspect value the slow way; NULL if it casts, else the reject reason.';
