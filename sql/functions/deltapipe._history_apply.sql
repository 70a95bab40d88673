CREATE OR REPLACE FUNCTION deltapipe._history_apply(p_ds deltapipe.dataset, p_mode text, p_delta text, p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- apply() step, after the target was published, for a dataset keeping history
-- (deltapipe._history): the same net change p_delta (<staging>_d) written as
-- versions into the history table. The first time (the load of run
-- options.run_id in history mode p_mode), the table is created from the target
-- as it now is, each row a current version; later, each U or D closes the
-- current version of its key (valid_to = the load's time) and each I or U
-- opens a new one (valid_from = that time, valid_to NULL); H and unchanged rows
-- write nothing. The load's time is option valid_at or the clock, and must be
-- later than that of every earlier load of the dataset (node_run.valid_at, set
-- here for node run options.node_run_id), so that rollback finds exactly the
-- versions a load opened and closed. A history out of step with the target
-- (a version to close missing, a second current version) raises DP027.
-- Returns {"table", "valid_at", "opened", "closed", "created"}.
DECLARE
    h       jsonb := deltapipe._history(p_ds, p_mode);
    target  text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    hist    text := h->>'name';
    vf      text := h->>'from';
    vt      text := h->>'to';
    keys    text[] := p_ds.key_cols;
    klist   text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(p_ds.key_cols) k);
    cols    text[];
    collist text;
    ts      timestamptz;
    last_ts timestamptz;
    n_open  bigint := 0;
    n_close bigint := 0;
    want    bigint;
    created boolean := false;
BEGIN
    SELECT max(valid_at) INTO last_ts FROM deltapipe.node_run WHERE node = p_ds.name AND node_kind = 'load';
    IF p_options ? 'valid_at' THEN
        ts := (p_options->>'valid_at')::timestamptz;
        IF ts <= last_ts THEN
            RAISE EXCEPTION USING ERRCODE = 'DP026',
                MESSAGE = format('valid_at %s is not later than the last load of %s (%s)', ts, p_ds.name, last_ts),
                HINT = 'versions are loaded in time order: give a later valid_at, or leave it out (the load''s time)';
        END IF;
    ELSE
        ts := greatest(clock_timestamp(), last_ts + interval '1 microsecond');
    END IF;
    SELECT array_agg(attname::text ORDER BY attnum) INTO cols FROM pg_attribute
     WHERE attrelid = target::regclass AND attnum > 0 AND NOT attisdropped AND attname <> '_dp_hash';
    collist := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
    IF NOT (h->>'exists')::boolean THEN
        IF p_mode <> 'history' THEN
            RETURN NULL;  -- the history table is gone (rollback of the load that made it): none is kept
        END IF;
        IF to_regclass(hist) IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'DP026',
                MESSAGE = format('table %s exists and is not the history table of dataset %s', hist, p_ds.name),
                HINT = format('name the history table otherwise: deltapipe dataset set %s --history-table NAME', p_ds.name);
        END IF;
        IF vf = ANY (cols) OR vt = ANY (cols) OR vf = vt THEN
            RAISE EXCEPTION USING ERRCODE = 'DP026',
                MESSAGE = format('dataset %s has a column named %s or %s: they cannot be the validity columns of its history',
                                 p_ds.name, vf, vt),
                HINT = format('name them otherwise: deltapipe dataset set %s --valid-from-column NAME --valid-to-column NAME', p_ds.name);
        END IF;
        -- the versions start here: every row of the target is a current version
        EXECUTE format('CREATE TABLE %s (%s, %I timestamptz NOT NULL, %I timestamptz,
                                         CONSTRAINT %I CHECK (%I > %I))',
                       hist,
                       (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
                          FROM pg_attribute a WHERE a.attrelid = target::regclass AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.attname <> '_dp_hash'),
                       vf, vt, left(h->>'table', 50) || '_valid', vt, vf);
        EXECUTE format('INSERT INTO %s (%s, %I) SELECT %s, %L FROM %s', hist, collist, vf, collist, ts, target);
        GET DIAGNOSTICS n_open = ROW_COUNT;
        -- at most one current version per key, whatever writes the table. No other index on the
        -- key: a version closed by a later load then enters no index on its key (a random page
        -- each), only the one on valid_to, whose new entries all go to its right end. Rollback
        -- finds the versions a load closed by that index, and those it opened by the first (a
        -- load can only be rolled back while they are current)
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I.%I (%s) WHERE %I IS NULL',
                       left(h->>'table', 52) || '_current', h->>'schema', h->>'table', klist, vt);
        EXECUTE format('CREATE INDEX %I ON %I.%I (%I) WHERE %I IS NOT NULL',
                       left(h->>'table', 52) || '_to', h->>'schema', h->>'table', vt, vt);
        -- the mark that this is the dataset's history table (deltapipe._history), and the run that began it
        EXECUTE format('COMMENT ON TABLE %s IS %L', hist,
                       format('deltapipe dataset %s: every version of its rows, since run %s', p_ds.name, p_options->>'run_id'));
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deltapipe_reader') THEN
            EXECUTE format('GRANT SELECT ON %s TO deltapipe_reader', hist);
        END IF;
        created := true;
    ELSIF p_delta IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP027',
            MESSAGE = format('the table of dataset %s was created again, but its history table %s is still there', p_ds.name, hist),
            HINT = 'rename or drop the history table (its versions no longer match the table), then load again';
    ELSE
        -- close the current version of each updated or deleted key, then open the new ones
        EXECUTE format('SELECT count(*) FILTER (WHERE _dp_op IN (%L, %L)) FROM %s', 'U', 'D', p_delta) INTO want;
        EXECUTE format('UPDATE %s h SET %I = %L FROM %s d WHERE d._dp_op IN (%L, %L) AND %s AND h.%I IS NULL',
                       hist, vt, ts, p_delta, 'U', 'D',
                       (SELECT string_agg(format('h.%1$I = d.%1$I', k), ' AND ') FROM unnest(keys) k), vt);
        GET DIAGNOSTICS n_close = ROW_COUNT;
        IF n_close <> want THEN
            RAISE EXCEPTION USING ERRCODE = 'DP027',
                MESSAGE = format('the history of dataset %s is out of step with its table: %s rows changed, %s current versions found',
                                 p_ds.name, want, n_close),
                DETAIL = format('history table %s', hist),
                HINT = 'a version was changed or removed by hand; restore it, or drop the history table and load in history mode again';
        END IF;
        BEGIN
            EXECUTE format('INSERT INTO %s (%s, %I) SELECT %s, %L FROM %s d WHERE d._dp_op IN (%L, %L)',
                           hist, collist, vf, (SELECT string_agg(format('d.%I', c), ', ') FROM unnest(cols) c), ts, p_delta, 'I', 'U');
            GET DIAGNOSTICS n_open = ROW_COUNT;
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION USING ERRCODE = 'DP027',
                MESSAGE = format('the history of dataset %s is out of step with its table: a new row already has a current version', p_ds.name),
                DETAIL = format('history table %s', hist),
                HINT = 'a version was added by hand; remove it, or drop the history table and load in history mode again';
        END;
    END IF;
    IF p_options ? 'node_run_id' THEN
        UPDATE deltapipe.node_run SET valid_at = ts WHERE id = (p_options->>'node_run_id')::bigint;
    END IF;
    RETURN jsonb_build_object('table', hist, 'valid_at', ts, 'opened', n_open, 'closed', n_close, 'created', created);
END
$fn$;

COMMENT ON FUNCTION deltapipe._history_apply(deltapipe.dataset, text, text, jsonb) IS
  'Private, apply() step: write the net change as versions (close the current, open the new) into the history table; create it on the first history load.';
