CREATE OR REPLACE FUNCTION deltapipe._apply_swap(p_ds deltapipe.dataset, p_stg text, p_typed text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- apply() step, strategy swap (snapshot mode, a large change): builds the new
-- table next to the target (<target>__dp_new, fillfactor 90): the parsed rows
-- of p_typed plus the target rows validate() found unchanged by hash (those not
-- "gone" in <staging>_s of staging p_stg, and under no key of p_typed), with
-- the primary key; then, under an ACCESS EXCLUSIVE lock, carries the target's
-- grants over, swaps the tables by rename, drops the old one and analyzes the
-- new. Readers see the old or the new table, never a mix. A distributed
-- (Citus) target gets a new table distributed and co-located with it before
-- it is filled. Returns nothing.
DECLARE
    same    text := format('deltapipe_stage.%I', p_stg || '_s');
    target  text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    cols    text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(p_ds.columns) c);
    keys    text[] := p_ds.key_cols;
    collist text := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
    klist   text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k);
    tmpname text := left(p_ds.target_table, 40) || '__dp_new';
    oldname text := left(p_ds.target_table, 40) || '__dp_old';
    pkname  text := left(p_ds.target_table, 58) || '_pkey';
    acl     record;
    probes  text[];
    dist    boolean := false;
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I.%I', p_ds.target_schema, tmpname);
    IF deltapipe._is_distributed(target::regclass) THEN
        -- a Citus table: the new table is distributed and co-located with the target before
        -- it is filled (a local table renamed over it would silently undistribute it)
        EXECUTE format('CREATE TABLE %I.%I WITH (fillfactor = 90) AS SELECT %s, _dp_hash FROM %s LIMIT 0',
                       p_ds.target_schema, tmpname, collist, p_typed);
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I PRIMARY KEY (%s), ALTER COLUMN _dp_hash SET NOT NULL',
                       p_ds.target_schema, tmpname, tmpname || '_pkey', klist);
        PERFORM deltapipe._distribute(format('%I.%I', p_ds.target_schema, tmpname), keys[1], target);
        EXECUTE format('INSERT INTO %I.%I SELECT %s, _dp_hash FROM %s', p_ds.target_schema, tmpname, collist, p_typed);
        dist := true;
    ELSE
        -- the new table: the parsed rows plus the rows found unchanged by hash
        EXECUTE format('CREATE TABLE %I.%I WITH (fillfactor = 90) AS SELECT %s, _dp_hash FROM %s', p_ds.target_schema, tmpname, collist, p_typed);
    END IF;
    IF to_regclass(same) IS NOT NULL THEN
        -- hashed NOT IN: one pass over the target whatever the estimates say
        EXECUTE format('INSERT INTO %I.%I SELECT %s, t._dp_hash FROM %s t
                        WHERE t._dp_hash NOT IN (SELECT g._dp_h FROM %s g WHERE g._dp_line IS NULL AND g._dp_h IS NOT NULL)
                          AND (%s) NOT IN (SELECT %s FROM %s s)',
                       p_ds.target_schema, tmpname,
                       (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c), target, same,
                       (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k),
                       (SELECT string_agg(format('s.%I', k), ', ') FROM unnest(keys) k), p_typed);
    END IF;
    IF NOT dist THEN
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I PRIMARY KEY (%s), ALTER COLUMN _dp_hash SET NOT NULL',
                       p_ds.target_schema, tmpname, tmpname || '_pkey', klist);
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', target);
    FOR acl IN SELECT a.grantee, a.privilege_type
                 FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.oid = target::regclass AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT %s ON %I.%I TO %s', acl.privilege_type, p_ds.target_schema, tmpname,
                       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(acl.grantee::regrole::text) END);
    END LOOP;
    probes := deltapipe._probe_columns(target::regclass);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', target, oldname);
    EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', p_ds.target_schema, tmpname, p_ds.target_table);
    EXECUTE format('DROP TABLE %I.%I', p_ds.target_schema, oldname);
    -- the indexes affected-key refreshes of models probe, built again on the new table
    PERFORM deltapipe._ensure_index(target, c) FROM unnest(probes) c;
    IF dist THEN
        -- (Citus renames a distributed table's constraint only through its index)
        EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', p_ds.target_schema, tmpname || '_pkey', pkname);
    ELSE
        EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', target, tmpname || '_pkey', pkname);
    END IF;
    EXECUTE format('ANALYZE %s', target);
    EXECUTE format('COMMENT ON TABLE %s IS %L', target, format('deltapipe dataset %s', p_ds.name));
END
$fn$;

COMMENT ON FUNCTION deltapipe._apply_swap(deltapipe.dataset, text, text) IS
  'Private, apply() step: build the new table (changed plus unchanged rows) and swap it in by rename, grants carried over.';
