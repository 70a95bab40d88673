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
    bad_fn text;
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
    -- a rule runs for every row of every load: only functions without side effects
    EXECUTE 'CREATE TEMP VIEW _dp_rule_probe AS ' || probe;
    SELECT string_agg(DISTINCT p.oid::regprocedure::text, ', ') INTO bad_fn
      FROM pg_depend d
      JOIN pg_rewrite rw ON rw.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
      LEFT JOIN pg_operator o ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
      JOIN pg_proc p ON (d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid) OR p.oid = o.oprcode
     WHERE rw.ev_class = 'pg_temp._dp_rule_probe'::regclass AND p.provolatile = 'v';
    DROP VIEW pg_temp._dp_rule_probe;
    -- built-in functions leave no dependency: check every name called like a function
    SELECT coalesce(bad_fn || ', ', '') || string_agg(DISTINCT m[1], ', ') INTO bad_fn
      FROM regexp_matches(p_predicate, '([A-Za-z_][A-Za-z0-9_$]*)\s*\(', 'g') AS m
     WHERE EXISTS (SELECT 1 FROM pg_proc p WHERE p.proname = lower(m[1]) AND p.provolatile = 'v');
    IF bad_fn IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP020',
            MESSAGE = format('rule %s calls volatile function(s) %s', p_name, bad_fn),
            HINT = 'a rule may only use immutable or stable functions (it runs for every row of every load)';
    END IF;
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
