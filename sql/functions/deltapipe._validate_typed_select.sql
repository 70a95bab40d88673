CREATE OR REPLACE FUNCTION deltapipe._validate_typed_select(p_ds deltapipe.dataset, p_sfsrc text, p_gexprs text,
                                                           p_colnames text, p_typed text, p_first_load boolean,
                                                           OUT sel text, OUT rulecheck text, OUT create_typed text)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- validate() step 4d: the statement of the typed rows. Takes the rows of fields
-- p_sfsrc (step 4a), the typed select list p_gexprs and its names p_colnames
-- (step 4c), the typed table p_typed and whether it becomes the target (first
-- load). Returns sel, the typed rows in one statement, run by parallel workers:
-- each subquery level calls deltapipe._fence() so that the planner keeps it (the
-- split and the reason are computed once per row) without the OFFSET 0 that
-- would keep the work out of the workers. /*WHY*/ in it is to be replaced by the
-- reason a row is refused before any cast (deltapipe._validate_shape); the casts
-- only run where it is NULL, and /*EXCL*/ (step 4a) leaves lines out. Also
-- rulecheck, the dataset's validation rules as a CASE giving the reason of the
-- first rule that is false ('DP120 chr(31) chr(31) rule <name> failed: ...';
-- NULL without rules), and create_typed, 'CREATE ... TABLE <typed> ... AS ' to
-- put before the statement. Runs nothing.
BEGIN
    -- Validation rules: a row for which one is false is rejected with the rule's name.
    SELECT 'CASE' || string_agg(format(' WHEN NOT coalesce((%s)::boolean, true) THEN %L', r->>'predicate',
                                       concat_ws(chr(31), 'DP120', '', format('rule %s failed: %s', r->>'name', r->>'predicate'))), '')
           || ' END'
      INTO rulecheck FROM jsonb_array_elements(p_ds.options->'rules') r;
    sel := format($q$
        SELECT _dp_line%1$s, _dp_hash, %3$s AS _dp_why
        FROM (SELECT _dp_line, _dp_hash, _dp_why%4$s, deltapipe._fence() AS _dp_1
              FROM (SELECT sf.*, /*WHY*/ AS _dp_why, deltapipe._fence() AS _dp_1
                    FROM (%5$s) sf) s1) y$q$,
        p_colnames, NULL, CASE WHEN rulecheck IS NULL THEN '_dp_why' ELSE format('coalesce(_dp_why, %s)', rulecheck) END,
        p_gexprs, p_sfsrc);
    -- a first load's typed rows become the target: room on each page (fillfactor 90) lets
    -- the next loads' updates stay on their page (HOT: no new index entry)
    create_typed := format('CREATE %s TABLE %s %s AS ', CASE WHEN p_first_load THEN '' ELSE 'UNLOGGED' END, p_typed,
                           CASE WHEN p_first_load THEN 'WITH (fillfactor = 90)' ELSE '' END);
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_typed_select(deltapipe.dataset, text, text, text, text, boolean) IS
  'Private, validate() step: the one statement that casts, checks and hashes the rows (with the dataset''s rules).';
