//! Running a unit of database work from a handler: on the blocking pool,
//! inside the request's span, with errors mapped to responses.

use crate::context::AppContext;
use crate::db::{DbConnection, DbError};
use crate::error::{AppError, Format};
use crate::telemetry::spawn_blocking_in_span;

/// Takes a pooled connection and runs `work` with it.
pub async fn with_conn<T, F>(ctx: &AppContext, format: Format, work: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
{
    let pool = ctx.pool.clone();
    spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        work(&mut conn)
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("blocking pool: {e}"), format))?
    .map_err(|e| AppError::database(e, format))
}
