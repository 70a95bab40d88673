CREATE OR REPLACE FUNCTION deltapipe._dataset_distributed(p_ds deltapipe.dataset, p_value text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- set_dataset_option() step, option distributed: p_value 'true' (or on, yes,
-- 1) makes the target of dataset p_ds a Citus table distributed by its first
-- key column: the first load creates it so; a target that already exists is
-- distributed now (its rows move to the workers, in the caller's
-- transaction). NULL or 'false' removes the option, which a target already
-- distributed refuses. DP045 without the citus extension. Returns the value to
-- store ('true' or NULL).
DECLARE
    target text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    on_    boolean;
BEGIN
    BEGIN
        on_ := coalesce(p_value::boolean, false);
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('invalid value %L for option distributed', p_value),
            HINT = 'give true or false';
    END;
    IF NOT on_ THEN
        IF deltapipe._is_distributed(to_regclass(target)) THEN
            RAISE EXCEPTION USING ERRCODE = 'DP045',
                MESSAGE = format('the table %s of dataset %s is distributed: the option cannot be removed', target, p_ds.name),
                HINT = format('undistribute it first: SELECT undistribute_table(%L)', target);
        END IF;
        RETURN NULL;
    END IF;
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP045',
            MESSAGE = format('dataset %s cannot be distributed: the citus extension is not installed in this database', p_ds.name),
            HINT = 'CREATE EXTENSION citus on the coordinator and add the workers (citus_add_node), then try again';
    END IF;
    IF to_regclass(target) IS NOT NULL AND NOT deltapipe._is_distributed(to_regclass(target)) THEN
        PERFORM deltapipe._distribute(target, p_ds.key_cols[1]);
    END IF;
    RETURN 'true';
END
$fn$;

COMMENT ON FUNCTION deltapipe._dataset_distributed(deltapipe.dataset, text) IS
  'Private, set_dataset_option() step: the distributed option (a Citus table by the first key column; an existing target is distributed now).';
