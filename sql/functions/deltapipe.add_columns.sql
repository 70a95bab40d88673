CREATE OR REPLACE FUNCTION deltapipe.add_columns(p_dataset text, p_columns text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Add columns ("name type, ...") to a dataset and its target table. Columns it
-- already has with the same type are ignored; a different type is refused.
-- Existing rows get NULL until the next load re-reads them (the row hashes
-- depend on the columns, so every line of that load is parsed again).
DECLARE
    ds     deltapipe.dataset := deltapipe._dataset(p_dataset);
    new    jsonb := deltapipe._parse_columns(p_columns);
    c      jsonb;
    old    jsonb;
    added  jsonb := '[]';
    target text := format('%I.%I', ds.target_schema, ds.target_table);
    h      jsonb := deltapipe._history(ds);
BEGIN
    PERFORM 1 FROM deltapipe.dataset WHERE name = ds.name FOR UPDATE;
    FOR c IN SELECT * FROM jsonb_array_elements(new) LOOP
        SELECT x INTO old FROM jsonb_array_elements(ds.columns) x WHERE x->>'name' = c->>'name';
        IF old IS NOT NULL THEN
            IF old->>'type' <> c->>'type' THEN
                RAISE EXCEPTION USING ERRCODE = 'DP022',
                    MESSAGE = format('column %s of dataset %s is %s, not %s: changing a column''s type is not supported',
                                     c->>'name', ds.name, old->>'type', c->>'type'),
                    HINT = 'load into a new dataset, or drop and recreate this one';
            END IF;
            CONTINUE;
        END IF;
        added := added || jsonb_build_array(c);
        IF to_regclass(target) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', target, c->>'name', c->>'type');
        END IF;
        IF h IS NOT NULL AND (h->>'exists')::boolean THEN
            -- every version (history mode): NULL in the versions before
            IF c->>'name' IN (h->>'from', h->>'to') THEN
                RAISE EXCEPTION USING ERRCODE = 'DP026',
                    MESSAGE = format('column %s is a column of the history table %s of dataset %s', c->>'name', h->>'name', ds.name),
                    HINT = 'choose another column name';
            END IF;
            EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', h->>'name', c->>'name', c->>'type');
        END IF;
    END LOOP;
    IF jsonb_array_length(added) > 0 THEN
        UPDATE deltapipe.dataset SET columns = columns || added, last_file_sha256 = NULL WHERE name = ds.name;
    END IF;
    RETURN added;
END
$fn$;

COMMENT ON FUNCTION deltapipe.add_columns(text, text) IS
  'Add columns to a dataset and its table (schema change); a type change of an existing column is refused (DP022).';
