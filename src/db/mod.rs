//! The database layer: one connection enum over PostgreSQL and SQLite, the
//! pool, migrations, the schema and the repository functions (all SQL).

pub mod connection;
pub mod migrate;
pub mod models;
pub mod repo;
pub mod retry;
pub mod schema;

pub use connection::{
    Backend, DbConnection, DbError, DbPool, DbUrl, build_pool, read_snapshot, with_index_lookups,
    write_transaction,
};
pub use retry::{RetryableError, retry};
