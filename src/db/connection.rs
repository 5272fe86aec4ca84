//! The `MultiConnection` enum, URL parsing, the r2d2 pool and transactions.

use std::time::Duration;

use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{self, ManageConnection, Pool};
use diesel::{PgConnection, SqliteConnection};

/// A connection to either supported backend.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A database URL whose scheme has been checked.
#[derive(Clone)]
pub struct DbUrl {
    backend: Backend,
    /// What the driver is given: the URL for PostgreSQL, the path for SQLite.
    target: String,
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The PostgreSQL URL may hold a password.
        f.debug_struct("DbUrl")
            .field("backend", &self.backend)
            .field("target", &self.redacted())
            .finish()
    }
}

/// Why a database URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum DbUrlError {
    #[error(
        "unsupported database URL scheme in {0:?}: use sqlite://PATH, postgres://... or postgresql://..."
    )]
    UnsupportedScheme(String),
    #[error("the sqlite:// URL has no file path")]
    EmptySqlitePath,
}

impl DbUrl {
    /// Parses `sqlite://PATH`, `postgres://...` or `postgresql://...`; every
    /// other scheme is refused, never silently treated as a SQLite path.
    pub fn parse(url: &str) -> Result<Self, DbUrlError> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbUrlError::EmptySqlitePath);
            }
            return Ok(DbUrl {
                backend: Backend::Sqlite,
                target: path.to_owned(),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl {
                backend: Backend::Postgres,
                target: url.to_owned(),
            });
        }
        let scheme = url.split("://").next().unwrap_or(url);
        Err(DbUrlError::UnsupportedScheme(scheme.to_owned()))
    }

    /// The backend this URL names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The PostgreSQL URL or SQLite path, as given to the driver.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The URL with any password replaced, for logs.
    pub fn redacted(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}", self.target),
            Backend::Postgres => match url::Url::parse(&self.target) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    parsed.to_string()
                }
                Err(_) => "postgres://(unparseable)".to_owned(),
            },
        }
    }

    /// Whether this process may write the SQLite database now: the file
    /// and its `-wal` file (where they exist) are writable for it. SQLite
    /// opens a file it may not write read-only without saying so, and a
    /// connection opened earlier keeps writing through its open file even
    /// after the file was made read-only; checking the files themselves
    /// makes a read-only database refuse every write alike, and recover as
    /// soon as it is writable again. Always `Ok` for PostgreSQL.
    ///
    /// The check is `access(2)`, never opening the files: closing a file
    /// descriptor of the database would drop SQLite's POSIX locks on it in
    /// this process, and another process could then reset the WAL under
    /// it (<https://www.sqlite.org/howtocorrupt.html>, section 2.2).
    pub fn check_writable(&self) -> Result<(), String> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let wal = format!("{}-wal", self.target);
        for path in [self.target.as_str(), wal.as_str()] {
            let Ok(c_path) = std::ffi::CString::new(path) else {
                return Ok(());
            };
            // SAFETY: a valid NUL-terminated path; access() only reads it.
            if unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0 {
                continue;
            }
            let error = std::io::Error::last_os_error();
            // Not created yet (a new database, or no write since the last
            // checkpoint removed the WAL): SQLite creates it.
            if error.kind() != std::io::ErrorKind::NotFound {
                return Err(format!(
                    "the SQLite database is read-only: {path} is not writable ({error})"
                ));
            }
        }
        Ok(())
    }

    /// Opens one connection of the right kind, reporting the driver's own
    /// error (the derived `establish` only says the URL matched no variant).
    pub fn establish(&self, busy_timeout: Duration) -> diesel::ConnectionResult<DbConnection> {
        match self.backend {
            Backend::Postgres => PgConnection::establish(&self.target).map(DbConnection::Postgres),
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.target)?;
                // The busy timeout first: switching to WAL takes a lock that
                // another connection may hold (a writer, or the last one to
                // close checkpointing the log), and without the timeout that
                // fails at once with "database is locked". WAL lets readers
                // run beside the writer; NORMAL is durable across process
                // crashes in WAL mode (a power loss may drop the last
                // commits, see docs/operations.md).
                let pragmas = format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    busy_timeout.as_millis()
                );
                conn.batch_execute(&pragmas)
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// The r2d2 manager that builds the concrete connection for the URL's scheme.
pub struct DbConnectionManager {
    url: DbUrl,
    busy_timeout: Duration,
}

impl ManageConnection for DbConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        let conn = self
            .url
            .establish(self.busy_timeout)
            .map_err(r2d2::Error::ConnectionError)?;
        // A read-only SQLite file would give a connection that fails every
        // write; no connection is better (requests answer 503 and name the
        // cause, and a connection is made again once the file is writable).
        self.url.check_writable().map_err(read_only)?;
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)?;
        self.url.check_writable().map_err(read_only)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        <DbConnection as Connection>::TransactionManager::is_broken_transaction_manager(conn)
    }
}

fn read_only(why: String) -> r2d2::Error {
    r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(why))
}

/// The shared pool.
pub type DbPool = Pool<DbConnectionManager>;

/// Builds the pool without opening connections up front: a connection is
/// made when first needed, and a lost database makes requests answer 503
/// (and `/readyz` report it) until it is back, without a restart.
pub fn build_pool(
    url: &DbUrl,
    max_size: u32,
    connection_timeout: Duration,
    busy_timeout: Duration,
) -> DbPool {
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(connection_timeout)
        // A connection that PostgreSQL dropped (a restart, a failover) looks
        // healthy to r2d2; testing it on checkout replaces it, so the
        // service recovers by itself. One `SELECT 1` round trip a request
        // (and, on SQLite, opening the database files to see that they are
        // still writable: see `DbUrl::check_writable`).
        .test_on_check_out(true)
        .build_unchecked(DbConnectionManager {
            url: url.clone(),
            busy_timeout,
        })
}

