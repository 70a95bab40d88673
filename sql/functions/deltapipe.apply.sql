CREATE OR REPLACE FUNCTION deltapipe.apply(p_dataset text, p_staging text, p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- Load step 4: publish the net change. First load: build the target from the
-- typed rows (primary key on the dataset key). Later loads: MERGE only the delta
-- into the target, or, in snapshot mode when the delta is a large share of the
-- table, build a new table and swap it in by rename. Either way within the
-- caller's transaction, so readers see the old or the new state, never a mix.
-- Before-images of updated and deleted rows and after-images of inserted and
-- updated ones go to deltapipe.changeset, and the
-- dataset checksum (sum of row hashes) is kept up to date from the delta.
--
-- The steps, each a private routine deltapipe._apply_*:
--   create      first load: the typed rows become the target
--   changeset   the before- and after-images of the change
--   swap        a large snapshot change: a new table swapped in by rename
--   merge       otherwise: MERGE of the change
--   history     a dataset keeping history: the change written as versions
DECLARE
    ds        deltapipe.dataset := deltapipe._dataset(p_dataset);
    stg       text := deltapipe._staging(p_staging);
    mode      text := coalesce(p_options->>'mode', ds.mode);
    strategy  text := coalesce(p_options->>'strategy', 'auto');
    threshold numeric := coalesce((p_options->>'swap_threshold')::numeric, 0.25);
    run_id    bigint := (p_options->>'run_id')::bigint;
    typed     text := deltapipe._typed_table(ds, stg);
    delta     text := format('deltapipe_stage.%I', stg || '_d');
    target    text := format('%I.%I', ds.target_schema, ds.target_table);
    n_delta   bigint;
    n_rows    bigint;
    csum      numeric;
    dcsum     numeric;
    dcount    bigint;
    dependents int;
    dups      bigint := 0;
    hist      jsonb;
BEGIN
    IF to_regclass(target) IS NULL THEN
        strategy := 'create';
        SELECT c.dups, c.csum, c.n_rows INTO dups, csum, n_rows FROM deltapipe._apply_create(ds, typed, mode) c;
    ELSE
        EXECUTE format('SELECT count(*), coalesce(sum(CASE _dp_op WHEN %L THEN _dp_hash::numeric
                                                   WHEN %L THEN -_dp_old_hash::numeric
                                                   ELSE _dp_hash::numeric - _dp_old_hash::numeric END), 0),
                               count(*) FILTER (WHERE _dp_op = %L) - count(*) FILTER (WHERE _dp_op = %L)
                        FROM %s', 'I', 'D', 'I', 'D', delta) INTO n_delta, dcsum, dcount;
        IF run_id IS NOT NULL AND n_delta > 0 THEN
            PERFORM deltapipe._apply_changeset(ds, delta, run_id);
        END IF;
        SELECT count(*) INTO dependents FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
         WHERE d.refobjid = target::regclass AND d.classid = 'pg_rewrite'::regclass AND r.ev_class <> target::regclass;
        IF strategy = 'auto' THEN
            strategy := CASE WHEN mode IN ('snapshot', 'history') AND dependents = 0 AND n_delta > threshold * greatest(ds.row_count, 1)
                             THEN 'swap' ELSE 'merge' END;
        END IF;
        IF strategy = 'swap' AND (mode NOT IN ('snapshot', 'history') OR dependents > 0) THEN
            strategy := 'merge';
        END IF;
        IF n_delta = 0 THEN
            strategy := 'none';
        ELSIF strategy = 'swap' THEN
            PERFORM deltapipe._apply_swap(ds, stg, typed);
        ELSE
            PERFORM deltapipe._apply_merge(ds, delta);
        END IF;
        csum := ds.checksum + dcsum;
        n_rows := ds.row_count + dcount;
    END IF;
    -- the same change as versions, in the same transaction
    hist := deltapipe._history(ds, mode);
    IF hist IS NOT NULL AND (strategy <> 'none' OR NOT (hist->>'exists')::boolean) THEN
        hist := deltapipe._history_apply(ds, mode, CASE WHEN strategy <> 'create' THEN delta END, p_options);
    END IF;
    UPDATE deltapipe.dataset
       SET checksum = csum, row_count = n_rows, last_loaded_at = now(),
           last_file_sha256 = coalesce(p_options->>'file_sha256', last_file_sha256)
     WHERE name = ds.name;
    RETURN jsonb_build_object('strategy', strategy, 'checksum', csum, 'row_count', n_rows, 'duplicates', dups,
                              'history', hist);
END
$fn$;

COMMENT ON FUNCTION deltapipe.apply(text, text, jsonb) IS
  'Load step 4: publish the delta (MERGE, or build-and-swap for a first load or a large snapshot change), record before-images and the checksum.';
