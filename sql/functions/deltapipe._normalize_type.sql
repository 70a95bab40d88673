CREATE OR REPLACE FUNCTION deltapipe._normalize_type(type_text text)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $fn$
-- Canonical spelling of a type, typmod included: 'int8' -> 'bigint',
-- 'varchar(10)' -> 'character varying(10)'. NULL when it is not a type.
DECLARE
    result text;
BEGIN
    IF type_text ~ '[;]' THEN
        RETURN NULL;
    END IF;
    -- to_regtype() accepts only a type name (typmod aside), so the text is safe to
    -- splice; a probe column then gives the typmod-aware canonical spelling.
    IF to_regtype(type_text) IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS _dp_typeprobe (v %s) ON COMMIT DROP', type_text);
    SELECT format_type(a.atttypid, a.atttypmod) INTO result
      FROM pg_attribute a WHERE a.attrelid = 'pg_temp._dp_typeprobe'::regclass AND a.attname = 'v';
    DROP TABLE pg_temp._dp_typeprobe;
    RETURN result;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION deltapipe._normalize_type(text) IS
  'Private: canonical name of a type (typmod included), NULL if the text is not a type.';
