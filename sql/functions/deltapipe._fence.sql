CREATE OR REPLACE FUNCTION deltapipe._fence()
RETURNS int
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $fn$
-- An optimization fence that keeps parallel query: a subquery whose select list
-- calls a volatile function is not merged into the query around it, so an
-- expression it computes once per row (a split line, a refusal reason) is not
-- copied into every place that reads it. Unlike OFFSET 0, it lets the planner
-- run the subquery in parallel workers, and the call itself is inlined to a
-- constant afterwards, so it costs nothing per row.
SELECT 1
$fn$;

COMMENT ON FUNCTION deltapipe._fence() IS
  'Private: optimization fence for generated SQL (keeps a subquery unmerged, still parallel).';
