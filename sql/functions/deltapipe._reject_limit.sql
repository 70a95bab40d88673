CREATE OR REPLACE FUNCTION deltapipe._reject_limit(p_limit text, p_rows bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
AS $fn$
-- Number of rejects allowed for p_rows rows read: '10' -> 10, '2.5%' -> 2.5% of the rows.
-- NULL when there is no limit; DP006 when the text is not a limit.
DECLARE
    m text[];
BEGIN
    IF p_limit IS NULL OR btrim(p_limit) = '' THEN
        RETURN NULL;
    END IF;
    m := regexp_match(btrim(p_limit), '^(\d+(?:\.\d+)?)(%?)$');
    IF m IS NULL OR (m[2] = '' AND m[1] ~ '\.') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('invalid reject limit %L', p_limit),
            HINT = 'give a number of rows (10) or a share of the rows read (2.5%)';
    END IF;
    IF m[2] = '%' THEN
        RETURN floor(m[1]::numeric * p_rows / 100);
    END IF;
    RETURN m[1]::bigint;
END
$fn$;

COMMENT ON FUNCTION deltapipe._reject_limit(text, bigint) IS 'Private: rejects allowed by a limit like 10 or 2.5% for a number of rows.';
