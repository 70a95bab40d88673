CREATE OR REPLACE FUNCTION deltapipe._pipeline(p_name text)
RETURNS text
LANGUAGE plpgsql STABLE
AS $fn$
-- The name of deployed pipeline p_name, or error DP201.
BEGIN
    IF NOT EXISTS (SELECT 1 FROM deltapipe.pipeline WHERE name = p_name) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP201', MESSAGE = format('unknown pipeline %s', p_name),
            DETAIL = 'no pipeline of that name has been deployed in this database',
            HINT = 'deploy it with `deltapipe deploy DIR`';
    END IF;
    RETURN p_name;
END
$fn$;

COMMENT ON FUNCTION deltapipe._pipeline(text) IS 'Private: the name of a deployed pipeline, or error DP201.';
