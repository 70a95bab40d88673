CREATE OR REPLACE FUNCTION deltapipe._validate_check_lines(p_ok boolean, p_ds deltapipe.dataset, p_stg text, p_options jsonb,
                                                          p_src text, p_fmt text, p_sfsrc text, p_bad text,
                                                          p_typed text, p_create_typed text, p_sel text, p_why_keep text,
                                                          OUT n_rows bigint, OUT n_badl bigint)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- validate() step 6: the last resort, when no try of deltapipe._validate_cast
-- succeeded (p_ok false: a line is not JSON, or a cheap test was wrong). Checks
-- every line to parse (of p_src; of the right shape, p_bad, unless ndjson) one
-- by one with pg_temp._dp_check, puts the refused lines aside (<staging>_b of
-- staging p_stg), builds the typed table p_typed without them (p_create_typed,
-- p_sel with p_why_keep) and rejects them into deltapipe.reject (run_id,
-- node_run_id and source_file from the load's p_options) with their raw line.
-- Returns the rows of the typed table it built (n_rows; NULL with p_ok) and the
-- number of lines it rejected (n_badl; 0 with p_ok, when there is nothing to do).
DECLARE
    run_id   bigint := (p_options->>'run_id')::bigint;
    nr_id    bigint := (p_options->>'node_run_id')::bigint;
    src_file text := p_options->>'source_file';
    badl     text := format('deltapipe_stage.%I', p_stg || '_b');
    susp     text := format('deltapipe_stage.%I', p_stg || '_q');
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %s, %s', badl, susp);
    EXECUTE format('CREATE UNLOGGED TABLE %s (_dp_line bigint, e text)', badl);
    IF NOT p_ok THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', p_typed);
        IF p_fmt = 'ndjson' THEN
            -- a line that is not JSON would fail any test reading its fields: check every line
            EXECUTE format('CREATE UNLOGGED TABLE %s AS SELECT _dp_line, _dp_raw FROM %s r WHERE r._dp_raw <> %L',
                           susp, p_src, '');
        ELSE
            EXECUTE format('CREATE UNLOGGED TABLE %s AS SELECT s._dp_line, r._dp_raw FROM (%s) s
                            JOIN %s r ON r._dp_line = s._dp_line WHERE NOT (%s)', susp, p_sfsrc, p_src, p_bad);
        END IF;
        EXECUTE format('INSERT INTO %s SELECT _dp_line, e FROM (SELECT _dp_line, pg_temp._dp_check(_dp_raw) AS e FROM %s) c
                        WHERE e IS NOT NULL', badl, susp);
        EXECUTE format('DROP TABLE %s', susp);
        EXECUTE format('ANALYZE %s', badl);
        EXECUTE p_create_typed
                || replace(replace(p_sel, '/*WHY*/', p_why_keep), '/*EXCL*/',
                           format('AND NOT EXISTS (SELECT 1 FROM %s b WHERE b._dp_line = r._dp_line)', badl));
        GET DIAGNOSTICS n_rows = ROW_COUNT;
        EXECUTE format($q$
            INSERT INTO deltapipe.reject (run_id, node_run_id, dataset, source_file, line_no, raw_line, column_name, sqlstate, message)
            SELECT %L::bigint, %L::bigint, %L, %L, b._dp_line, r._dp_raw,
                   nullif(split_part(e, chr(31), 1), ''), split_part(e, chr(31), 2),
                   CASE WHEN split_part(e, chr(31), 1) = '' THEN 'invalid JSON: ' ELSE '' END || split_part(e, chr(31), 3)
            FROM %s b JOIN %s r ON r._dp_line = b._dp_line$q$,
            run_id, nr_id, p_ds.name, src_file, badl, p_src);
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', badl) INTO n_badl;
    EXECUTE format('DROP TABLE %s', badl);
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_check_lines(boolean, deltapipe.dataset, text, jsonb, text, text, text, text, text, text, text, text) IS
  'Private, validate() step: the last resort, check every line one by one, reject the bad ones and build the typed table without them.';
