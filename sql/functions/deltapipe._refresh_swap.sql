CREATE OR REPLACE FUNCTION deltapipe._refresh_swap(p_pipeline text, p_model text, p_target text, p_newt text,
                                                  p_schema text, p_table text, p_tmpname text, p_oldname text,
                                                  p_pkname text, p_keyed boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 3, strategy swap or rebuild (a new shape): under an
-- ACCESS EXCLUSIVE lock on the target p_target, its grants are given to the new
-- table p_newt, the columns deltapipe indexed on it for affected-key probes are
-- noted (deltapipe._probe_columns), the target is renamed to p_oldname (in
-- schema p_schema, a leftover of that name dropped first), the new table to
-- p_table, the old one dropped, and those indexes built again on the new one
-- (deltapipe._ensure_index). A keyed model's primary
-- key is renamed from <p_tmpname>_pkey to p_pkname; the table's comment names
-- the model p_pipeline.p_model. Readers see the old or the new table, never a
-- mix. Returns nothing.
DECLARE
    acl    record;
    probes text[];
BEGIN
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', p_target);
    FOR acl IN SELECT a.grantee, a.privilege_type
                 FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.oid = p_target::regclass AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT %s ON %s TO %s', acl.privilege_type, p_newt,
                       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(acl.grantee::regrole::text) END);
    END LOOP;
    probes := deltapipe._probe_columns(p_target::regclass);
    EXECUTE format('DROP TABLE IF EXISTS %I.%I', p_schema, p_oldname);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', p_target, p_oldname);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', p_newt, p_table);
    EXECUTE format('DROP TABLE %I.%I', p_schema, p_oldname);
    -- the indexes affected-key refreshes of downstream models probe, built again
    PERFORM deltapipe._ensure_index(p_target, c) FROM unnest(probes) c;
    IF p_keyed THEN
        PERFORM deltapipe._rename_primary_key(p_target, p_tmpname || '_pkey', p_pkname);
    END IF;
    EXECUTE format('COMMENT ON TABLE %s IS %L', p_target, format('deltapipe model %s.%s', p_pipeline, p_model));
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_swap(text, text, text, text, text, text, text, text, text, boolean) IS
  'Private, refresh_model() step: swap the new table in by rename, grants and probed indexes carried over.';
