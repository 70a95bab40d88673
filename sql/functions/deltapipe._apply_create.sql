CREATE OR REPLACE FUNCTION deltapipe._apply_create(p_ds deltapipe.dataset, p_typed text, p_mode text,
                                                  OUT dups bigint, OUT csum numeric, OUT n_rows bigint)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- apply() step, first load: validate() wrote the rows into the future table
-- p_typed (<target>__dp_load): keep only what belongs there (in changes mode
-- p_mode, not the deletes nor the op column) and rename it to the target, with
-- the primary key on the dataset key, a comment and SELECT for
-- deltapipe_reader; a dataset with option distributed then becomes a Citus
-- table distributed by its first key column. Duplicate keys surface as a unique violation of the new
-- primary key; only then are they removed (the last line wins). Returns the
-- number of duplicates removed, the checksum (sum of row hashes) and row count
-- of the new table.
DECLARE
    target text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    keys   text[] := p_ds.key_cols;
    klist  text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k);
    pkname text := left(p_ds.target_table, 58) || '_pkey';
BEGIN
    dups := 0;
    IF p_mode = 'changes' THEN
        EXECUTE format('DELETE FROM %s WHERE _dp_op = %L', p_typed, 'D');
        EXECUTE format('ALTER TABLE %s DROP COLUMN _dp_op', p_typed);
    END IF;
    BEGIN
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (%s)', p_typed, pkname, klist);
    EXCEPTION WHEN unique_violation THEN
        dups := deltapipe._dedup(p_typed, keys);
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (%s)', p_typed, pkname, klist);
    END;
    EXECUTE format('ALTER TABLE %s DROP COLUMN _dp_line, DROP COLUMN _dp_why, ALTER COLUMN _dp_hash SET NOT NULL', p_typed);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', p_typed, p_ds.target_table);
    EXECUTE format('COMMENT ON TABLE %s IS %L', target, format('deltapipe dataset %s', p_ds.name));
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deltapipe_reader') THEN
        EXECUTE format('GRANT SELECT ON %s TO deltapipe_reader', target);
    END IF;
    IF coalesce((p_ds.options->>'distributed')::boolean, false) THEN
        PERFORM deltapipe._distribute(target, keys[1]);
    END IF;
    -- no ANALYZE: building the primary key set the row count, autovacuum analyzes it after commit
    EXECUTE format('SELECT coalesce(sum(_dp_hash), 0), count(*) FROM %s', target) INTO csum, n_rows;
END
$fn$;

COMMENT ON FUNCTION deltapipe._apply_create(deltapipe.dataset, text, text) IS
  'Private, apply() step: a first load turns the typed rows into the target (rename, primary key, grants).';
