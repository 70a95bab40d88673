CREATE OR REPLACE FUNCTION deltapipe._validate_field_rows(p_fmt text, p_fexpr text, p_src text, p_hdr_line bigint,
                                                         p_seed bigint, p_pos int[], p_op_pos int, p_mode text,
                                                         OUT sfsrc text, OUT fdecls text, OUT fassign text)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- validate() step 4a: the lines to parse as rows of fields. Takes the read format
-- p_fmt, the split expression p_fexpr (step 2a), the table of the lines p_src
-- (step 3), the header line p_hdr_line, the hash seed p_seed and the field
-- positions of the columns p_pos and of the op column p_op_pos (step 2b).
-- Returns the query sfsrc: one row per line (_dp_line, the row hash _dp_hash,
-- the number of fields _dp_n and each field used once out of the array,
-- _dp_f<k>: subscripts are not free), split once per line (deltapipe._fence():
-- see the typed rows statement), with a placeholder /*EXCL*/ to leave lines
-- out; and the same fields as PL/pgSQL declarations (fdecls) and assignments
-- from f (fassign), for the row checker. Runs nothing.
DECLARE
    fsrc text;
BEGIN
    IF p_fmt = 'ndjson' THEN
        fsrc := format('SELECT _dp_line, hashtextextended(_dp_raw, %s) AS _dp_hash, %s AS f, deltapipe._fence() AS _dp_0
                        FROM (SELECT r._dp_line, r._dp_raw, r._dp_raw::jsonb AS j, deltapipe._fence() AS _dp_0
                              FROM %s r WHERE r._dp_raw <> %L /*EXCL*/) r', p_seed, p_fexpr, p_src, '');
    ELSE
        fsrc := format('SELECT r._dp_line, hashtextextended(r._dp_raw, %s) AS _dp_hash, %s AS f, deltapipe._fence() AS _dp_0
                        FROM %s r WHERE r._dp_line > %s AND r._dp_raw <> %L /*EXCL*/', p_seed, p_fexpr, p_src, p_hdr_line, '');
    END IF;
    sfsrc := format('SELECT _dp_line, _dp_hash, cardinality(f) AS _dp_n%s, deltapipe._fence() AS _dp_2 FROM (%s) s0',
                    (SELECT string_agg(format(', f[%s] AS _dp_f%s', k, k), '' ORDER BY k)
                     FROM (SELECT DISTINCT k FROM unnest(p_pos || CASE WHEN p_mode = 'changes' THEN ARRAY[p_op_pos] END) k
                           WHERE k IS NOT NULL) u),
                    fsrc);
    fdecls := (SELECT string_agg(format('_dp_f%s text; ', k), '' ORDER BY k)
               FROM (SELECT DISTINCT k FROM unnest(p_pos || CASE WHEN p_mode = 'changes' THEN ARRAY[p_op_pos] END) k
                     WHERE k IS NOT NULL) u);
    fassign := (SELECT string_agg(format('_dp_f%s := f[%s]; ', k, k), '' ORDER BY k)
                FROM (SELECT DISTINCT k FROM unnest(p_pos || CASE WHEN p_mode = 'changes' THEN ARRAY[p_op_pos] END) k
                      WHERE k IS NOT NULL) u);
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_field_rows(text, text, text, bigint, bigint, int[], int, text) IS
  'Private, validate() step: the query splitting the lines to parse into rows of fields (_dp_n, _dp_f<k>), and the same fields for the row checker.';
