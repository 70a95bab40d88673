CREATE OR REPLACE FUNCTION deltapipe._setup_roles()
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- Roles, run by every `deltapipe init` (idempotent):
--   deltapipe_reader  reads the catalog and the target tables;
--   deltapipe_writer  reader + loads and runs (writes runs, rejects, changesets, targets);
--   deltapipe_admin   writer + declares datasets, rules and pipelines, rolls back, maintains.
-- Grant them to login roles: GRANT deltapipe_writer TO etl_user;
-- The engine needs no superuser; routines are SECURITY INVOKER, so table
-- privileges decide what a role can do.
DECLARE
    admin_only text[] := ARRAY['create_dataset', 'drop_dataset', 'add_rule', 'drop_rule', 'set_dataset_option',
                               'add_columns', 'rollback', 'maintain', '_setup_roles', '_restore_node', 'track', 'untrack'];
    r   record;
    sch text;
BEGIN
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deltapipe_reader') THEN CREATE ROLE deltapipe_reader NOLOGIN; END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deltapipe_writer') THEN CREATE ROLE deltapipe_writer NOLOGIN; END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deltapipe_admin') THEN CREATE ROLE deltapipe_admin NOLOGIN; END IF;
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN 'roles not created: the installing role lacks CREATEROLE';
    END;
    GRANT deltapipe_reader TO deltapipe_writer;
    GRANT deltapipe_writer TO deltapipe_admin;

    GRANT USAGE ON SCHEMA deltapipe TO deltapipe_reader;
    GRANT SELECT ON ALL TABLES IN SCHEMA deltapipe TO deltapipe_reader;
    GRANT USAGE, CREATE ON SCHEMA deltapipe_stage TO deltapipe_writer;
    -- the models' change logs: created with a model's table, by the role that
    -- builds it (deltapipe._model_log grants the roles their rights on it)
    IF to_regnamespace('deltapipe_log') IS NOT NULL THEN
        GRANT USAGE ON SCHEMA deltapipe_log TO deltapipe_reader;
        GRANT CREATE ON SCHEMA deltapipe_log TO deltapipe_writer;
        GRANT SELECT ON ALL TABLES IN SCHEMA deltapipe_log TO deltapipe_reader;
        GRANT INSERT ON ALL TABLES IN SCHEMA deltapipe_log TO deltapipe_writer;
        GRANT ALL ON ALL TABLES IN SCHEMA deltapipe_log TO deltapipe_admin;
    END IF;
    GRANT INSERT, UPDATE ON deltapipe.run, deltapipe.node_run TO deltapipe_writer;
    GRANT INSERT ON deltapipe.reject, deltapipe.changeset, deltapipe.batch TO deltapipe_writer;
    GRANT INSERT, DELETE ON deltapipe.staging TO deltapipe_writer;
    GRANT UPDATE (checksum, row_count, last_file_sha256, last_loaded_at) ON deltapipe.dataset TO deltapipe_writer;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA deltapipe TO deltapipe_writer;
    -- pipeline runs: model state (checksums, watermarks), audit results, lineage cache
    IF to_regclass('deltapipe.model') IS NOT NULL THEN
        GRANT UPDATE ON deltapipe.model TO deltapipe_writer;
    END IF;
    -- change capture: a load registers its dataset's table, a refresh notes a tracked table's
    -- column change, a run records its statistics
    IF to_regclass('deltapipe.tracked') IS NOT NULL THEN
        GRANT INSERT, UPDATE ON deltapipe.tracked TO deltapipe_writer;
        GRANT INSERT, UPDATE ON deltapipe.run_stat TO deltapipe_writer;
    END IF;
    IF to_regclass('deltapipe.audit_result') IS NOT NULL THEN
        GRANT INSERT, UPDATE ON deltapipe.audit_result TO deltapipe_writer;
    END IF;
    GRANT ALL ON ALL TABLES IN SCHEMA deltapipe TO deltapipe_admin;
    GRANT ALL ON ALL SEQUENCES IN SCHEMA deltapipe TO deltapipe_admin;

    -- routines: nothing for PUBLIC; the admin ones for admins only
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA deltapipe FROM PUBLIC;
    REVOKE ALL ON ALL PROCEDURES IN SCHEMA deltapipe FROM PUBLIC;
    FOR r IN SELECT p.oid::regprocedure AS sig, p.proname FROM pg_proc p WHERE p.pronamespace = 'deltapipe'::regnamespace LOOP
        IF r.proname = ANY (admin_only) THEN
            EXECUTE format('REVOKE ALL ON ROUTINE %s FROM deltapipe_reader', r.sig);
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO deltapipe_admin', r.sig);
        ELSE
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO deltapipe_reader', r.sig);
        END IF;
    END LOOP;

    -- target schemas: writers create target tables there, readers read them
    FOR sch IN SELECT DISTINCT target_schema FROM deltapipe.dataset UNION SELECT 'public' LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO deltapipe_reader', sch);
        EXECUTE format('GRANT CREATE ON SCHEMA %I TO deltapipe_writer', sch);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO deltapipe_reader', sch);
        BEGIN
            EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE deltapipe_writer IN SCHEMA %I GRANT SELECT ON TABLES TO deltapipe_reader', sch);
            EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE deltapipe_admin IN SCHEMA %I GRANT SELECT ON TABLES TO deltapipe_reader', sch);
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END;
    END LOOP;
    RETURN 'roles deltapipe_reader, deltapipe_writer, deltapipe_admin ready';
END
$fn$;

COMMENT ON FUNCTION deltapipe._setup_roles() IS
  'Private: create and grant deltapipe_reader / deltapipe_writer / deltapipe_admin (run by deltapipe init).';
