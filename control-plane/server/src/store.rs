//! Persistence through sqlx's `Any` driver, so one code path serves CockroachDB, PostgreSQL and
//! the embedded SQLite. Every change and its outbox row commit in one transaction.

use crate::crypto::{Cipher, unseal};
use crate::group_commit::{GroupCommit, WriteStats};
use crate::ids::{IdGen, now_ms};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use sqlx::any::{AnyPoolOptions, AnyRow};
use std::sync::Arc;
// Dynamic SQL below only ever splices constant fragments and `$N` placeholders, never values.
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::time::Duration;
use threeport_api::kinds::{COMMON_FIELDS, OnDelete, references_to};
use threeport_api::{Kind, Operation};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("the object changed since it was read (ResourceVersion is now {current})")]
    StaleVersion { current: i64 },
    #[error("field \"{field}\": {message}")]
    BadReference { field: String, message: String },
    #[error("database error: {0}")]
    Other(String),
    /// A serialization conflict (CockroachDB's 40001, SQLite's BUSY): the caller retries.
    #[error("transaction conflict, retry")]
    Retry,
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if db.is_unique_violation() {
                StoreError::Conflict(db.message().to_string())
            } else if code == "40001" || code == "5" || code == "517" || code == "40P01" {
                StoreError::Retry
            } else if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                StoreError::Unavailable(db.message().to_string())
            } else {
                StoreError::Other(db.message().to_string())
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        other => StoreError::Other(other.to_string()),
    }
}

/// A write's error, with a unique violation turned into the message users need: which name.
fn write_err(e: sqlx::Error, kind: &Kind, name: Option<&str>) -> StoreError {
    match map_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "field \"Name\": a {} named {:?} already exists",
            kind.name,
            name.unwrap_or_default()
        )),
        other => other,
    }
}

/// Run a transaction body again on serialization conflicts (CockroachDB runs SERIALIZABLE and
/// asks clients to retry; PostgreSQL and SQLite rarely do).
macro_rules! retrying {
    ($self:ident . $call:ident ( $($arg:expr),* )) => {{
        let mut attempt = 0u32;
        loop {
            match $self.$call($($arg),*).await {
                Err(StoreError::Retry) if attempt < 8 => {
                    attempt += 1;
                    $self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                }
                Err(StoreError::Retry) => {
                    break Err(StoreError::Unavailable(
                        "too many transaction conflicts".into(),
                    ));
                }
                other => break other,
            }
        }
    }};
}

/// Which page of a list: the `page`-th (from 1) of the objects whose ID is greater than
/// `after` (the last ID of the previous page; `None` from the start). Upstream's clients page
/// by number alone (OFFSET paging); a cursor with page 1 seeks on the (kind, id) key, so every
/// page costs the same and objects created or deleted between pages never shift the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub after: Option<i64>,
    pub page: u64,
}

impl Page {
    pub fn number(page: u64) -> Page {
        Page { after: None, page }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// An object as stored. `body` holds every writable field, with secrets encrypted.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub kind: &'static Kind,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub body: Map<String, Value>,
}

/// The `kind_counts` row an object is counted in.
fn count_shard(id: i64) -> i64 {
    id.rem_euclid(16)
}

fn rfc3339(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339(now_micros())
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Stored {
    pub fn name(&self) -> Option<&str> {
        self.body.get("Name").and_then(Value::as_str)
    }

    /// The object as clients see it: server fields first, then the kind's fields in registry
    /// order, unset fields omitted (as upstream's `omitempty`), secrets redacted unless revealed.
    pub fn render(&self, cipher: Option<&Cipher>, reveal: bool) -> Value {
        let mut body = self.body.clone();
        unseal(self.kind, &mut body, cipher, reveal);
        let mut out = Map::new();
        out.insert("ID".into(), json!(self.id as u64));
        out.insert("CreatedAt".into(), json!(rfc3339(self.created_at)));
        out.insert("UpdatedAt".into(), json!(rfc3339(self.updated_at)));
        out.insert("ResourceVersion".into(), json!(self.version));
        for f in self.kind.fields().skip(COMMON_FIELDS.len()) {
            if let Some(v) = body.remove(f.name).filter(|v| !v.is_null()) {
                out.insert(f.name.into(), v);
            }
        }
        Value::Object(out)
    }

    fn from_row(kind: &'static Kind, row: &AnyRow) -> Result<Stored, StoreError> {
        let body: String = row.try_get("body").map_err(map_err)?;
        let body = match serde_json::from_str(&body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(StoreError::Other(format!(
                    "corrupt body for {} row",
                    kind.name
                )));
            }
        };
        Ok(Stored {
            id: row.try_get("id").map_err(map_err)?,
            kind,
            version: row.try_get("version").map_err(map_err)?,
            created_at: row.try_get("created_at").map_err(map_err)?,
            updated_at: row.try_get("updated_at").map_err(map_err)?,
            body,
        })
    }
}

/// One outbox row: a change for the watch stream, and for rows with a subject, a notification.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub seq: i64,
    pub kind: String,
    pub event: String,
    pub stream: Option<String>,
    pub subject: Option<String>,
    pub payload: String,
}

