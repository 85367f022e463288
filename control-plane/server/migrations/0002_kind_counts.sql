-- How many objects each kind has, so a list's TotalCount is exact without counting the kind's
-- rows on every page. Kept in the same transaction (or statement) as every insert and delete.
-- Split over 16 shards (by ID) so concurrent creates of one kind rarely write the same row:
-- on CockroachDB and serializable PostgreSQL one hot row per kind would make them conflict.
CREATE TABLE kind_counts (
    kind TEXT NOT NULL,
    shard BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (kind, shard)
);

INSERT INTO kind_counts (kind, shard, n)
SELECT kind, id % 16, COUNT(*) FROM objects GROUP BY kind, id % 16;
