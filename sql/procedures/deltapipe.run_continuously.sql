CREATE OR REPLACE PROCEDURE deltapipe.run_continuously(p_pipeline text, p_interval interval DEFAULT '1 second',
                                                       p_duration interval DEFAULT '59 seconds',
                                                       p_options jsonb DEFAULT '{}')
LANGUAGE plpgsql
AS $fn$
-- Keep a pipeline's models caught up for p_duration: every p_interval, run the
-- models whose inputs changed since they last ran (deltapipe.run_pipeline with
-- those models), and COMMIT between rounds, so each round's changes are
-- published as it ends and the next round sees what committed meanwhile. A
-- round with no changed input creates no run. A model's cadence (pipeline.toml:
-- [models.NAME] refresh = "1m") holds it back until that much time has passed
-- since it last ran; refresh = "on run" leaves it to explicit runs. Runs at
-- least one round. Call it outside a transaction block; pg_cron schedules at
-- most once a minute, so a per-minute job calling it gives second-level freshness:
--   SELECT cron.schedule('shop-live', '* * * * *',
--          $$CALL deltapipe.run_continuously('shop', interval '1 second', interval '59 seconds')$$);
-- p_options go to run_pipeline (keep_going, incremental_threshold ...); a round
-- that finds the pipeline running (another run holds it: DP202) waits for the next.
DECLARE
    t_end   timestamptz := clock_timestamp() + coalesce(p_duration, '0');
    t_round timestamptz;
    sigs    jsonb;
    post    jsonb;
    ran     jsonb := '{}';
    last_at jsonb := '{}';
    cad     jsonb;
    due     text[];
    rid     bigint;
    rounds  int := 0;
    runs    int := 0;
    m       text;
BEGIN
    PERFORM deltapipe._pipeline(p_pipeline);
    IF p_interval IS NULL OR p_interval < '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP705', MESSAGE = format('invalid interval %s', p_interval),
            HINT = 'give a positive interval, e.g. interval ''1 second''';
    END IF;
    LOOP
        t_round := clock_timestamp();
        SELECT coalesce(p.config->'refresh', '{}') INTO cad FROM deltapipe.pipeline p WHERE p.name = p_pipeline;
        -- per model, the positions of its inputs: a source's last change (and its checksum,
        -- TRUNCATEs and column changes), a model's last logged change
        sigs := deltapipe._input_positions(p_pipeline);
        due := ARRAY(
            SELECT mm.name FROM deltapipe.model mm
             WHERE mm.pipeline = p_pipeline
               AND coalesce(cad->>mm.name, '') <> 'on run'
               AND (ran->mm.name IS DISTINCT FROM sigs->mm.name
                    OR to_regclass(format('%I.%I', mm.target_schema, mm.target_table)) IS NULL)
               AND (cad->>mm.name IS NULL OR last_at->>mm.name IS NULL
                    OR (last_at->>mm.name)::timestamptz + (cad->>mm.name)::interval <= t_round)
             ORDER BY mm.name);
        -- and the models downstream of them, in the same run (their inputs change in it),
        -- when their cadence lets them
        IF cardinality(due) > 0 THEN
            due := ARRAY(
                WITH RECURSIVE down(name) AS (
                    SELECT unnest(due)
                    UNION
                    SELECT e.node FROM deltapipe.model_edge e JOIN down d ON e.upstream = d.name
                     WHERE e.pipeline = p_pipeline AND e.upstream_kind = 'model')
                SELECT d.name FROM down d
                 WHERE d.name = ANY (due)
                    OR (coalesce(cad->>d.name, '') <> 'on run'
                        AND (cad->>d.name IS NULL OR last_at->>d.name IS NULL
                             OR (last_at->>d.name)::timestamptz + (cad->>d.name)::interval <= t_round))
                 ORDER BY 1);
        END IF;
        IF cardinality(due) > 0 THEN
            rid := NULL;
            BEGIN
                CALL deltapipe.run_pipeline(p_pipeline, 'sql',
                                            coalesce(p_options, '{}') || jsonb_build_object('models', to_jsonb(due), 'continuous', true),
                                            rid);
            EXCEPTION WHEN SQLSTATE 'DP202' THEN
                rid := NULL;
            END;
            IF rid IS NOT NULL THEN
                runs := runs + 1;
                -- what each model read: its sources as they were before the run (a change
                -- committed during it is the next round's), its upstream models of this run
                -- as they are after it
                post := deltapipe._input_positions(p_pipeline);
                FOREACH m IN ARRAY due LOOP
                    ran := ran || jsonb_build_object(m, (
                        SELECT coalesce(jsonb_object_agg(k, CASE WHEN k = ANY (due) THEN post->m->k ELSE v END), '{}')
                          FROM jsonb_each(sigs->m) x(k, v)));
                    last_at := last_at || jsonb_build_object(m, t_round);
                END LOOP;
            END IF;
        END IF;
        rounds := rounds + 1;
        COMMIT;
        EXIT WHEN clock_timestamp() + p_interval > t_end;
        PERFORM pg_sleep(greatest(0, extract(epoch FROM t_round + p_interval - clock_timestamp())));
    END LOOP;
    RAISE NOTICE 'deltapipe.run_continuously %: % rounds, % runs', p_pipeline, rounds, runs;
END
$fn$;

COMMENT ON PROCEDURE deltapipe.run_continuously(text, interval, interval, jsonb) IS
  'Run a pipeline''s changed models every interval for a duration, committing between rounds (second-level freshness from a per-minute pg_cron job).';
