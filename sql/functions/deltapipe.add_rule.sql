CREATE OR REPLACE FUNCTION deltapipe.add_rule(p_dataset text, p_name text, p_predicate text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Declare (or replace) a validation rule: a boolean SQL expression over one row
-- of the dataset, e.g. 'amount >= 0'. Rows for which it is false are rejected
-- with the rule's name as reason (NULL passes, as in a CHECK constraint). The
-- expression is checked against the dataset's columns now, not at load time.
DECLARE
    ds    deltapipe.dataset := deltapipe._dataset(p_dataset);
    probe text;
    rules jsonb;
BEGIN
    IF p_name IS NULL OR p_name !~ '^[A-Za-z_][A-Za-z0-9_-]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP020', MESSAGE = format('invalid rule name %L', p_name),
            HINT = 'use letters, digits, _ and -, starting with a letter or _';
    END IF;
    IF p_predicate IS NULL OR btrim(p_predicate) = '' OR p_predicate ~ ';' OR p_predicate ~* '\m(select|insert|update|delete|copy)\M' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP020', MESSAGE = format('rule %s: %L is not a row expression', p_name, p_predicate),
            HINT = 'a rule is one boolean expression over the columns, e.g. amount >= 0 (no ; and no subqueries)';
    END IF;
    probe := format('SELECT (%s)::boolean FROM (SELECT %s) AS r LIMIT 0', p_predicate,
                    (SELECT string_agg(format('NULL::%s AS %I', c->>'type', c->>'name'), ', ')
                     FROM jsonb_array_elements(ds.columns) c));
    BEGIN
        EXECUTE probe;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION USING ERRCODE = 'DP020', MESSAGE = format('rule %s: %s', p_name, SQLERRM),
            DETAIL = format('columns: %s', (SELECT string_agg(c->>'name', ', ') FROM jsonb_array_elements(ds.columns) c)),
            HINT = 'a rule is one boolean expression over the dataset''s columns, e.g. amount >= 0';
    END;
    rules := coalesce((SELECT jsonb_agg(r) FROM jsonb_array_elements(ds.options->'rules') r WHERE r->>'name' <> p_name), '[]')
             || jsonb_build_array(jsonb_build_object('name', p_name, 'predicate', p_predicate));
    -- the next load must read the file again even if it is the same file
    UPDATE deltapipe.dataset SET options = options || jsonb_build_object('rules', rules), last_file_sha256 = NULL
     WHERE name = ds.name;
    RETURN rules;
END
$fn$;

COMMENT ON FUNCTION deltapipe.add_rule(text, text, text) IS
  'Declare or replace a named validation rule (boolean row expression) on a dataset; failing rows are rejected with the rule name.';
