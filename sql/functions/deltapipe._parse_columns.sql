CREATE OR REPLACE FUNCTION deltapipe._parse_columns(spec text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $fn$
-- "id bigint, name text, amount numeric(10,2)" -> [{"name": "id", "type": "bigint"}, ...]
-- Types are checked against the catalog and normalized with format_type().
DECLARE
    item   text;
    m      text[];
    col    text;
    typ    text;
    out    jsonb := '[]';
    seen   text[] := '{}';
BEGIN
    IF spec IS NULL OR btrim(spec) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP003', MESSAGE = 'no columns given',
            HINT = 'give columns as "name type, name type, ..."';
    END IF;
    FOR item IN SELECT btrim(x) FROM unnest(deltapipe._split_column_list(spec)) AS x LOOP
        m := regexp_match(item, '^("(?:[^"]|"")+"|[^\s"]+)\s+(.+)$');
        IF m IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'DP003', MESSAGE = format('bad column definition: %s', item),
                HINT = 'give columns as "name type, name type, ..."';
        END IF;
        col := CASE WHEN left(m[1], 1) = '"' THEN replace(substr(m[1], 2, length(m[1]) - 2), '""', '"') ELSE m[1] END;
        typ := deltapipe._normalize_type(m[2]);
        IF typ IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'DP003', MESSAGE = format('unknown type %s for column %s', m[2], col),
                HINT = 'use a PostgreSQL type such as bigint, text, numeric, timestamp, boolean, date';
        END IF;
        IF col = ANY (seen) THEN
            RAISE EXCEPTION USING ERRCODE = 'DP003', MESSAGE = format('column %s given twice', col);
        END IF;
        IF col LIKE '\_dp\_%' THEN
            RAISE EXCEPTION USING ERRCODE = 'DP003', MESSAGE = format('column name %s is reserved', col),
                HINT = 'names starting with _dp_ are used by deltapipe';
        END IF;
        seen := seen || col;
        out := out || jsonb_build_array(jsonb_build_object('name', col, 'type', typ));
    END LOOP;
    RETURN out;
END
$fn$;

COMMENT ON FUNCTION deltapipe._parse_columns(text) IS
  'Private: parse a column list "name type, ..." into jsonb, checking every type.';
