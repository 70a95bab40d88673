CREATE OR REPLACE FUNCTION deltapipe._node_inputs(p_pipeline text, p_model text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- The input checksums of a model: for each upstream, its current checksum.
-- Sources and models keep a checksum (a captured table: its epoch, writes and last
-- captured change) (sum of row hashes) in the catalog; an
-- external table is hashed here (row count and sum of row hashes).
DECLARE
    e   record;
    out jsonb := '{}';
    v   text;
    rel text[];
BEGIN
    FOR e IN SELECT upstream, upstream_kind FROM deltapipe.model_edge
              WHERE pipeline = p_pipeline AND node = p_model ORDER BY upstream LOOP
        IF e.upstream_kind = 'source' THEN
            SELECT format('%s:%s', d.row_count, d.checksum) INTO v FROM deltapipe.dataset d WHERE d.name = e.upstream;
            -- a captured table (tracked, or a dataset's written outside its loads): its
            -- TRUNCATEs and column changes, and its last captured change
            SELECT concat_ws(':', v, 'c' || t.run_id || '/' || t.epoch, t.writes,
                             CASE WHEN t.dataset IS NULL THEN
                                 (SELECT max(c.seq) FROM deltapipe.changeset c WHERE c.node = e.upstream)::text || ':'
                                 || md5(coalesce(deltapipe._capture_columns(to_regclass(format('%I.%I', t.target_schema, t.target_table))), '')) END)
              INTO v FROM deltapipe.tracked t WHERE t.name = e.upstream;
        ELSIF e.upstream_kind = 'model' THEN
            SELECT format('%s:%s', m.row_count, m.checksum) INTO v FROM deltapipe.model m
             WHERE m.pipeline = p_pipeline AND m.name = e.upstream;
        ELSE
            rel := parse_ident(e.upstream);
            IF to_regclass(format('%I.%I', rel[1], rel[2])) IS NULL THEN
                v := NULL;
            ELSE
                EXECUTE format('SELECT format(%L, count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)) FROM %I.%I t',
                               '%s:%s', rel[1], rel[2]) INTO v;
            END IF;
        END IF;
        out := out || jsonb_build_object(e.upstream, v);
    END LOOP;
    RETURN out;
END
$fn$;

COMMENT ON FUNCTION deltapipe._node_inputs(text, text) IS 'Private: {upstream: "rows:checksum"} for the inputs of a model.';
