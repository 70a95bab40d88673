CREATE OR REPLACE FUNCTION deltapipe._hashes_by_value(p_type oid)
RETURNS boolean
LANGUAGE sql
STABLE
AS $fn$
-- Whether values of the type hash by value (equal values alike, as 1.0 and 1.00):
-- it has a default hash operator class, itself or through a binary-coercible cast
-- (varchar to text). Then = joins it by hash and hash_record_extended hashes it.
SELECT EXISTS (SELECT 1 FROM pg_opclass c JOIN pg_am am ON am.oid = c.opcmethod
                WHERE am.amname = 'hash' AND c.opcdefault
                  AND (c.opcintype = p_type
                       OR EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = p_type
                                     AND k.casttarget = c.opcintype AND k.castmethod = 'b')))
$fn$;

COMMENT ON FUNCTION deltapipe._hashes_by_value(oid) IS
  'Private: whether values of a type hash by value (a default hash operator class, possibly through a binary-coercible cast).';
