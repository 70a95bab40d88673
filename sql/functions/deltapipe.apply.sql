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
DECLARE
    ds        deltapipe.dataset := deltapipe._dataset(p_dataset);
    stg       text := deltapipe._staging(p_staging);
    mode      text := coalesce(p_options->>'mode', ds.mode);
    strategy  text := coalesce(p_options->>'strategy', 'auto');
    threshold numeric := coalesce((p_options->>'swap_threshold')::numeric, 0.25);
    run_id    bigint := (p_options->>'run_id')::bigint;
    typed     text := deltapipe._typed_table(ds, stg);
    delta     text := format('deltapipe_stage.%I', stg || '_d');
    same      text := format('deltapipe_stage.%I', stg || '_s');
    target    text := format('%I.%I', ds.target_schema, ds.target_table);
    cols      text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(ds.columns) c);
    keys      text[] := ds.key_cols;
    collist   text := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
    klist     text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k);
    kjoin     text := (SELECT string_agg(format('s.%1$I = t.%1$I', k), ' AND ') FROM unnest(keys) k);
    tmpname   text := left(ds.target_table, 40) || '__dp_new';
    oldname   text := left(ds.target_table, 40) || '__dp_old';
    pkname    text := left(ds.target_table, 58) || '_pkey';
    n_delta   bigint;
    n_rows    bigint;
    csum      numeric;
    dcsum     numeric;
    dcount    bigint;
    acl       record;
    dependents int;
    dups      bigint := 0;
