CREATE OR REPLACE FUNCTION deltapipe._refresh_inspect_target(p_target text, p_newt text,
                                                            OUT dependents int, OUT n_old bigint, OUT same boolean)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 2, when the target p_target exists: what the diff and the
-- choice of strategy need to know of it. Returns the number of views (rewrite
-- rules of other relations) that read it, its row count, and whether its shape
-- (deltapipe._table_shape: columns, types, primary key) is that of the new
-- table p_newt.
BEGIN
    SELECT count(*) INTO dependents FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
     WHERE d.refobjid = p_target::regclass AND d.classid = 'pg_rewrite'::regclass AND r.ev_class <> p_target::regclass;
    EXECUTE format('SELECT count(*) FROM %s', p_target) INTO n_old;
    same := deltapipe._table_shape(p_target::regclass) = deltapipe._table_shape(p_newt::regclass);
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_inspect_target(text, text) IS
  'Private, refresh_model() step: the views reading the current table, its row count, and whether its shape is the new table''s.';