/// The values of a field as they appear in the filter index.
pub fn index_value(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn indexed_fields(kind: &'static Kind) -> impl Iterator<Item = &'static threeport_api::Field> {
    kind.fields()
        .skip(COMMON_FIELDS.len())
        .filter(|f| f.ty.filterable() && !f.secret && f.name != "Name")
}

const SELECT: &str = "SELECT id, version, created_at, updated_at, body FROM objects";

pub struct Store {
    /// Every write (and the reads inside a write's transaction). SQLite: the one writer.
    pool: AnyPool,
    /// Reads outside a transaction. SQLite in WAL mode: several connections that read the last
    /// commit while the writer is busy, so a read never queues behind a write. PostgreSQL:
    /// the same pool as `pool`.
    readers: AnyPool,
    backend: Backend,
    ids: Arc<IdGen>,
    /// SQLite: the task that runs writes and shares commits between them (see
    /// `group_commit`). PostgreSQL: none; each write is its own transaction.
    group: Option<GroupCommit>,
    /// Transactions retried after a serialization conflict (40001), since start.
    retries: std::sync::atomic::AtomicU64,
}

impl Store {
    /// How many transactions were retried after a serialization conflict.
    pub fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            anyhow::bail!(
                "unsupported --database-url {url:?}: use postgres://… (CockroachDB, PostgreSQL) or sqlite://FILE"
            );
        };
        let url = if backend == Backend::Sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        let opts = || {
            AnyPoolOptions::new()
                // A request fails with 503 after this instead of hanging while the database is down.
                .acquire_timeout(Duration::from_secs(3))
                .test_before_acquire(true)
        };
        // connect_lazy: the server starts (and reports not-ready) even if the database is down.
        let (pool, readers) = match backend {
            Backend::Postgres => {
                let pool = opts()
                    .max_connections(32)
                    .min_connections(0)
                    .connect_lazy(&url)?;
                (pool.clone(), pool)
            }
            Backend::Sqlite => {
                // SQLite allows one writer: a single writing connection turns lock errors into a
                // queue. synchronous=NORMAL in WAL mode: a commit is durable against a crash of
                // the process, and fsyncs only at checkpoints, so a power loss may lose the last
                // commits. busy_timeout: a checkpoint or another process waits instead of failing.
                let sqlite = |o: AnyPoolOptions| {
                    o.after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA synchronous=NORMAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout=5000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                };
                let pool = sqlite(opts().max_connections(1)).connect_lazy(&url)?;
                let readers =
                    sqlite(opts().max_connections(4).min_connections(0)).connect_lazy(&url)?;
                (pool, readers)
            }
        };
        let store = Store {
            pool,
            readers,
            backend,
            ids: Arc::new(IdGen::new()),
            group: None,
            retries: Default::default(),
        };
        if backend == Backend::Sqlite {
            // Before any reader connects: WAL is what lets them read during a write.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&store.pool)
                .await?;
        }
        let group = (backend == Backend::Sqlite).then(|| GroupCommit::start(store.pool.clone()));
        Ok(Store { group, ..store })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// PostgreSQL/CockroachDB: create the database named in `url` if it does not exist yet, by
    /// connecting to the server's default database (`defaultdb` on CockroachDB, `postgres` on
    /// PostgreSQL). A fresh in-cluster install needs this before its first migration.
    pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
        sqlx::any::install_default_drivers();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Ok(());
        }
        let (base, query) = url
            .split_once('?')
            .map(|(b, q)| (b, format!("?{q}")))
            .unwrap_or((url, String::new()));
        let Some((server, db)) = base
            .rsplit_once('/')
            .filter(|(s, _)| s.contains("://") && s.len() > s.find("://").unwrap_or(0) + 3)
        else {
            return Ok(());
        };
        if db.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name {db:?} must be letters, digits and _ to be created automatically"
        );
        let mut last = None;
        for default in ["defaultdb", "postgres"] {
            let admin = format!("{server}/{default}{query}");
            match sqlx::AnyPool::connect(&admin).await {
                Ok(pool) => {
                    let (n,): (i64,) =
                        sqlx::query_as("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                            .bind(db)
                            .fetch_one(&pool)
                            .await?;
                    if n == 0 {
                        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}")))
                            .execute(&pool)
                            .await?;
                        tracing::info!(database = db, "created the database");
                    }
                    pool.close().await;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow::anyhow!(
            "cannot connect to create database {db:?}: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut m = sqlx::migrate!("./migrations");
        // CockroachDB has no pg_advisory_lock; concurrent migrators are serialized by the
        // migrations table's primary key instead.
        m.set_locking(false);
        m.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    pub fn next_id(&self) -> i64 {
        self.ids.next()
    }

    /// `Pool::begin`, run to completion even when the caller is cancelled.
    ///
    /// sqlx 0.9.0's PostgreSQL `begin` is not cancel-safe (launchbadge/sqlx#4393): dropped while
    /// `BEGIN` is in flight, it returns the connection to the pool inside a transaction nothing
    /// rolls back, and every later statement on it fails with "current transaction is aborted".
    /// A client that disconnects mid-request (a controller killed with SIGKILL) drops the
    /// handler's future exactly there. Spawned, `begin` always finishes; if nobody awaits the
    /// result any more, the `Transaction` is dropped with its depth raised, so sqlx queues the
    /// ROLLBACK as it does for any abandoned transaction.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin().await })
            .await
            .map_err(|e| StoreError::Other(format!("the transaction task failed: {e}")))?
            .map_err(map_err)
    }

    /// Runs one write's statements in a transaction and returns once it is committed: on
    /// SQLite in the next commit the writer shares between the writes waiting for it (see
    /// `group_commit`), elsewhere in a transaction of its own.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::AnyConnection,
                Arc<IdGen>,
            ) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let ids = self.ids.clone();
        match &self.group {
            Some(group) => group.write(move |conn| work(conn, ids)).await,
            None => {
                let mut tx = self.begin().await?;
                let v = work(&mut tx, ids).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(v)
            }
        }
    }

    /// The SQLite writer's counters since start; `None` on PostgreSQL, whose writes commit
    /// one by one.
    pub fn group_commit_stats(&self) -> Option<WriteStats> {
        self.group.as_ref().map(GroupCommit::stats)
    }

    /// Insert a new object. `notify` publishes `<kind>.create` to the controllers.
    pub async fn insert(
        &self,
        kind: &'static Kind,
        body: &Map<String, Value>,
        notify: bool,
    ) -> Result<Stored, StoreError> {
        retrying!(self.try_insert(kind, body, notify))
    }

    async fn try_insert(
        &self,
        kind: &'static Kind,
        body: &Map<String, Value>,
        notify: bool,
    ) -> Result<Stored, StoreError> {
        if self.backend == Backend::Postgres {
            return self.try_insert_one_statement(kind, body, notify).await;
        }
        let body = body.clone();
        self.write(move |conn, ids| insert_in(conn, ids, kind, body, notify).boxed())
            .await
    }

    /// PostgreSQL/CockroachDB: the reference check, the object, its index rows and its outbox
    /// row in ONE statement (data-modifying CTEs). A single statement is atomic without
    /// BEGIN/COMMIT, so a create costs one round trip instead of six. A missing reference makes
    /// every insert select zero rows; the slow path then says which field is wrong.
    async fn try_insert_one_statement(
        &self,
        kind: &'static Kind,
        body: &Map<String, Value>,
        notify: bool,
    ) -> Result<Stored, StoreError> {
        let now = now_micros();
        let stored = Stored {
            id: self.ids.next(),
            kind,
            version: 1,
            created_at: now,
            updated_at: now,
            body: body.clone(),
        };
        // Every value is bound as text and cast where a number is needed: one parameter type
        // keeps the statement builder simple and works the same on PostgreSQL and CockroachDB.
        let mut params: Vec<Option<String>> = Vec::new();
        let mut p = |v: Option<String>| {
            params.push(v);
            format!("${}", params.len())
        };
        // Distinct (ID, kind) pairs: two fields naming one object must count it once.
        let mut refs: Vec<(u64, &str)> = Vec::new();
        for f in kind.fields().filter(|f| f.references.is_some()) {
            if let Some(id) = body.get(f.name).and_then(Value::as_u64) {
                let r = (id, f.references.unwrap_or_default());
                if !refs.contains(&r) {
                    refs.push(r);
                }
            }
        }
        let mut sql = String::from("WITH ok AS (SELECT COUNT(*) AS n FROM objects WHERE ");
        if refs.is_empty() {
            sql.push_str("FALSE");
        }
        for (i, (id, target)) in refs.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!(
                "(id = CAST({} AS BIGINT) AND kind = {})",
                p(Some(id.to_string())),
                p(Some(target.to_string()))
            ));
        }
        sql.push_str("), o AS (INSERT INTO objects (id, kind, name, version, created_at, updated_at, body) SELECT ");
        let id_p = p(Some(stored.id.to_string()));
        let kind_p = p(Some(kind.name.to_string()));
        let name_p = p(stored.name().map(str::to_string));
        let now_p = p(Some(now.to_string()));
        let body_p = p(Some(Value::Object(stored.body.clone()).to_string()));
        sql.push_str(&format!(
            "CAST({id_p} AS BIGINT), {kind_p}, {name_p}, 1, CAST({now_p} AS BIGINT), CAST({now_p} AS BIGINT), {body_p} FROM ok WHERE ok.n = {} RETURNING id)",
            refs.len()
        ));
        let index: Vec<(&str, String)> = indexed_fields(kind)
            .filter_map(|f| body.get(f.name).and_then(index_value).map(|v| (f.name, v)))
            .collect();
        if !index.is_empty() {
            sql.push_str(", i AS (INSERT INTO object_index (kind, field, value, object_id) ");
            for (n, (field, value)) in index.iter().enumerate() {
                if n > 0 {
                    sql.push_str(" UNION ALL ");
                }
                sql.push_str(&format!(
                    "SELECT {kind_p}, {}, {}, o.id FROM o",
                    p(Some(field.to_string())),
                    p(Some(value.clone()))
                ));
            }
            sql.push(')');
        }
        // The kind's count, in the same statement.
        sql.push_str(&format!(
            ", c AS (INSERT INTO kind_counts (kind, shard, n) SELECT {kind_p}, CAST({} AS BIGINT), 1 FROM o \
             ON CONFLICT (kind, shard) DO UPDATE SET n = kind_counts.n + 1)",
            p(Some(count_shard(stored.id).to_string()))
        ));
        let (seq, event, stream, subject, payload, created) = outbox_values(
            &self.ids,
            &stored,
            Operation::Created,
            notify.then_some(Operation::Created),
        );
        sql.push_str(&format!(
            " INSERT INTO outbox (seq, kind, object_id, event, stream, subject, payload, created_at, published_at) \
             SELECT CAST({} AS BIGINT), {kind_p}, o.id, {}, {}, {}, {}, CAST({} AS BIGINT), NULL FROM o",
            p(Some(seq.to_string())),
            p(Some(event.to_string())),
            p(stream),
            p(subject),
            p(Some(payload)),
            p(Some(created.to_string())),
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in params {
            q = q.bind(v);
        }
        match q.execute(&self.pool).await {
            Ok(r) if r.rows_affected() == 1 => Ok(stored),
            Ok(_) => {
                // A reference did not match: find which, for the message.
                let mut conn = self.pool.acquire().await.map_err(map_err)?;
                check_references(&mut conn, kind, body).await?;
                Err(StoreError::Retry)
            }
            Err(e) => Err(write_err(e, kind, stored.name())),
        }
    }

    pub async fn fetch(&self, kind: &'static Kind, id: i64) -> Result<Stored, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "{SELECT} WHERE id = $1 AND kind = $2"
        )))
        .bind(id)
        .bind(kind.name)
        .fetch_optional(&self.readers)
        .await
        .map_err(map_err)?;
        match row {
            Some(r) => Stored::from_row(kind, &r),
            None => Err(StoreError::NotFound),
        }
    }

    /// Replace the body of an object if its version is still `expected_version`.
    pub async fn update(
        &self,
        kind: &'static Kind,
        id: i64,
        expected_version: i64,
        body: &Map<String, Value>,
        notify: Option<Operation>,
    ) -> Result<Stored, StoreError> {
        retrying!(self.try_update(kind, id, expected_version, body, notify))
    }

    async fn try_update(
        &self,
        kind: &'static Kind,
        id: i64,
        expected_version: i64,
        body: &Map<String, Value>,
        notify: Option<Operation>,
    ) -> Result<Stored, StoreError> {
        let body = body.clone();
        self.write(move |conn, ids| {
            update_in(conn, ids, kind, id, expected_version, body, notify).boxed()
        })
        .await
    }

    /// What prevents scheduling the deletion of this object (`body`): objects that reference it
    /// with `OnDelete::Restrict`, and what prevents deleting each object it is bound to
    /// (`OnDelete::Bound`), since that one goes with it.
    pub async fn blockers(
        &self,
        kind: &'static Kind,
        id: i64,
        body: &Map<String, Value>,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.readers.acquire().await.map_err(map_err)?;
        let mut out = blockers_in(&mut conn, kind, id, &[OnDelete::Restrict]).await?;
        for f in kind.fields().filter(|f| f.on_delete == OnDelete::Bound) {
            let (Some(target), Some(tid)) = (
                f.references.and_then(threeport_api::kinds::by_name),
                body.get(f.name).and_then(Value::as_i64),
            ) else {
                continue;
            };
            let name = match self.fetch(target, tid).await {
                Ok(t) => t
                    .body
                    .get("Name")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            for b in blockers_in(&mut conn, target, tid, &[OnDelete::Restrict]).await? {
                out.push(format!(
                    "{b} on its {} {:?}",
                    target.name,
                    name.as_deref().unwrap_or_default()
                ));
            }
        }
        Ok(out)
    }

    /// Remove an object now, with everything that cascades from it. Refuses (Conflict) while
    /// restricting references exist.
    pub async fn remove(
        &self,
        kind: &'static Kind,
        id: i64,
        expected_version: Option<i64>,
    ) -> Result<Stored, StoreError> {
        retrying!(self.try_remove(kind, id, expected_version))
    }

    async fn try_remove(
        &self,
        kind: &'static Kind,
        id: i64,
        expected_version: Option<i64>,
    ) -> Result<Stored, StoreError> {
        self.write(move |conn, ids| remove_in(conn, ids, kind, id, expected_version).boxed())
            .await
    }

    /// One page of objects of `kind`, ordered by ID, and the total number that match.
    /// `filters` are (field name, index value) pairs; `name` filters on the Name column.
    pub async fn list(
        &self,
        kind: &'static Kind,
        name: Option<&str>,
        filters: &[(&'static str, String)],
        page: Page,
        size: u64,
    ) -> Result<(Vec<Stored>, u64), StoreError> {
        let mut cond = String::from(" WHERE kind = $1");
        let mut n = 1;
        if name.is_some() {
            n += 1;
            cond.push_str(&format!(" AND name = ${n}"));
        }
        for _ in filters {
            cond.push_str(&format!(
                " AND id IN (SELECT object_id FROM object_index WHERE kind = $1 AND field = ${} AND value = ${})",
                n + 1,
                n + 2
            ));
            n += 2;
        }
        // TotalCount: every object that matches, wherever the cursor is. A whole kind's is
        // kept as it changes (`kind_counts`); a filtered list counts its (indexed) matches.
        let count_sql = if name.is_none() && filters.is_empty() {
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM kind_counts WHERE kind = $1"
                .to_string()
        } else if name.is_none() && filters.len() == 1 {
            // One filter: its index rows are the matches (they go with their object), counted
            // from the index alone rather than by probing every object of the kind.
            "SELECT COUNT(*) FROM object_index WHERE kind = $1 AND field = $2 AND value = $3"
                .to_string()
        } else {
            format!("SELECT COUNT(*) FROM objects{cond}")
        };
        if page.after.is_some() {
            n += 1;
            cond.push_str(&format!(" AND id > ${n}"));
        }
        let page_sql = format!(
            "{SELECT}{cond} ORDER BY id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut conn = self.readers.acquire().await.map_err(map_err)?;
        let mut count = sqlx::query_as::<_, (i64,)>(AssertSqlSafe(count_sql)).bind(kind.name);
        let mut rows = sqlx::query(AssertSqlSafe(page_sql)).bind(kind.name);
        if let Some(name) = name {
            count = count.bind(name);
            rows = rows.bind(name);
        }
        for (field, value) in filters {
            count = count.bind(*field).bind(value.clone());
            rows = rows.bind(*field).bind(value.clone());
        }
        if let Some(after) = page.after {
            rows = rows.bind(after);
        }
        let offset = page.page.saturating_sub(1).saturating_mul(size);
        let rows = rows
            .bind(size as i64)
            .bind(offset.min(i64::MAX as u64) as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        let (total,) = count.fetch_one(&mut *conn).await.map_err(map_err)?;
        let items = rows
            .iter()
            .map(|r| Stored::from_row(kind, r))
            .collect::<Result<_, _>>()?;
        Ok((items, total as u64))
    }

    // ---- outbox ----

    pub async fn pending_notifications(&self, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, event, stream, subject, payload FROM outbox \
             WHERE published_at IS NULL AND subject IS NOT NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(outbox_row).collect()
    }

    pub async fn mark_published(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (0..seqs.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE outbox SET published_at = $1 WHERE seq IN ({})",
            placeholders.join(",")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms() as i64);
        for s in seqs {
            q = q.bind(*s);
        }
        q.execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    /// Changes with `seq > after`, oldest first (the watch stream's source).
    pub async fn changes_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, event, stream, subject, payload FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.readers)
        .await
        .map_err(map_err)?;
        rows.iter().map(outbox_row).collect()
    }

    /// Forget changes older than the retention window once they no longer need relaying.
    pub async fn prune_outbox(&self, older_than_ms: u64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM outbox WHERE created_at < $1 AND (subject IS NULL OR published_at IS NOT NULL)")
            .bind(older_than_ms as i64)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected())
    }
}

async fn check_references(
    tx: &mut sqlx::AnyConnection,
    kind: &'static Kind,
    body: &Map<String, Value>,
) -> Result<(), StoreError> {
    for f in kind.fields().filter(|f| f.references.is_some()) {
        let Some(id) = body.get(f.name).and_then(Value::as_u64) else {
            continue;
        };
        let target = f.references.unwrap_or_default();
        let found: Option<(String,)> = sqlx::query_as("SELECT kind FROM objects WHERE id = $1")
            .bind(id as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        match found {
            Some((k,)) if k == target => {}
            Some((k,)) => {
                return Err(StoreError::BadReference {
                    field: f.name.into(),
                    message: format!("object {id} is a {k}, not a {target}"),
                });
            }
            None => {
                return Err(StoreError::BadReference {
                    field: f.name.into(),
                    message: format!("{target} {id} does not exist"),
                });
            }
        }
    }
    Ok(())
}

async fn write_index(
    tx: &mut sqlx::AnyConnection,
    kind: &'static Kind,
    id: i64,
    body: &Map<String, Value>,
) -> Result<(), StoreError> {
    let rows: Vec<(&str, String)> = indexed_fields(kind)
        .filter_map(|f| body.get(f.name).and_then(index_value).map(|v| (f.name, v)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("INSERT INTO object_index (kind, field, value, object_id) VALUES ");
    for i in 0..rows.len() {
        if i > 0 {
            sql.push(',');
        }
        let b = i * 3;
        sql.push_str(&format!("($1, ${}, ${}, ${})", b + 2, b + 3, b + 4));
    }
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(kind.name);
    for (field, value) in rows {
        q = q.bind(field).bind(value).bind(id);
    }
    q.execute(&mut *tx).await.map_err(map_err)?;
    Ok(())
}

async fn write_outbox(
    ids: &IdGen,
    tx: &mut sqlx::AnyConnection,
    stored: &Stored,
    event: Operation,
    notify: Option<Operation>,
) -> Result<(), StoreError> {
    let (seq, event_name, stream, subject, payload, created) =
        outbox_values(ids, stored, event, notify);
    sqlx::query(
        "INSERT INTO outbox (seq, kind, object_id, event, stream, subject, payload, created_at, published_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
    )
    .bind(seq)
    .bind(stored.kind.name)
    .bind(stored.id)
    .bind(event_name)
    .bind(stream)
    .bind(subject)
    .bind(payload)
    .bind(created)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// The outbox row for a change: (seq, watch event, stream, subject, upstream message, time).
#[allow(clippy::type_complexity)]
fn outbox_values(
    ids: &IdGen,
    stored: &Stored,
    event: Operation,
    notify: Option<Operation>,
) -> (
    i64,
    &'static str,
    Option<String>,
    Option<String>,
    String,
    i64,
) {
    let kind = stored.kind;
    let operation = notify.unwrap_or(event);
    let payload = json!({
        "Operation": operation.as_str(),
        "CreationTime": now_ms() / 1000,
        "Object": stored.render(None, false),
        "ObjectVersion": threeport_api::API_VERSION,
    });
    let (stream, subject) = match notify {
        Some(op) => (
            Some(kind.group.stream().to_string()),
            Some(kind.subject(op)),
        ),
        None => (None, None),
    };
    (
        ids.next(),
        event.event_name(),
        stream,
        subject,
        payload.to_string(),
        now_ms() as i64,
    )
}

/// Objects that reference `kind` `id` through a reference whose `on_delete` is in `how`,
/// a few named: `1 workload-instances (web; via KubernetesRuntimeInstanceID)`.
async fn blockers_in(
    conn: &mut sqlx::AnyConnection,
    kind: &'static Kind,
    id: i64,
    how: &[OnDelete],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for (k, f) in references_to(kind.name).filter(|(_, f)| how.contains(&f.on_delete)) {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM object_index WHERE kind = $1 AND field = $2 AND value = $3",
        )
        .bind(k.name)
        .bind(f.name)
        .bind(id.to_string())
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
        if n > 0 {
            // Name a few, so the person knows what to delete first.
            let names: Vec<(Option<String>,)> = sqlx::query_as(
                "SELECT o.name FROM object_index i JOIN objects o ON o.id = i.object_id \
                 WHERE i.kind = $1 AND i.field = $2 AND i.value = $3 ORDER BY o.id LIMIT 4",
            )
            .bind(k.name)
            .bind(f.name)
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
            let mut shown: Vec<String> = names.into_iter().filter_map(|(n,)| n).take(3).collect();
            if n > shown.len() as i64 && !shown.is_empty() {
                shown.push("…".into());
            }
            if shown.is_empty() {
                out.push(format!("{n} {} (via {})", k.plural, f.name));
            } else {
                out.push(format!(
                    "{n} {} ({}; via {})",
                    k.plural,
                    shown.join(", "),
                    f.name
                ));
            }
        }
    }
    Ok(out)
}

/// A create's statements (SQLite; PostgreSQL has `try_insert_one_statement`).
async fn insert_in(
    conn: &mut sqlx::AnyConnection,
    ids: Arc<IdGen>,
    kind: &'static Kind,
    body: Map<String, Value>,
    notify: bool,
) -> Result<Stored, StoreError> {
    check_references(&mut *conn, kind, &body).await?;
    let now = now_micros();
    let stored = Stored {
        id: ids.next(),
        kind,
        version: 1,
        created_at: now,
        updated_at: now,
        body,
    };
    let res = sqlx::query(
        "INSERT INTO objects (id, kind, name, version, created_at, updated_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(stored.id)
    .bind(kind.name)
    .bind(stored.name().map(str::to_string))
    .bind(stored.version)
    .bind(now)
    .bind(now)
    .bind(Value::Object(stored.body.clone()).to_string())
    .execute(&mut *conn)
    .await;
    if let Err(e) = res {
        return Err(write_err(e, kind, stored.name()));
    }
    write_index(&mut *conn, kind, stored.id, &stored.body).await?;
    sqlx::query(
        "INSERT INTO kind_counts (kind, shard, n) VALUES ($1, $2, 1) \
         ON CONFLICT (kind, shard) DO UPDATE SET n = kind_counts.n + 1",
    )
    .bind(kind.name)
    .bind(count_shard(stored.id))
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    write_outbox(
        &ids,
        &mut *conn,
        &stored,
        Operation::Created,
        notify.then_some(Operation::Created),
    )
    .await?;
    Ok(stored)
}

/// An update's statements: the new body if the version is still `expected_version`.
async fn update_in(
    conn: &mut sqlx::AnyConnection,
    ids: Arc<IdGen>,
    kind: &'static Kind,
    id: i64,
    expected_version: i64,
    body: Map<String, Value>,
    notify: Option<Operation>,
) -> Result<Stored, StoreError> {
    check_references(&mut *conn, kind, &body).await?;
    let now = now_micros();
    let name = body.get("Name").and_then(Value::as_str).map(str::to_string);
    let res = sqlx::query(
        "UPDATE objects SET name = $1, version = version + 1, updated_at = $2, body = $3 \
         WHERE id = $4 AND kind = $5 AND version = $6",
    )
    .bind(name.clone())
    .bind(now)
    .bind(Value::Object(body).to_string())
    .bind(id)
    .bind(kind.name)
    .bind(expected_version)
    .execute(&mut *conn)
    .await;
    let res = match res {
        Ok(r) => r,
        Err(e) => return Err(write_err(e, kind, name.as_deref())),
    };
    if res.rows_affected() == 0 {
        let current: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM objects WHERE id = $1 AND kind = $2")
                .bind(id)
                .bind(kind.name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(map_err)?;
        return Err(match current {
            Some((v,)) => StoreError::StaleVersion { current: v },
            None => StoreError::NotFound,
        });
    }
    let row = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    let stored = Stored::from_row(kind, &row)?;
    sqlx::query("DELETE FROM object_index WHERE object_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    write_index(&mut *conn, kind, id, &stored.body).await?;
    write_outbox(&ids, &mut *conn, &stored, Operation::Updated, notify).await?;
    Ok(stored)
}

/// A delete's statements: the object and everything that cascades from it.
async fn remove_in(
    conn: &mut sqlx::AnyConnection,
    ids: Arc<IdGen>,
    kind: &'static Kind,
    id: i64,
    expected_version: Option<i64>,
) -> Result<Stored, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "{SELECT} WHERE id = $1 AND kind = $2"
    )))
    .bind(id)
    .bind(kind.name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)?;
    let stored = Stored::from_row(kind, &row)?;
    if let Some(v) = expected_version {
        if v != stored.version {
            return Err(StoreError::StaleVersion {
                current: stored.version,
            });
        }
    }
    // A bound object must have let go first (its controller unlinks it when done).
    let blockers =
        blockers_in(&mut *conn, kind, id, &[OnDelete::Restrict, OnDelete::Bound]).await?;
    if !blockers.is_empty() {
        return Err(StoreError::Conflict(format!(
            "{} {id} is still referenced by {}; delete those first",
            kind.name,
            blockers.join(", ")
        )));
    }
    // Cascade breadth-first; the registry's references form a DAG, so this ends.
    let mut queue = vec![stored.clone()];
    while let Some(victim) = queue.pop() {
        for (k, f) in
            references_to(victim.kind.name).filter(|(_, f)| f.on_delete == OnDelete::Cascade)
        {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "{SELECT} WHERE id IN (SELECT object_id FROM object_index WHERE kind = $1 AND field = $2 AND value = $3)"
            )))
            .bind(k.name)
            .bind(f.name)
            .bind(victim.id.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
            for r in rows {
                queue.push(Stored::from_row(k, &r)?);
            }
        }
        sqlx::query("DELETE FROM object_index WHERE object_id = $1")
            .bind(victim.id)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM objects WHERE id = $1")
            .bind(victim.id)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        sqlx::query("UPDATE kind_counts SET n = n - 1 WHERE kind = $1 AND shard = $2")
            .bind(victim.kind.name)
            .bind(count_shard(victim.id))
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        write_outbox(&ids, &mut *conn, &victim, Operation::Deleted, None).await?;
    }
    Ok(stored)
}

fn outbox_row(r: &AnyRow) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        seq: r.try_get("seq").map_err(map_err)?,
        kind: r.try_get("kind").map_err(map_err)?,
        event: r.try_get("event").map_err(map_err)?,
        stream: r.try_get("stream").map_err(map_err)?,
        subject: r.try_get("subject").map_err(map_err)?,
        payload: r.try_get("payload").map_err(map_err)?,
    })
}
