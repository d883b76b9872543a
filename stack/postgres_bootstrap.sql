-- The only place the cluster's superuser acts: roles and extensions the application's
-- non-superuser admin role cannot make itself (docs/decisions/0016-no-superuser-in-settings.md).
-- Run by `bitvelocity stack up` over the Unix socket (peer authentication) on every start, and
-- by docker-compose.yml from /docker-entrypoint-initdb.d. Idempotent. Names and passwords come
-- from the environment (never a command line); every BV_* variable below must be set.
\set ON_ERROR_STOP on
-- A failed statement below would otherwise be logged with the password it carries.
SET log_min_error_statement = panic;
\getenv admin_user BV_POSTGRES__ADMIN_USER
\getenv admin_password BV_POSTGRES__ADMIN_PASSWORD
\getenv debezium_user BV_POSTGRES__DEBEZIUM_USER
\getenv debezium_password BV_POSTGRES__DEBEZIUM_PASSWORD
\getenv worker_user BV_POSTGRES__WORKER_USER
\getenv worker_password BV_POSTGRES__WORKER_PASSWORD
\getenv replication_user BV_BACKUP__REPLICATION_USER
\getenv replication_password BV_BACKUP__REPLICATION_PASSWORD

-- The application's settings must never name a superuser.
SELECT count(*) > 0 AS admin_is_superuser FROM pg_roles
 WHERE rolname = :'admin_user' AND rolsuper \gset
\if :admin_is_superuser
DO $$ BEGIN RAISE EXCEPTION 'BV_POSTGRES__ADMIN_USER names a superuser; choose another role (default bv_admin)'; END $$;
\endif

SELECT format('CREATE ROLE %I', name)
  FROM unnest(ARRAY[:'admin_user', :'debezium_user', :'worker_user']) AS name
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) \gexec

-- admin: migrations, throw-away databases, role passwords, backups. It owns what it creates
-- (databases, schemas, tables, publications); REPLICATION for pg_basebackup and dropping slots.
ALTER ROLE :"admin_user" WITH LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION NOBYPASSRLS
    PASSWORD :'admin_password';
-- pg_monitor: pg_stat_replication, pg_stat_statements of every role; pg_signal_backend:
-- DROP DATABASE ... WITH (FORCE) of its throw-away databases; membership in the worker role:
-- migrations may hand it objects (gold.daily_sales); pg_promote: `bitvelocity dr promote`.
GRANT pg_monitor, pg_signal_backend TO :"admin_user";
GRANT :"worker_user" TO :"admin_user";
GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO :"admin_user";

-- debezium: REPLICATION is granted (and its password set) by a superuser only, on PG 15.
ALTER ROLE :"debezium_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE REPLICATION
    NOBYPASSRLS PASSWORD :'debezium_password';
ALTER ROLE :"worker_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    NOBYPASSRLS PASSWORD :'worker_password';

-- The streaming replica's login (`bitvelocity dr replica up`), when a password is configured.
SELECT :'replication_password' <> '' AS with_replicator \gset
\if :with_replicator
SELECT format('CREATE ROLE %I', :'replication_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'replication_user') \gexec
ALTER ROLE :"replication_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE REPLICATION
    NOBYPASSRLS PASSWORD :'replication_password';
\endif

-- Extensions only a superuser may create live in template1, so every database the admin
-- creates (the app's, a restore target, a test's throw-away one) has them, and the
-- migrations' CREATE EXTENSION IF NOT EXISTS is a no-op.
\connect template1
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
-- pg_partman as a non-superuser (its documented grants); the admin owns the partitioned tables.
GRANT ALL ON SCHEMA partman TO :"admin_user";
GRANT ALL ON ALL TABLES IN SCHEMA partman TO :"admin_user";
GRANT ALL ON ALL SEQUENCES IN SCHEMA partman TO :"admin_user";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO :"admin_user";
GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO :"admin_user";
