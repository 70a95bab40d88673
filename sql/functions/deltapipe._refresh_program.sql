CREATE OR REPLACE FUNCTION deltapipe._refresh_program(p_steps jsonb, p_vars jsonb)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- The generic executor of a compiled refresh program (model.program.steps, made by
-- deploy: controller/deltapipe/incremental/program.py). Runs the steps in order,
-- each with its placeholders filled from the variables (deltapipe._program_text):
--   "if"    a boolean expression: the step runs only when it is true;
--   "into"  the statement is a query of at most one row: its columns become variables;
--   "count" the variable that gets the statement's row count;
--   "phase" after the step, the milliseconds since the last phase are recorded.
-- Returns the variables, with "phases"; or {"fallback": reason} as soon as a step
-- sets the variable "fallback" (the refresh must then run in full).
DECLARE
    s      jsonb;
    v      jsonb := p_vars;
    ok     boolean;
    r      jsonb;
    n      bigint;
    t0     timestamptz := clock_timestamp();
    phases jsonb := '{}';
BEGIN
    FOR s IN SELECT x FROM jsonb_array_elements(p_steps) x LOOP
        IF s ? 'if' THEN
            EXECUTE 'SELECT (' || deltapipe._program_text(s->>'if', v) || ')::boolean' INTO ok;
            CONTINUE WHEN NOT coalesce(ok, false);
        END IF;
        IF coalesce((s->>'into')::boolean, false) THEN
            EXECUTE format('SELECT to_jsonb(_dp_r) FROM (%s) _dp_r', deltapipe._program_text(s->>'sql', v)) INTO r;
            v := v || coalesce(r, '{}');
            IF v->>'fallback' IS NOT NULL THEN
                RETURN jsonb_build_object('fallback', v->>'fallback');
            END IF;
        ELSE
            EXECUTE deltapipe._program_text(s->>'sql', v);
            IF s ? 'count' THEN
                GET DIAGNOSTICS n = ROW_COUNT;
                v := v || jsonb_build_object(s->>'count', n);
            END IF;
        END IF;
        IF s ? 'phase' THEN
            phases := phases || jsonb_build_object(s->>'phase', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 1));
            t0 := clock_timestamp();
        END IF;
    END LOOP;
    RETURN v || jsonb_build_object('phases', phases);
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_program(jsonb, jsonb) IS
  'Private: run a compiled refresh program''s steps with its variables; returns the variables, or {"fallback": reason}.';
