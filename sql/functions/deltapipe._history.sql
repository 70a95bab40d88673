CREATE OR REPLACE FUNCTION deltapipe._history(p_ds deltapipe.dataset, p_mode text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $fn$
-- Where dataset p_ds keeps the versions of its rows (history mode, SCD2), or
-- NULL when it keeps none: it does in history mode (p_mode, else the dataset's
-- mode), and once a load in that mode created its history table, every load
-- keeps that table up to date, in any mode. The table says so itself: its
-- comment, set when it was created, names the dataset and the run that began
-- the history (a table of that name not made by deltapipe for this dataset is
-- not one). Returns {"schema", "table", "name" (quoted schema.table), "from",
-- "to" (the valid_from / valid_to column names), "exists", "since_run"}. The
-- names come from the options history_table (default <target table>_history,
-- in the target's schema), valid_from_column and valid_to_column (defaults
-- valid_from, valid_to).
DECLARE
    o     jsonb := p_ds.options;
    name  text[];
    rel   regclass;
    note  text;
    since text;
BEGIN
    name := CASE WHEN o ? 'history_table' THEN parse_ident(o->>'history_table')
                 ELSE ARRAY[left(p_ds.target_table, 55) || '_history'] END;
    IF cardinality(name) = 1 THEN
        name := ARRAY[p_ds.target_schema, name[1]];
    END IF;
    rel := to_regclass(format('%I.%I', name[1], name[2]));
    IF rel IS NOT NULL THEN
        note := obj_description(rel, 'pg_class');
        IF starts_with(coalesce(note, ''), format('deltapipe dataset %s: every version of its rows', p_ds.name)) THEN
            since := substring(note FROM 'since run ([0-9]+)');
        ELSE
            rel := NULL;  -- someone else's table
        END IF;
    END IF;
    IF coalesce(p_mode, p_ds.mode) <> 'history' AND rel IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('schema', name[1], 'table', name[2], 'name', format('%I.%I', name[1], name[2]),
                              'from', coalesce(o->>'valid_from_column', 'valid_from'),
                              'to', coalesce(o->>'valid_to_column', 'valid_to'),
                              'exists', rel IS NOT NULL, 'since_run', since::bigint);
END
$fn$;

COMMENT ON FUNCTION deltapipe._history(deltapipe.dataset, text) IS
  'Private: the history table and valid_from / valid_to column names of a dataset in history mode, NULL without history.';
