//! Server secrets generated on first start and shared by every instance.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::server_secrets;
use crate::db::{DbConnection, DbError};

/// Returns the secret called `name`, creating it with `generate` if no
/// instance has yet. Two instances racing both end up with the winner's.
pub fn get_or_create(
    conn: &mut DbConnection,
    name: &str,
    now: NaiveDateTime,
    generate: impl FnOnce() -> String,
) -> Result<(String, bool), DbError> {
    if let Some(secret) = find(conn, name)? {
        return Ok((secret, false));
    }
    let inserted = diesel::insert_into(server_secrets::table)
        .values((
            server_secrets::name.eq(name),
            server_secrets::secret.eq(generate()),
            server_secrets::created_at.eq(now),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => {}
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {}
        Err(e) => return Err(e.into()),
    }
    let secret = find(conn, name)?.ok_or(DbError::Query(diesel::result::Error::NotFound))?;
    Ok((secret, inserted.is_ok()))
}

/// Returns the secret called `name`, if one was stored.
pub fn find(conn: &mut DbConnection, name: &str) -> Result<Option<String>, DbError> {
    Ok(server_secrets::table
        .filter(server_secrets::name.eq(name))
        .select(server_secrets::secret)
        .first::<String>(conn)
        .optional()?)
}
