CREATE OR REPLACE FUNCTION deltapipe.create_dataset(p_name text, p_key text[], p_columns text,
                                                    p_target text DEFAULT NULL, p_mode text DEFAULT 'snapshot')
RETURNS deltapipe.dataset
LANGUAGE plpgsql
AS $fn$
DECLARE
    cols   jsonb;
    names  text[];
    target text[];
    k      text;
    ds     deltapipe.dataset;
BEGIN
    IF p_name IS NULL OR p_name !~ '^[A-Za-z_][A-Za-z0-9_-]{0,47}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP004', MESSAGE = format('invalid dataset name %L', p_name),
            HINT = 'use letters, digits, _ and -, starting with a letter or _, at most 48 characters';
    END IF;
    IF EXISTS (SELECT 1 FROM deltapipe.dataset WHERE name = p_name) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP002', MESSAGE = format('dataset %s already exists', p_name),
            HINT = 'drop it first with `deltapipe dataset drop` or choose another name';
    END IF;
    IF p_mode NOT IN ('snapshot', 'upsert', 'append', 'changes', 'history') THEN
        RAISE EXCEPTION USING ERRCODE = 'DP006', MESSAGE = format('unknown load mode %s', p_mode),
            HINT = 'use snapshot, upsert, append, changes or history';
    END IF;
    cols := deltapipe._parse_columns(p_columns);
    names := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(cols) c);
    IF p_key IS NULL OR cardinality(p_key) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'DP005', MESSAGE = 'a dataset needs a key',
            HINT = 'give --key COL[,COL]';
    END IF;
    FOREACH k IN ARRAY p_key LOOP
        IF NOT k = ANY (names) THEN
            RAISE EXCEPTION USING ERRCODE = 'DP005', MESSAGE = format('key column %s is not among the columns', k),
                DETAIL = format('columns: %s', array_to_string(names, ', '));
        END IF;
    END LOOP;
    BEGIN
        target := parse_ident(coalesce(p_target, 'public.' || quote_ident(p_name)));
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION USING ERRCODE = 'DP004', MESSAGE = format('invalid target table name %s', p_target),
            HINT = 'give SCHEMA.TABLE, quoting names with double quotes when needed';
    END;
    IF cardinality(target) = 1 THEN
        target := ARRAY['public', target[1]];
    ELSIF cardinality(target) <> 2 THEN
        RAISE EXCEPTION USING ERRCODE = 'DP004', MESSAGE = format('invalid target table name %s', p_target),
            HINT = 'give SCHEMA.TABLE';
    END IF;
    IF target[1] IN ('deltapipe', 'deltapipe_stage', 'deltapipe_log', 'pg_catalog', 'information_schema', 'pg_toast')
       OR target[1] LIKE 'pg\_temp%' OR target[1] LIKE 'pg\_toast%' THEN
        RAISE EXCEPTION USING ERRCODE = 'DP004', MESSAGE = format('schema %s is reserved: a target table cannot live there', target[1]),
            HINT = 'choose another schema for --table';
    END IF;
    IF to_regclass(format('%I.%I', target[1], target[2])) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP002', MESSAGE = format('table %I.%I already exists', target[1], target[2]),
            HINT = 'deltapipe creates the target table on the first load; choose another --table or drop that table';
    END IF;
    IF EXISTS (SELECT 1 FROM deltapipe.dataset WHERE target_schema = target[1] AND target_table = target[2]) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP002',
            MESSAGE = format('table %I.%I is already the target of another dataset', target[1], target[2]);
    END IF;
    IF to_regnamespace(quote_ident(target[1])) IS NULL THEN
        EXECUTE format('CREATE SCHEMA %I', target[1]);
    END IF;
    INSERT INTO deltapipe.dataset (name, target_schema, target_table, key_cols, columns, mode)
    VALUES (p_name, target[1], target[2], p_key, cols, p_mode)
    RETURNING * INTO ds;
    RETURN ds;
END
$fn$;

COMMENT ON FUNCTION deltapipe.create_dataset(text, text[], text, text, text) IS
  'Declare a dataset: name, key columns, typed columns ("id bigint, name text"), target table (default public.NAME) and default load mode (history: every version kept).';
