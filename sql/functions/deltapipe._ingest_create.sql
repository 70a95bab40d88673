CREATE OR REPLACE FUNCTION deltapipe._ingest_create(p_ds deltapipe.dataset)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- ingest() step, the first rows of a dataset that was never loaded: create its
-- empty target table as a first load would leave it (the dataset's columns, the
-- row hash _dp_hash, the primary key on the dataset key, fillfactor 90, the
-- comment and SELECT for deltapipe_reader). Returns nothing.
DECLARE
    target text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
BEGIN
    EXECUTE format('CREATE TABLE %s (%s, _dp_hash bigint NOT NULL, CONSTRAINT %I PRIMARY KEY (%s)) WITH (fillfactor = 90)',
                   target,
                   (SELECT string_agg(format('%I %s', c->>'name', c->>'type'), ', ' ORDER BY o)
                      FROM jsonb_array_elements(p_ds.columns) WITH ORDINALITY x(c, o)),
                   left(p_ds.target_table, 58) || '_pkey',
                   (SELECT string_agg(format('%I', k), ', ') FROM unnest(p_ds.key_cols) k));
    EXECUTE format('COMMENT ON TABLE %s IS %L', target, format('deltapipe dataset %s', p_ds.name));
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deltapipe_reader') THEN
        EXECUTE format('GRANT SELECT ON %s TO deltapipe_reader', target);
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._ingest_create(deltapipe.dataset) IS
  'Private, ingest() step: create the empty target table of a dataset that was never loaded.';
