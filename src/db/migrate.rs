//! Embedded migrations, one tree per backend, run under a lock so that
//! instances starting together do not race, and refused when the database
//! is newer than this binary.

use diesel::PgConnection;
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sqlite::Sqlite;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::DbConnection;

const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// An arbitrary constant that names Assent's migration lock.
const MIGRATION_LOCK_KEY: i64 = 0x4153_5345_4e54_0001;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the migration state of a database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationStatus {
    /// Every embedded migration is applied and nothing unknown is.
    Current,
    /// Some embedded migrations are not applied yet.
    Pending(Vec<String>),
    /// The database has migrations this binary does not know: it was
    /// upgraded by a newer version.
    NewerThanBinary(Vec<String>),
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database has migrations this binary does not know ({0}); it was migrated by a newer \
         Assent. Run that version, or restore a backup taken before the upgrade"
    )]
    NewerThanBinary(String),
    #[error("running migrations failed: {0}")]
    Failed(String),
}

fn embedded_versions<DB: diesel::backend::Backend>(
    source: &EmbeddedMigrations,
) -> Result<Vec<String>, BoxError>
where
    EmbeddedMigrations: MigrationSource<DB>,
{
    Ok(MigrationSource::<DB>::migrations(source)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect())
}

fn status_of<C, DB>(conn: &mut C, source: &EmbeddedMigrations) -> Result<MigrationStatus, BoxError>
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let known = embedded_versions::<DB>(source)?;
    let applied: Vec<String> = conn
        .applied_migrations()?
        .iter()
        .map(|v| v.to_string())
        .collect();
    let unknown: Vec<String> = applied
        .iter()
        .filter(|v| !known.contains(v))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Ok(MigrationStatus::NewerThanBinary(unknown));
    }
    let pending: Vec<String> = known.into_iter().filter(|v| !applied.contains(v)).collect();
    if pending.is_empty() {
        Ok(MigrationStatus::Current)
    } else {
        Ok(MigrationStatus::Pending(pending))
    }
}

/// Reports whether the schema is current, without changing anything.
pub fn status(conn: &mut DbConnection) -> Result<MigrationStatus, MigrateError> {
    let result = match conn {
        DbConnection::Postgres(c) => status_of::<_, Pg>(c, &POSTGRES),
        DbConnection::Sqlite(c) => status_of::<_, Sqlite>(c, &SQLITE),
    };
    result.map_err(|e| MigrateError::Failed(e.to_string()))
}

/// Applies every pending migration and returns the versions applied.
pub fn run(conn: &mut DbConnection) -> Result<Vec<String>, MigrateError> {
    match conn {
        DbConnection::Postgres(c) => with_advisory_lock(c, |c| apply::<_, Pg>(c, POSTGRES)),
        DbConnection::Sqlite(c) => apply::<_, Sqlite>(c, SQLITE),
    }
}

fn apply<C, DB>(conn: &mut C, source: EmbeddedMigrations) -> Result<Vec<String>, MigrateError>
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    match status_of::<C, DB>(conn, &source).map_err(|e| MigrateError::Failed(e.to_string()))? {
        MigrationStatus::NewerThanBinary(unknown) => {
            Err(MigrateError::NewerThanBinary(unknown.join(", ")))
        }
        MigrationStatus::Current => Ok(Vec::new()),
        MigrationStatus::Pending(_) => conn
            .run_pending_migrations(source)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect())
            .map_err(|e| MigrateError::Failed(e.to_string())),
    }
}

/// Reverts every applied migration (used by CI's up-down-up check).
pub fn revert_all(conn: &mut DbConnection) -> Result<(), MigrateError> {
    let result = match conn {
        DbConnection::Postgres(c) => c.revert_all_migrations(POSTGRES).map(|_| ()),
        DbConnection::Sqlite(c) => c.revert_all_migrations(SQLITE).map(|_| ()),
    };
    result.map_err(|e| MigrateError::Failed(e.to_string()))
}

/// Holds a session-level advisory lock while `work` runs, so two instances
/// starting together migrate one after the other.
fn with_advisory_lock<T>(
    conn: &mut PgConnection,
    work: impl FnOnce(&mut PgConnection) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .map_err(|e| MigrateError::Failed(format!("taking the migration lock: {e}")))?;
    let result = work(conn);
    let unlock = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
    let value = result?;
    unlock.map_err(|e| MigrateError::Failed(format!("releasing the migration lock: {e}")))?;
    Ok(value)
}
