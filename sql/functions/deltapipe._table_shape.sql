CREATE OR REPLACE FUNCTION deltapipe._table_shape(p_table regclass)
RETURNS text
LANGUAGE sql STABLE
AS $fn$
-- Columns with types, then the primary key columns: equal shapes can be diffed and merged.
SELECT (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped)
       || ' | pk ' ||
       coalesce((SELECT string_agg(format('%I', a.attname), ', ' ORDER BY array_position(i.indkey::int2[], a.attnum))
                   FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = p_table AND i.indisprimary), '');
$fn$;

COMMENT ON FUNCTION deltapipe._table_shape(regclass) IS 'Private: a text signature of a table''s columns, types and primary key.';
