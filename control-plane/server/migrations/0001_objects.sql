-- One table holds every kind: the registry in threeport-api decides what a body may contain,
-- so adding a kind never needs a migration. SQL here must run unchanged on CockroachDB,
-- PostgreSQL and SQLite: no SERIAL/sequences (IDs come from the application), no JSON operators,
-- no LISTEN/NOTIFY.
CREATE TABLE objects (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    body TEXT NOT NULL
);

-- Name is unique per kind; NULL names (event rows) do not collide.
CREATE UNIQUE INDEX objects_kind_name ON objects (kind, name);
-- Lists are ordered by ID within a kind.
CREATE INDEX objects_kind_id ON objects (kind, id);

-- Exact-match filters (`?workloaddefinitionid=…`) and reference checks read this index instead
-- of scanning JSON bodies, so lists stay fast at 100 000 objects on every backend.
CREATE TABLE object_index (
    kind TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    object_id BIGINT NOT NULL,
    PRIMARY KEY (kind, field, value, object_id)
);
CREATE INDEX object_index_object ON object_index (object_id);

-- The transactional outbox: every change writes one row in the same transaction as the change.
-- Rows with a subject are relayed to NATS (or the in-process bus) and then marked published;
-- every row also feeds the watch stream, whose event IDs are the row's seq.
CREATE TABLE outbox (
    seq BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    object_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    stream TEXT,
    subject TEXT,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL AND subject IS NOT NULL;
CREATE INDEX outbox_created ON outbox (created_at);
