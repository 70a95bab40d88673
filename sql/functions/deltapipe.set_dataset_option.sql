CREATE OR REPLACE FUNCTION deltapipe.set_dataset_option(p_dataset text, p_option text, p_value text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Per-dataset defaults: max_rejects ('10' rows or '2.5%' of the rows read);
-- for history mode, before its first history load, history_table (TABLE or
-- SCHEMA.TABLE; default <target table>_history), valid_from_column and
-- valid_to_column (defaults valid_from, valid_to); distributed ('true': the
-- target is a Citus table distributed by the first key column, created so by
-- the first load, or distributed now when it exists). NULL removes the option.
DECLARE
    ds    deltapipe.dataset := deltapipe._dataset(p_dataset);
    names text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(ds.columns) c);
    other text;
    tbl   text[];
BEGIN
    IF p_option IS NULL OR p_option NOT IN ('max_rejects', 'history_table', 'valid_from_column', 'valid_to_column',
                                            'distributed') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('unknown dataset option %s', p_option),
            HINT = 'known options: max_rejects, history_table, valid_from_column, valid_to_column, distributed';
    END IF;
    PERFORM 1 FROM deltapipe.dataset WHERE name = ds.name FOR UPDATE;
    IF p_option = 'distributed' THEN
        p_value := deltapipe._dataset_distributed(ds, p_value);
    ELSIF p_option = 'max_rejects' THEN
        PERFORM deltapipe._reject_limit(p_value, 1);
    ELSE
        IF (deltapipe._history(ds)->>'exists')::boolean THEN
            RAISE EXCEPTION USING ERRCODE = 'DP026',
                MESSAGE = format('dataset %s already keeps its history in %s: %s cannot change', ds.name,
                                 deltapipe._history(ds)->>'name', p_option),
                HINT = 'set the history options before the first load in history mode';
        END IF;
        IF p_option = 'history_table' AND p_value IS NOT NULL THEN
            BEGIN
                tbl := parse_ident(p_value);
            EXCEPTION WHEN others THEN
                tbl := NULL;
            END;
            IF cardinality(tbl) = 1 THEN
                tbl := ARRAY[ds.target_schema, tbl[1]];
            END IF;
            IF cardinality(tbl) IS DISTINCT FROM 2 THEN
                RAISE EXCEPTION USING ERRCODE = 'DP026', MESSAGE = format('invalid history table name %s', p_value),
                    HINT = 'give TABLE or SCHEMA.TABLE, quoting names with double quotes when needed';
            END IF;
            IF tbl[1] IN ('deltapipe', 'deltapipe_stage', 'deltapipe_log', 'pg_catalog', 'information_schema')
               OR tbl[1] LIKE 'pg\_%' OR (tbl[1], tbl[2]) = (ds.target_schema, ds.target_table)
               OR to_regclass(format('%I.%I', tbl[1], tbl[2])) IS NOT NULL
               OR EXISTS (SELECT 1 FROM deltapipe.dataset WHERE (target_schema, target_table) = (tbl[1], tbl[2])) THEN
                RAISE EXCEPTION USING ERRCODE = 'DP026',
                    MESSAGE = format('%I.%I cannot be the history table of dataset %s: it exists, is a dataset''s table or is in a reserved schema',
                                     tbl[1], tbl[2], ds.name),
                    HINT = 'choose another name';
            END IF;
            IF to_regnamespace(quote_ident(tbl[1])) IS NULL THEN
                EXECUTE format('CREATE SCHEMA %I', tbl[1]);
            END IF;
            p_value := format('%I.%I', tbl[1], tbl[2]);
        ELSIF p_value IS NOT NULL THEN
            other := coalesce(ds.options->>CASE p_option WHEN 'valid_from_column' THEN 'valid_to_column' ELSE 'valid_from_column' END,
                              CASE p_option WHEN 'valid_from_column' THEN 'valid_to' ELSE 'valid_from' END);
            IF p_value = '' OR length(p_value) > 63 OR p_value LIKE '\_dp\_%' OR p_value = ANY (names) OR p_value = other THEN
                RAISE EXCEPTION USING ERRCODE = 'DP026', MESSAGE = format('invalid %s %L', p_option, p_value),
                    DETAIL = format('it must be a new column name: not one of the dataset''s columns (%s), not %s, not starting with _dp_',
                                    array_to_string(names, ', '), other),
                    HINT = 'choose another name';
            END IF;
        END IF;
    END IF;
    UPDATE deltapipe.dataset
       SET options = CASE WHEN p_value IS NULL THEN options - p_option ELSE options || jsonb_build_object(p_option, p_value) END
     WHERE name = ds.name
    RETURNING options INTO ds.options;
    RETURN ds.options;
END
$fn$;

COMMENT ON FUNCTION deltapipe.set_dataset_option(text, text, text) IS
  'Set a per-dataset default (max_rejects: N rows or P% of the rows read; history_table, valid_from_column, valid_to_column for history mode); NULL removes it.';
