CREATE OR REPLACE FUNCTION deltapipe._refresh_lookup_index(p_newt text, p_cols text[], p_agg_spec jsonb, p_keyed boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 1, after the audits: the index by which later refreshes
-- find the rows of the new table p_newt (columns p_cols). An aggregate or
-- distinct table (a group hash column _dp_gh) is indexed on the values of its
-- group columns (the groups of p_agg_spec, by hash_record_extended) when every
-- one of their types hashes by value (deltapipe._hashes_by_value), else on
-- _dp_gh; a keyless table (not p_keyed) on its row hash. A keyed table gets
-- none here: its primary key (deltapipe._refresh_primary_key). Returns nothing.
BEGIN
    IF '_dp_gh' = ANY (p_cols) AND jsonb_array_length(coalesce(p_agg_spec->'groups', '[]')) > 0 AND NOT EXISTS (
           SELECT 1 FROM jsonb_array_elements(p_agg_spec->'groups') g
             JOIN pg_attribute a ON a.attrelid = p_newt::regclass AND a.attname = g->>'col'
            WHERE NOT deltapipe._hashes_by_value(a.atttypid)) THEN
        -- an incremental refresh finds a group by the values of its group columns (equal
        -- values, as 1.0 and 1.00, hash alike), not by the text of the group's key
        EXECUTE format('CREATE INDEX ON %s ((hash_record_extended(ROW(%s), 0)))', p_newt,
                       (SELECT string_agg(format('%I', g->>'col'), ', ' ORDER BY (g->>'g')::int)
                          FROM jsonb_array_elements(p_agg_spec->'groups') g));
    ELSIF '_dp_gh' = ANY (p_cols) THEN
        EXECUTE format('CREATE INDEX ON %s (_dp_gh)', p_newt);
    ELSIF NOT p_keyed THEN
        EXECUTE format('CREATE INDEX ON %s (_dp_hash)', p_newt);
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_lookup_index(text, text[], jsonb, boolean) IS
  'Private, refresh_model() step: index the new table for later refreshes (group values or group hash, or row hash when keyless).';
