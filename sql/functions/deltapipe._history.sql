CREATE OR REPLACE FUNCTION deltapipe._history(p_ds deltapipe.dataset, p_mode text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $fn$
-- Where dataset p_ds keeps the versions of its rows (history mode, SCD2), or
-- NULL when it keeps none: it does once a load in history mode (p_mode, else
-- the dataset's mode) created its history table (options.history: the run that
-- did), and from then on every load keeps that table up to date. Returns
-- {"schema", "table", "name" (quoted schema.table), "from", "to" (the
-- valid_from / valid_to column names), "exists"}. The names come from the
-- options history_table (default <target table>_history, in the target's
-- schema), valid_from_column and valid_to_column (defaults valid_from,
-- valid_to).
DECLARE
    o    jsonb := p_ds.options;
    name text[];
BEGIN
    IF coalesce(p_mode, p_ds.mode) <> 'history' AND NOT o ? 'history' THEN
        RETURN NULL;
    END IF;
    name := CASE WHEN o ? 'history_table' THEN parse_ident(o->>'history_table')
                 ELSE ARRAY[left(p_ds.target_table, 55) || '_history'] END;
    IF cardinality(name) = 1 THEN
        name := ARRAY[p_ds.target_schema, name[1]];
    END IF;
    RETURN jsonb_build_object('schema', name[1], 'table', name[2], 'name', format('%I.%I', name[1], name[2]),
                              'from', coalesce(o->>'valid_from_column', 'valid_from'),
                              'to', coalesce(o->>'valid_to_column', 'valid_to'),
                              'exists', to_regclass(format('%I.%I', name[1], name[2])) IS NOT NULL);
END
$fn$;

COMMENT ON FUNCTION deltapipe._history(deltapipe.dataset, text) IS
  'Private: the history table and valid_from / valid_to column names of a dataset in history mode, NULL without history.';
