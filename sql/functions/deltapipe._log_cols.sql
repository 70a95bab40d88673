CREATE OR REPLACE FUNCTION deltapipe._log_cols(p_log text)
RETURNS text[]
LANGUAGE sql
STABLE
AS $fn$
-- The logged columns of a model's change log (deltapipe._model_log): after
-- _dp_seq, _dp_run and _dp_op come these columns (the new row), then as many
-- copies _dp_o1 .. _dp_o<n> (the old row).
SELECT c[1:cardinality(c) / 2]
  FROM (SELECT array_agg(a.attname::text ORDER BY a.attnum) AS c
          FROM pg_attribute a
         WHERE a.attrelid = p_log::regclass AND a.attnum > 3 AND NOT a.attisdropped) x
$fn$;

COMMENT ON FUNCTION deltapipe._log_cols(text) IS
  'Private: the columns a model''s change log keeps (its new-row columns, in order).';