/// Errors of a unit of work against the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time (pool exhausted or database down).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl DbError {
    /// Whether a retry of the whole transaction may succeed (a lost race on
    /// a unique key, a serialization failure, a busy SQLite file).
    pub fn is_retryable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Unavailable(_) => false,
            DbError::Query(Error::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure => {
                    true
                }
                _ => {
                    let message = info.message();
                    message.contains("database is locked") || message.contains("deadlock")
                }
            },
            DbError::Query(Error::NotFound) => false,
            DbError::Query(_) => false,
        }
    }

    /// Whether the database itself is out of reach or refusing writes
    /// (connection lost, read-only or full disk), or a transaction kept
    /// losing its race after every retry: answered with 503.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Unavailable(_) => true,
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => {
                true
            }
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            DbError::Query(Error::DatabaseError(_, info)) => {
                let message = info.message();
                message.contains("readonly database")
                    || message.contains("disk is full")
                    || message.contains("database or disk is full")
                    || message.contains("unable to open database")
                    || message.contains("terminating connection")
                    || message.contains("server closed the connection")
                    || message.contains("no connection to the server")
                    || message.contains("database is locked")
            }
            DbError::Query(Error::BrokenTransactionManager) => true,
            DbError::Query(_) => false,
        }
    }
}

impl From<r2d2::PoolError> for DbError {
    fn from(error: r2d2::PoolError) -> Self {
        DbError::Unavailable(error.to_string())
    }
}

/// Runs `work` in a write transaction: `BEGIN IMMEDIATE` on SQLite (takes
/// the write lock up front, so a read-then-write never dead-ends in
/// SQLITE_BUSY), a plain `BEGIN` on PostgreSQL. Rolls back on error.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?
        }
        DbConnection::Postgres(inner) => {
            <AnsiTransactionManager as TransactionManager<PgConnection>>::begin_transaction(inner)?
        }
    }
    match work(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            // The original error matters more than a failed rollback, which
            // leaves the connection marked broken and r2d2 discards it.
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
            Err(error)
        }
    }
}

/// Runs the look-ups of `work`, inside a transaction, as index look-ups.
/// They fetch a batch's keys (`email_hmac = ANY($1)`, ...), for which a
/// sequential scan is never right, yet PostgreSQL picks one while a table
/// has no statistics (a new database filling up before autovacuum's first
/// `ANALYZE`): it then assumes each key matches 0.5% of the rows, and with
/// a batch of keys the whole table. Prepared statements keep such a plan,
/// so every batch would read every subscriber. `enable_seqscan` is turned
/// off for these statements only (`SET LOCAL`, turned back on before
/// returning); the inserts that follow and their foreign-key checks plan
/// as usual. Outside a transaction, `work` runs in a read-only snapshot.
/// Nothing to do on SQLite, which looks keys up by index.
pub fn with_index_lookups<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let DbConnection::Postgres(pg) = conn else {
        return work(conn);
    };
    let in_transaction = AnsiTransactionManager::transaction_manager_status_mut(pg)
        .transaction_depth()?
        .is_some();
    if !in_transaction {
        // `SET LOCAL` lasts until the end of the transaction: without one
        // it would do nothing.
        return read_snapshot(conn, |conn| with_index_lookups(conn, work));
    }
    pg.batch_execute("SET LOCAL enable_seqscan = off")?;
    let result = work(conn);
    let DbConnection::Postgres(pg) = conn else {
        return result;
    };
    // After a failed statement the transaction takes no more commands:
    // `work`'s error is the one to report (and to classify for a retry),
    // not the refused reset's.
    let reset = pg.batch_execute("SET LOCAL enable_seqscan = on");
    let value = result?;
    reset?;
    Ok(value)
}

/// Runs `work` in one read-only snapshot, so several statements see the
/// database as of one moment: `BEGIN ISOLATION LEVEL REPEATABLE READ READ
/// ONLY` on PostgreSQL (the snapshot is taken at the first statement); on
/// SQLite a deferred read transaction, which in WAL mode reads one snapshot
/// from its first read to its end and never blocks writers. Committed at
/// the end (it wrote nothing), rolled back on error.
pub fn read_snapshot<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConnection::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN DEFERRED")?
        }
        DbConnection::Postgres(inner) => AnsiTransactionManager::begin_transaction_sql(
            inner,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )?,
    }
    match work(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            // As in `write_transaction`: a failed rollback marks the
            // connection broken and r2d2 discards it.
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another process holding the database (here: a writer in the middle
    /// of a transaction, before the file is in WAL mode) makes a new
    /// connection wait for up to the busy timeout, not fail at once.
    #[test]
    fn a_sqlite_connection_waits_for_a_lock_held_while_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.db");
        let mut holder = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        holder
            .batch_execute("CREATE TABLE t (x INTEGER); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
            .unwrap();
        let url = DbUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
        let opening = std::thread::spawn(move || {
            url.establish(Duration::from_secs(10))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        std::thread::sleep(Duration::from_millis(300));
        holder.batch_execute("COMMIT").unwrap();
        assert_eq!(opening.join().unwrap(), Ok(()));
    }
}
