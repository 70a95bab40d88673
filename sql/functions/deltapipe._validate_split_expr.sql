CREATE OR REPLACE FUNCTION deltapipe._validate_split_expr(p_fmt text, p_delim text, p_quote text, p_nul text,
                                                         p_cols text[], p_mode text, p_op_col text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- validate() step 2a: the SQL expression that splits one staged line into its
-- fields, a text[]: over r._dp_raw for csv/tsv (string_to_array, or
-- deltapipe._csv_split, as COPY (FORMAT csv) reads it, for a line
-- with quotes or a carriage return), over j (the line as jsonb) for
-- ndjson, where the fields are the values of the dataset's columns p_cols (and
-- of the op column p_op_col in changes mode), NULL when the line is no object.
-- Takes the read options; returns the expression. Runs nothing.
BEGIN
    IF p_fmt = 'ndjson' THEN
        RETURN format('CASE WHEN jsonb_typeof(j) = %L THEN ARRAY[%s] END', 'object',
                      (SELECT string_agg(format('j->>%L', c), ', ' ORDER BY o)
                       FROM unnest(p_cols || CASE WHEN p_mode = 'changes' THEN ARRAY[p_op_col] ELSE '{}' END)
                            WITH ORDINALITY u(c, o)));
    ELSIF p_quote = '' THEN
        RETURN format('string_to_array(r._dp_raw, %L, %L)', p_delim, p_nul);
    ELSE
        -- a carriage return outside quotes ends a record for COPY (which then refuses it): such
        -- lines go to deltapipe._csv_split too, which refuses them
        RETURN format('CASE WHEN strpos(r._dp_raw, %1$L) = 0 AND strpos(r._dp_raw, %4$L) = 0
                                  THEN string_to_array(r._dp_raw, %2$L, %3$L)
                                  ELSE deltapipe._csv_split(r._dp_raw, %2$L, %1$L, %3$L) END', p_quote, p_delim, p_nul, E'\r');
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_split_expr(text, text, text, text, text[], text, text) IS
  'Private, validate() step: the SQL expression splitting a staged line into its fields (csv/tsv or ndjson).';
