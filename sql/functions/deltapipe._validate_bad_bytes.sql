CREATE OR REPLACE FUNCTION deltapipe._validate_bad_bytes(p_ds deltapipe.dataset, p_src text, p_options jsonb)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- validate() step 0: records staged as bytes (_dp_bytes of the staging table
-- p_src, qualified name) because they are not valid text: deltapipe load puts
-- there a record holding a byte that is invalid in the file's encoding or a NUL
-- byte (COPY would refuse the whole file for it), each under the line number of
-- its first line. Each is read in the encoding of the load's p_options
-- (encoding, default UTF8): one that reads after all becomes a staged line
-- (_dp_raw); the others are rejected into deltapipe.reject with PostgreSQL's
-- own reason (22021 invalid byte sequence, 22P05 untranslatable character),
-- their bytes in raw_bytes, and raw_line showing them escaped (encode(...,
-- 'escape'): a NUL is \000). Returns the number of records rejected.
-- deltapipe load says how many records it staged as bytes (option bytes_lines,
-- with staged_lines): with none, the staging table is not read at all.
DECLARE
    enc   text := coalesce(nullif(p_options->>'encoding', ''), 'UTF8');
    r     record;
    txt   text;
    nbad  bigint := 0;
    state text;
    msg   text;
BEGIN
    IF p_options ? 'staged_lines' AND coalesce((p_options->>'bytes_lines')::bigint, 0) = 0 THEN
        RETURN 0;
    END IF;
    FOR r IN EXECUTE format('SELECT ctid AS tid, _dp_line, _dp_bytes FROM %s WHERE _dp_bytes IS NOT NULL ORDER BY _dp_line',
                            p_src) LOOP
        BEGIN
            txt := convert_from(r._dp_bytes, enc);
            EXECUTE format('UPDATE %s SET _dp_raw = $1, _dp_bytes = NULL WHERE ctid = $2', p_src) USING txt, r.tid;
        EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            INSERT INTO deltapipe.reject (run_id, node_run_id, dataset, source_file, line_no, raw_line, raw_bytes,
                                          column_name, sqlstate, message)
            VALUES ((p_options->>'run_id')::bigint, (p_options->>'node_run_id')::bigint, p_ds.name,
                    p_options->>'source_file', r._dp_line, encode(r._dp_bytes, 'escape'), r._dp_bytes, NULL, state, msg);
            nbad := nbad + 1;
        END;
    END LOOP;
    RETURN nbad;
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_bad_bytes(deltapipe.dataset, text, jsonb) IS
  'Private, validate() step: reject the records staged as bytes that are not valid text (with their raw bytes), stage the others as lines.';
