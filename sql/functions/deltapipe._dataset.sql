CREATE OR REPLACE FUNCTION deltapipe._dataset(p_name text)
RETURNS deltapipe.dataset
LANGUAGE plpgsql STABLE
AS $fn$
-- The catalog row of a dataset, or DP001.
DECLARE
    ds deltapipe.dataset;
BEGIN
    SELECT * INTO ds FROM deltapipe.dataset WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DP001', MESSAGE = format('unknown dataset %s', p_name),
            HINT = 'create it with `deltapipe dataset create` or deltapipe.create_dataset(); list them with `deltapipe dataset list`';
    END IF;
    RETURN ds;
END
$fn$;

COMMENT ON FUNCTION deltapipe._dataset(text) IS 'Private: catalog row of a dataset, DP001 when unknown.';
