CREATE OR REPLACE FUNCTION deltapipe._model_log(p_pipeline text, p_model text, p_create boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- The change log of a model: the table deltapipe_log.<pipeline>__<model>_<hash>,
-- one row per changed row of a refresh:
--   _dp_seq  the refresh's position (one value of changeset's seq for all its rows),
--   _dp_run  the run, _dp_op I (inserted), U (updated), D (deleted),
--   then the logged columns as the new row (NULL for D), then the same columns as
--   the old row, named _dp_o1 .. _dp_o<n> (NULL for I).
-- The logged columns are every column of the model's table but _dp_hash (a keyed
-- model: rollback restores hidden state too), or its visible columns (keyless).
-- Returns the table's name, or NULL when it does not exist or no longer has the
-- table's columns; with p_create it is (re)created then (a model whose columns
-- changed was rebuilt: its old changes no longer apply).
DECLARE
    m     record;
    tbl   text;
    lname text;
    want  text[];
    have  text[];
    r     text;
BEGIN
    SELECT * INTO m FROM deltapipe.model WHERE pipeline = p_pipeline AND name = p_model;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    lname := format('%s__%s_%s', left(p_pipeline, 25), left(p_model, 25), left(md5(p_pipeline || '/' || p_model), 8));
    tbl := format('%I.%I', m.target_schema, m.target_table);
    IF to_regclass(tbl) IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(format('%I %s', c.n, c.t) ORDER BY c.o) || array_agg(format('%I %s', '_dp_o' || c.o, c.t) ORDER BY c.o)
      INTO want
      FROM (SELECT a.attname AS n, format_type(a.atttypid, a.atttypmod) AS t, row_number() OVER (ORDER BY a.attnum) AS o
              FROM pg_attribute a
             WHERE a.attrelid = tbl::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> '_dp_hash'
               AND (cardinality(m.key_cols) > 0 OR a.attname NOT LIKE '\_dp\_%')) c;
    IF to_regclass(format('deltapipe_log.%I', lname)) IS NOT NULL THEN
        have := ARRAY(SELECT format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                        FROM pg_attribute a
                       WHERE a.attrelid = format('deltapipe_log.%I', lname)::regclass AND a.attnum > 3 AND NOT a.attisdropped
                       ORDER BY a.attnum);
        IF have = want THEN
            RETURN format('deltapipe_log.%I', lname);
        ELSIF NOT p_create THEN
            RETURN NULL;
        END IF;
        EXECUTE format('DROP TABLE deltapipe_log.%I', lname);
    ELSIF NOT p_create THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE deltapipe_log.%I (_dp_seq bigint NOT NULL, _dp_run bigint NOT NULL, _dp_op "char" NOT NULL, %s)',
                   lname, array_to_string(want, ', '));
    -- rows are appended in position order: a block range index finds a range of
    -- positions or a run for almost nothing per row
    EXECUTE format('CREATE INDEX ON deltapipe_log.%I USING brin (_dp_seq, _dp_run) WITH (autosummarize = on)', lname);
    EXECUTE format('COMMENT ON TABLE deltapipe_log.%I IS %L', lname,
                   format('deltapipe: changes of model %s.%s (read them with deltapipe.changes(%L, %L))',
                          p_pipeline, p_model, p_pipeline, p_model));
    -- whoever creates it owns it: the roles get what they would have on the catalog
    FOREACH r IN ARRAY ARRAY['deltapipe_reader:SELECT', 'deltapipe_writer:SELECT, INSERT', 'deltapipe_admin:ALL'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = split_part(r, ':', 1)) THEN
            EXECUTE format('GRANT %s ON deltapipe_log.%I TO %I', split_part(r, ':', 2), lname, split_part(r, ':', 1));
        END IF;
    END LOOP;
    RETURN format('deltapipe_log.%I', lname);
END
$fn$;

COMMENT ON FUNCTION deltapipe._model_log(text, text, boolean) IS
  'Private: the change log table of a model (deltapipe_log), created or recreated for the model''s current columns when asked.';
