CREATE OR REPLACE FUNCTION deltapipe._diff_unchanged_dups(p_ds deltapipe.dataset, p_stg text, p_typed text, p_n_gone bigint,
                                                         OUT n_same bigint, OUT dups bigint)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- diff() step 2 (after step 1, deltapipe._diff_old_rows): duplicate keys between
-- the lines validate() found unchanged by hash and the rest. Reads the number of
-- matched lines and the hash seed from <staging>_n (of staging p_stg). Identical
-- lines that matched one target row several times count as duplicates (the
-- target has p_ds.row_count rows, p_n_gone of them matched by no line). A key
-- both unchanged on one line and changed on another (a row of the typed table
-- p_typed under the key of a not gone row of _dp_old): the later line wins.
-- When the changed line comes first, it is removed from p_typed; when the
-- unchanged one does, it no longer counts as unchanged. Returns the number of
-- unchanged lines (n_same) and of the duplicates found (dups).
DECLARE
    nstat text := format('deltapipe_stage.%I', p_stg || '_n');
    kjoin text := (SELECT string_agg(format('s.%1$I = t.%1$I', k), ' AND ') FROM unnest(p_ds.key_cols) k);
    seed  bigint;
    n     bigint := p_n_gone;  -- the target rows no line matched, when validate() joined
BEGIN
    dups := 0;
    EXECUTE format('SELECT matched, seed FROM %s', nstat) INTO n_same, seed;
    IF n_same > p_ds.row_count - n THEN
        -- identical lines matched one target row several times
        dups := dups + n_same - (p_ds.row_count - n);
        n_same := p_ds.row_count - n;
    END IF;
    -- a key both unchanged on one line and changed on another: the later line wins
    EXECUTE format('CREATE TEMP TABLE _dp_x ON COMMIT DROP AS
                    SELECT s._dp_line AS cline, t._dp_hash AS h
                    FROM %s s JOIN _dp_old t ON %s
                    WHERE NOT t._dp_gone', p_typed, kjoin);
    SELECT count(*) INTO n FROM _dp_x;
    IF n > 0 THEN
        EXECUTE format('CREATE TEMP TABLE _dp_x2 ON COMMIT DROP AS
                        SELECT x.cline, max(r._dp_line) AS uline
                        FROM _dp_x x JOIN deltapipe_stage.%I r ON hashtextextended(r._dp_raw, %s) = x.h
                        WHERE r._dp_line > 0 GROUP BY x.cline', p_stg, seed);
        -- the changed line comes first: it is the duplicate, the table row stays
        EXECUTE format('DELETE FROM %s s USING _dp_x2 x WHERE s._dp_line = x.cline AND x.uline > x.cline', p_typed);
        -- the unchanged line comes first: it is the duplicate, the changed row applies
        n_same := n_same - (SELECT count(*) FROM _dp_x2 WHERE cline > uline);
        dups := dups + n;
        DROP TABLE _dp_x2;
    END IF;
    DROP TABLE _dp_x;
END
$fn$;

COMMENT ON FUNCTION deltapipe._diff_unchanged_dups(deltapipe.dataset, text, text, bigint) IS
  'Private, diff() step: count the unchanged lines; duplicate keys between unchanged and changed lines (the later line wins).';
