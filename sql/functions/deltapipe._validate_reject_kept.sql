CREATE OR REPLACE FUNCTION deltapipe._validate_reject_kept(p_ds deltapipe.dataset, p_options jsonb, p_src text,
                                                          p_typed text, p_sel text, p_why_keep text, p_rulecheck text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- validate() step 7: the rows the typed table p_typed holds with a reason
-- (_dp_why: wrong shape, a failed rule) or as suspects (chr(30), see
-- deltapipe._validate_cast) come out of it in one pass, with their raw line
-- (from p_src). Suspects are checked one by one (pg_temp._dp_check): the bad
-- ones get their reason, the others go back in, cast (p_sel with p_why_keep),
-- with the dataset's rules (p_rulecheck, NULL without rules) applied. The refused
-- rows go to deltapipe.reject (run_id, node_run_id and source_file from the
-- load's p_options). Returns the number of rows rejected.
DECLARE
    run_id   bigint := (p_options->>'run_id')::bigint;
    nr_id    bigint := (p_options->>'node_run_id')::bigint;
    src_file text := p_options->>'source_file';
    nbad     bigint;
BEGIN
    EXECUTE format('CREATE TEMP TABLE _dp_w ON COMMIT DROP AS
                    SELECT ctid AS tid, _dp_line, _dp_why, NULL::text AS _dp_raw FROM %s WHERE _dp_why IS NOT NULL', p_typed);
    GET DIAGNOSTICS nbad = ROW_COUNT;
    IF nbad > 0 THEN
        ANALYZE _dp_w;
        EXECUTE format('UPDATE _dp_w w SET _dp_raw = r._dp_raw FROM %s r WHERE r._dp_line = w._dp_line', p_src);
        EXECUTE format('DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT tid FROM _dp_w))', p_typed);
        UPDATE _dp_w SET _dp_why = (SELECT concat_ws(chr(31), split_part(e, chr(31), 2), split_part(e, chr(31), 1),
                                                     split_part(e, chr(31), 3))
                                    FROM (SELECT pg_temp._dp_check(_dp_raw) AS e) c WHERE e IS NOT NULL)
         WHERE _dp_why = chr(30);
        IF EXISTS (SELECT 1 FROM _dp_w WHERE _dp_why IS NULL) THEN
            -- suspects that cast after all: back in, with the rules applied
            EXECUTE format('INSERT INTO %s %s', p_typed,
                           replace(replace(p_sel, '/*WHY*/', p_why_keep), '/*EXCL*/',
                                   'AND r._dp_line IN (SELECT _dp_line FROM _dp_w WHERE _dp_why IS NULL)'));
            DELETE FROM _dp_w WHERE _dp_why IS NULL;
            IF p_rulecheck IS NOT NULL THEN
                EXECUTE format('INSERT INTO _dp_w SELECT NULL, w._dp_line, w._dp_why, r._dp_raw
                                FROM (SELECT _dp_line, _dp_why FROM %s WHERE _dp_why IS NOT NULL) w
                                JOIN %s r ON r._dp_line = w._dp_line', p_typed, p_src);
                EXECUTE format('DELETE FROM %s WHERE _dp_why IS NOT NULL', p_typed);
            END IF;
        END IF;
        INSERT INTO deltapipe.reject (run_id, node_run_id, dataset, source_file, line_no, raw_line, column_name, sqlstate, message)
        SELECT run_id, nr_id, p_ds.name, src_file, w._dp_line, w._dp_raw, nullif(split_part(w._dp_why, chr(31), 2), ''),
               split_part(w._dp_why, chr(31), 1), split_part(w._dp_why, chr(31), 3)
        FROM _dp_w w;
        GET DIAGNOSTICS nbad = ROW_COUNT;
    END IF;
    DROP TABLE _dp_w;
    RETURN nbad;
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_reject_kept(deltapipe.dataset, jsonb, text, text, text, text, text) IS
  'Private, validate() step: take the rows kept aside out of the typed table, recheck suspects one by one, reject the refused.';
