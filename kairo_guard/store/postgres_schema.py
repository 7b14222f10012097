"""The PostgreSQL schema, step by step (:mod:`kairo_guard.store.migrations`).

The same tables as SQLite's (:mod:`.sqlite`, :mod:`.sqlite_datasets`,
:mod:`.sqlite_tenants`, :mod:`.sqlite_shards`, :mod:`.sqlite_anchor`) in PostgreSQL's
types: BIGINT fingerprints (signed 64-bit, as the fingerprinter makes them), BYTEA
blobs, DOUBLE PRECISION timestamps, identity columns where SQLite orders by rowid, and
ids sorted bytewise (``COLLATE "C"``, as SQLite sorts text). Statements are plain
``CREATE`` (never ``IF NOT EXISTS``): a migration that ran twice fails loudly.
"""

from __future__ import annotations

from kairo_guard.store.migrations import Migration
from kairo_guard.store.sqlite_coverage import COVERAGE_SCHEMA

_TABLES = """
CREATE TABLE agreements (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    granted_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    reference TEXT NOT NULL DEFAULT ''
);
CREATE INDEX agreements_tenant ON agreements (tenant);
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    kdf TEXT NOT NULL,
    salt BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);
CREATE TABLE datasets (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT NOT NULL,
    path TEXT NOT NULL,
    record_count BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    agreement_id TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX datasets_tenant ON datasets (tenant);
CREATE TABLE models (
    model_id TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT,
    dataset_id TEXT,
    manifest_digest TEXT,
    sink TEXT,
    registered_at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX models_owner ON models (owner);
CREATE TABLE provenance (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest TEXT NOT NULL,
    tenant TEXT NOT NULL,
    class TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX provenance_tenant ON provenance (tenant);
CREATE INDEX provenance_expires ON provenance (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE retention_overrides (
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    PRIMARY KEY (tenant, scope)
);
CREATE TABLE erased_tenants (
    pseudonym TEXT PRIMARY KEY,
    erased_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE shards (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    manifest BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    digests BYTEA NOT NULL,
    fingerprints BYTEA NOT NULL
);
CREATE TABLE audit_anchor (
    log_id TEXT PRIMARY KEY,
    count BIGINT NOT NULL,
    hash TEXT NOT NULL,
    end_offset BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL
);
"""

# The fingerprint index and its log. fingerprint_log numbers every fingerprint in the
# order it was indexed (an identity: a position is never reused), and a reader asks for
# what came after the last position it read (Store.fingerprints_since). That position is
# a watermark only if no row can commit below it later: with several writers a
# transaction that took seq 5 could commit after one that took seq 6 was read, and 5
# would never be read. So every statement that adds fingerprints first takes the log in
# SHARE ROW EXCLUSIVE mode (it conflicts with itself, not with readers) and holds it to
# its commit: positions are handed out in commit order, and a reader's snapshot holds
# every committed row below the highest one it sees. The lock is taken by a trigger, so
# no writer can forget it; PostgresDatabase.write also serializes its transactions.
_FINGERPRINTS = """
CREATE TABLE fingerprints (
    fp BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    PRIMARY KEY (fp, tenant)
);
CREATE INDEX fingerprints_tenant ON fingerprints (tenant);
CREATE TABLE fingerprint_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fp BIGINT NOT NULL
);
CREATE INDEX fingerprint_log_fp ON fingerprint_log (fp);
CREATE FUNCTION kairo_lock_fingerprint_log() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    LOCK TABLE fingerprint_log IN SHARE ROW EXCLUSIVE MODE;
    RETURN NULL;
END $$;
CREATE TRIGGER fingerprint_log_locked BEFORE INSERT ON fingerprints
    FOR EACH STATEMENT EXECUTE FUNCTION kairo_lock_fingerprint_log();
CREATE FUNCTION kairo_log_fingerprints() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO fingerprint_log (fp) SELECT fp FROM added ORDER BY fp;
    RETURN NULL;
END $$;
CREATE TRIGGER fingerprint_logged AFTER INSERT ON fingerprints
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION kairo_log_fingerprints();
CREATE FUNCTION kairo_unlog_fingerprints() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM fingerprint_log AS log USING (SELECT DISTINCT fp FROM removed) AS gone
    WHERE log.fp = gone.fp AND NOT EXISTS (SELECT 1 FROM fingerprints f WHERE f.fp = gone.fp);
    RETURN NULL;
END $$;
CREATE TRIGGER fingerprint_unlogged AFTER DELETE ON fingerprints
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION kairo_unlog_fingerprints();
"""
# (a fingerprint no tenant holds any more leaves the log too: erasure leaves no keyed
# hash behind, as in SQLite)

MIGRATIONS = (Migration(1, (_TABLES, _FINGERPRINTS)), Migration(2, (COVERAGE_SCHEMA,)))
"""The PostgreSQL schema, step by step; each step's statements run as scripts."""
