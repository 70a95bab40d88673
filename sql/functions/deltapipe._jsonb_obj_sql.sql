CREATE OR REPLACE FUNCTION deltapipe._jsonb_obj_sql(p_names text[], p_exprs text[])
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $fn$
-- The SQL expression of a jsonb object with keys p_names and the values of the SQL
-- expressions p_exprs: jsonb_build_object calls of at most 50 pairs (its limit
-- is 100 arguments) joined with ||.
SELECT coalesce(string_agg(format('jsonb_build_object(%s)', j.args), ' || ' ORDER BY j.g), '''{}''::jsonb')
  FROM (SELECT (u.o - 1) / 50 AS g, string_agg(format('%L, %s', u.n, u.e), ', ' ORDER BY u.o) AS args
          FROM unnest(p_names, p_exprs) WITH ORDINALITY u(n, e, o)
         GROUP BY 1) j
$fn$;

COMMENT ON FUNCTION deltapipe._jsonb_obj_sql(text[], text[]) IS
  'Private: SQL expression building a jsonb object from names and SQL expressions (any number of them).';
