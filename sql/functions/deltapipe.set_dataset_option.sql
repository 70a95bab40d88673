CREATE OR REPLACE FUNCTION deltapipe.set_dataset_option(p_dataset text, p_option text, p_value text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Per-dataset defaults. Today: max_rejects ('10' rows or '2.5%' of the rows read;
-- NULL removes the limit).
DECLARE
    ds deltapipe.dataset := deltapipe._dataset(p_dataset);
BEGIN
    IF p_option <> 'max_rejects' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('unknown dataset option %s', p_option),
            HINT = 'known options: max_rejects';
    END IF;
    PERFORM deltapipe._reject_limit(p_value, 1);
    UPDATE deltapipe.dataset
       SET options = CASE WHEN p_value IS NULL THEN options - p_option ELSE options || jsonb_build_object(p_option, p_value) END
     WHERE name = ds.name
    RETURNING options INTO ds.options;
    RETURN ds.options;
END
$fn$;

COMMENT ON FUNCTION deltapipe.set_dataset_option(text, text, text) IS
  'Set a per-dataset default (max_rejects: N rows or P% of the rows read); NULL removes it.';