BEGIN
    IF to_regclass(target) IS NULL THEN
        strategy := 'create';
        -- validate() wrote the rows into the future table: keep only what belongs
        -- there and rename it. Duplicate keys surface as a unique violation of the
        -- new primary key; only then are they removed (the last line wins).
        IF mode = 'changes' THEN
            EXECUTE format('DELETE FROM %s WHERE _dp_op = %L', typed, 'D');
            EXECUTE format('ALTER TABLE %s DROP COLUMN _dp_op', typed);
        END IF;
        BEGIN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (%s)', typed, pkname, klist);
        EXCEPTION WHEN unique_violation THEN
            dups := deltapipe._dedup(typed, keys);
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (%s)', typed, pkname, klist);
        END;
        EXECUTE format('ALTER TABLE %s DROP COLUMN _dp_line, DROP COLUMN _dp_why, ALTER COLUMN _dp_hash SET NOT NULL', typed);
        EXECUTE format('ALTER TABLE %s RENAME TO %I', typed, ds.target_table);
        EXECUTE format('COMMENT ON TABLE %s IS %L', target, format('deltapipe dataset %s', ds.name));
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deltapipe_reader') THEN
            EXECUTE format('GRANT SELECT ON %s TO deltapipe_reader', target);
        END IF;
        -- no ANALYZE: building the primary key set the row count, autovacuum analyzes it after commit
        EXECUTE format('SELECT coalesce(sum(_dp_hash), 0), count(*) FROM %s', target) INTO csum, n_rows;
    ELSE
        EXECUTE format('SELECT count(*), coalesce(sum(CASE _dp_op WHEN %L THEN _dp_hash::numeric
                                                   WHEN %L THEN -_dp_old_hash::numeric
                                                   ELSE _dp_hash::numeric - _dp_old_hash::numeric END), 0),
                               count(*) FILTER (WHERE _dp_op = %L) - count(*) FILTER (WHERE _dp_op = %L)
                        FROM %s', 'I', 'D', 'I', 'D', delta) INTO n_delta, dcsum, dcount;
        IF run_id IS NOT NULL AND n_delta > 0 THEN
            -- the before-image of updates and deletes, the after-image of inserts and
            -- updates (an incremental refresh reads the new row here instead of
            -- looking it up in the target by key)
            EXECUTE format('INSERT INTO deltapipe.changeset (run_id, node, op, key, before, after)
                            SELECT %L, %L, s._dp_op, jsonb_build_object(%s), s._dp_before,
                                   CASE WHEN s._dp_op <> %L THEN %s END
                            FROM %s s WHERE s._dp_op <> %L',
                           run_id, ds.name,
                           (SELECT string_agg(format('%L, s.%I', k, k), ', ') FROM unnest(keys) k),
                           -- (jsonb_build_object takes at most 100 arguments: 50 columns a call)
                           'D', (SELECT string_agg(format('jsonb_build_object(%s)', q.p), ' || ')
                                   FROM (SELECT string_agg(format('%L, s.%I', u.c, u.c), ', ' ORDER BY u.i) AS p
                                           FROM unnest(cols) WITH ORDINALITY u(c, i) GROUP BY (u.i - 1) / 50) q),
                           delta, 'H');
        END IF;
        SELECT count(*) INTO dependents FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
         WHERE d.refobjid = target::regclass AND d.classid = 'pg_rewrite'::regclass AND r.ev_class <> target::regclass;
        IF strategy = 'auto' THEN
            strategy := CASE WHEN mode = 'snapshot' AND dependents = 0 AND n_delta > threshold * greatest(ds.row_count, 1)
                             THEN 'swap' ELSE 'merge' END;
        END IF;
        IF strategy = 'swap' AND (mode <> 'snapshot' OR dependents > 0) THEN
            strategy := 'merge';
        END IF;
        IF n_delta = 0 THEN
            strategy := 'none';
        ELSIF strategy = 'swap' THEN
            EXECUTE format('DROP TABLE IF EXISTS %I.%I', ds.target_schema, tmpname);
            -- the new table: the parsed rows plus the rows found unchanged by hash
            EXECUTE format('CREATE TABLE %I.%I WITH (fillfactor = 90) AS SELECT %s, _dp_hash FROM %s', ds.target_schema, tmpname, collist, typed);
            IF to_regclass(same) IS NOT NULL THEN
                -- hashed NOT IN: one pass over the target whatever the estimates say
                EXECUTE format('INSERT INTO %I.%I SELECT %s, t._dp_hash FROM %s t
                                WHERE t._dp_hash NOT IN (SELECT g._dp_h FROM %s g WHERE g._dp_line IS NULL AND g._dp_h IS NOT NULL)
                                  AND (%s) NOT IN (SELECT %s FROM %s s)',
                               ds.target_schema, tmpname,
                               (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c), target, same,
                               (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k),
                               (SELECT string_agg(format('s.%I', k), ', ') FROM unnest(keys) k), typed);
            END IF;
            EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I PRIMARY KEY (%s), ALTER COLUMN _dp_hash SET NOT NULL',
                           ds.target_schema, tmpname, tmpname || '_pkey', klist);
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', target);
            FOR acl IN SELECT a.grantee, a.privilege_type
                         FROM pg_class c, aclexplode(c.relacl) a
                        WHERE c.oid = target::regclass AND a.grantee <> c.relowner LOOP
                EXECUTE format('GRANT %s ON %I.%I TO %s', acl.privilege_type, ds.target_schema, tmpname,
                               CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(acl.grantee::regrole::text) END);
            END LOOP;
            EXECUTE format('ALTER TABLE %s RENAME TO %I', target, oldname);
            EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', ds.target_schema, tmpname, ds.target_table);
            EXECUTE format('DROP TABLE %I.%I', ds.target_schema, oldname);
            EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', target, tmpname || '_pkey', pkname);
            EXECUTE format('ANALYZE %s', target);
            EXECUTE format('COMMENT ON TABLE %s IS %L', target, format('deltapipe dataset %s', ds.name));
        ELSE
            EXECUTE format('MERGE INTO %s t USING %s s ON %s
                            WHEN MATCHED AND s._dp_op = %L THEN DELETE
                            WHEN MATCHED AND s._dp_op = %L THEN UPDATE SET _dp_hash = s._dp_hash
                            WHEN MATCHED THEN UPDATE SET %s
                            WHEN NOT MATCHED AND s._dp_op <> %L THEN INSERT (%s, _dp_hash) VALUES (%s, s._dp_hash)',
                           target, delta, kjoin, 'D', 'H',
                           (SELECT string_agg(format('%1$I = s.%1$I', c), ', ') FROM unnest(cols || '_dp_hash'::text) c
                             WHERE c <> ALL (keys)),
                           'D', collist,
                           (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c));
        END IF;
        csum := ds.checksum + dcsum;
        n_rows := ds.row_count + dcount;
    END IF;
    UPDATE deltapipe.dataset
       SET checksum = csum, row_count = n_rows, last_loaded_at = now(),
           last_file_sha256 = coalesce(p_options->>'file_sha256', last_file_sha256)
     WHERE name = ds.name;
    RETURN jsonb_build_object('strategy', strategy, 'checksum', csum, 'row_count', n_rows, 'duplicates', dups);
END
$fn$;

COMMENT ON FUNCTION deltapipe.apply(text, text, jsonb) IS
  'Load step 4: publish the delta (MERGE, or build-and-swap for a first load or a large snapshot change), record before-images and the checksum.';
