CREATE OR REPLACE FUNCTION deltapipe._validate_row_checker(p_fmt text, p_fexpr text, p_fdecls text, p_fassign text,
                                                          p_bad text, p_cols text[], p_types text[], p_castx text[])
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- validate() step 4e: creates pg_temp._dp_check(raw text) RETURNS text, the row
-- checker for suspicious rows: it splits one raw line (p_fexpr, step 2a; as JSON
-- first for ndjson), takes out its fields (p_fdecls, p_fassign, step 4a), skips a
-- row of the wrong shape (p_bad, step 4b: the statement gives its reason) and
-- casts the fields (p_castx, step 4c) in one exception block for the whole row;
-- only when that fails, one per column, to name the column (p_cols), SQLSTATE
-- and message. It returns NULL for a good row, else 'column chr(31) sqlstate
-- chr(31) message' (column '' when the line is not JSON). Returns nothing.
DECLARE
    decls    text := '';
    allcasts text := '';
    checks   text := '';
    restore  boolean := false;
BEGIN
    FOR i IN 1..cardinality(p_cols) LOOP
        decls := decls || format('v%s %s; ', i, p_types[i]);
        allcasts := allcasts || format('v%s := %s; ', i, p_castx[i]);
        checks := checks || format($c$
            BEGIN v%1$s := %2$s; EXCEPTION WHEN others THEN RETURN %3$L || chr(31) || SQLSTATE || chr(31) || SQLERRM; END;$c$,
            i, p_castx[i], p_cols[i]);
    END LOOP;
    -- a temporary function is never propagated to Citus workers: say so, or Citus refuses it after
    -- the multi-shard read of a distributed target in this transaction (no-op without Citus)
    IF current_setting('citus.enable_ddl_propagation', true) = 'on' THEN
        PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
        restore := true;
    END IF;
    -- the body goes in as a quoted literal: names and options inside it cannot end it
    EXECUTE format('CREATE OR REPLACE FUNCTION pg_temp._dp_check(raw text) RETURNS text LANGUAGE plpgsql AS %L',
        format($f$
        DECLARE f text[]; j jsonb; _dp_n int; %1$s
        BEGIN
            %2$s
            _dp_n := cardinality(f); %6$s
            IF %3$s THEN RETURN NULL; END IF;
            BEGIN %4$s RETURN NULL; EXCEPTION WHEN others THEN NULL; END;
            %5$s
            RETURN NULL;
        END $f$,
        p_fdecls || decls,
        CASE WHEN p_fmt = 'ndjson'
             THEN format('BEGIN j := raw::jsonb; EXCEPTION WHEN others THEN RETURN %L || chr(31) || SQLSTATE || chr(31) || SQLERRM; END; f := %s;',
                         '', p_fexpr)
             ELSE format('f := %s;', replace(p_fexpr, 'r._dp_raw', 'raw')) END,
        p_bad, allcasts, checks, p_fassign));
    IF restore THEN
        PERFORM set_config('citus.enable_ddl_propagation', 'on', true);
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_row_checker(text, text, text, text, text, text[], text[], text[]) IS
  'Private, validate() step: create pg_temp._dp_check(raw), which checks one raw line and names its bad column, SQLSTATE and message.';
