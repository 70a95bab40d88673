CREATE OR REPLACE FUNCTION deltapipe._fail(p_sqlstate text, p_message text)
RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL SAFE
AS $fn$
-- Raise an error from inside an expression (used by generated validation SQL).
-- PARALLEL SAFE: raising in a parallel worker is fine, and the statements using it
-- run their casts in parallel workers.
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message;
END
$fn$;

COMMENT ON FUNCTION deltapipe._fail(text, text) IS 'Private: raise p_message with p_sqlstate from an expression.';
