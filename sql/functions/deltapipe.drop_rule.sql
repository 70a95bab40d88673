CREATE OR REPLACE FUNCTION deltapipe.drop_rule(p_dataset text, p_name text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    ds    deltapipe.dataset := deltapipe._dataset(p_dataset);
    rules jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(ds.options->'rules') r WHERE r->>'name' = p_name) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP020', MESSAGE = format('dataset %s has no rule %s', ds.name, p_name),
            HINT = 'list them with `deltapipe dataset rule list`';
    END IF;
    rules := coalesce((SELECT jsonb_agg(r) FROM jsonb_array_elements(ds.options->'rules') r WHERE r->>'name' <> p_name), '[]');
    -- the next load must read the file again even if it is the same file
    UPDATE deltapipe.dataset SET options = options || jsonb_build_object('rules', rules), last_file_sha256 = NULL
     WHERE name = ds.name;
    RETURN rules;
END
$fn$;

COMMENT ON FUNCTION deltapipe.drop_rule(text, text) IS 'Remove a validation rule from a dataset.';
