//! Every SQL statement Assent runs, grouped by what it serves.

/// Writes rows into a table in one statement, on the concrete connection
/// (diesel's connection enum cannot build batch inserts). On PostgreSQL
/// that is `COPY ... FROM STDIN` (binary): a multi-row `INSERT` is a new
/// statement for every batch size, parsed, planned and set up anew each
/// time, which cost PostgreSQL more than the rows themselves (see
/// docs/performance.md); `COPY` has nothing to plan. SQLite, in-process,
/// inserts the rows with one multi-row `INSERT`. Used by the sign-up
/// batches and `ledger::append_many`; defined before the modules below.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgres(pg) => {
                diesel::copy_from($table).from_insertable($rows).execute(pg)
            }
            $crate::db::DbConnection::Sqlite(lite) => {
                diesel::insert_into($table).values($rows).execute(lite)
            }
        }
    };
}

pub mod api_keys;
pub mod confirm;
pub mod exports;
pub mod leave;
pub mod ledger;
pub mod lists;
pub mod outbox;
pub mod refusal;
pub mod secrets;
pub mod signup;
pub mod subjects;
pub mod webhooks;

/// A subscription state as stored; a value no version of Assent writes is
/// a deserialization error, not a panic.
pub fn stored_state(value: &str) -> Result<crate::domain::SubscriptionState, crate::db::DbError> {
    crate::domain::SubscriptionState::parse(value).map_err(|e| {
        crate::db::DbError::Query(diesel::result::Error::DeserializationError(e.into()))
    })
}

/// A new time-ordered id (UUIDv7) as stored.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
