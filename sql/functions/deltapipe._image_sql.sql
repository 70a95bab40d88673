CREATE OR REPLACE FUNCTION deltapipe._image_sql(p_names text[], p_exprs text[], p_types text[])
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $fn$
-- The SQL expression of a row image (jsonb object: column name -> value) for the
-- changeset, from the columns p_names whose values are the SQL expressions
-- p_exprs, of the types p_types (format_type).
-- Columns of integer, numeric and text types are turned into one jsonb_object of
-- their text forms (the number 12.5 is stored as the string "12.5"): about half
-- the cost of jsonb_build_object, which looks up every value's type and output
-- function and parses every number again, per row. Their text forms do not
-- depend on any setting, and jsonb_populate_record reads them back as the same
-- values. Columns of any other type (dates, json, arrays, ...) keep
-- jsonb_build_object's image; both parts are joined with ||.
SELECT concat_ws(' || ',
         CASE WHEN count(*) FILTER (WHERE x.fast) > 0 THEN
             format('jsonb_object(ARRAY[%s]::text[], ARRAY[%s]::text[])',
                    string_agg(quote_literal(x.n), ', ' ORDER BY x.o) FILTER (WHERE x.fast),
                    string_agg(format('(%s)::text', x.e), ', ' ORDER BY x.o) FILTER (WHERE x.fast))
         END,
         (SELECT string_agg(format('jsonb_build_object(%s)', j.args), ' || ')
            FROM (SELECT string_agg(format('%L, %s', y.n, y.e), ', ' ORDER BY y.o) AS args
                    FROM unnest(p_names, p_exprs, p_types) WITH ORDINALITY y(n, e, t, o)
                   WHERE NOT (y.t ~ '^(smallint|integer|bigint|text|numeric(\(.*\))?|character varying(\(.*\))?)$')
                   GROUP BY (y.o - 1) / 50) j))
  FROM (SELECT u.n, u.e, u.o, u.t ~ '^(smallint|integer|bigint|text|numeric(\(.*\))?|character varying(\(.*\))?)$' AS fast
          FROM unnest(p_names, p_exprs, p_types) WITH ORDINALITY u(n, e, t, o)) x
$fn$;

COMMENT ON FUNCTION deltapipe._image_sql(text[], text[], text[]) IS
  'Private: SQL expression building a changeset row image (jsonb) from columns; numbers and text as their text forms in one jsonb_object.';
