//! Admin API keys, stored only as SHA-256 (the keys are 256 random bits,
//! so a fast hash is enough and lookups need no constant-time compare).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::api_keys;
use crate::db::{DbConnection, DbError};

/// A key as listed (never the key itself).
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyInfo {
    pub name: String,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
}

/// Why a key could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("a key named {0:?} exists already")]
    NameTaken(String),
    #[error("no active key is named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ApiKeyError {
    fn from(error: diesel::result::Error) -> Self {
        ApiKeyError::Db(DbError::Query(error))
    }
}

/// Stores a new key's hash under a name.
pub fn create(
    conn: &mut DbConnection,
    name: &str,
    key_sha256: &str,
    now: NaiveDateTime,
) -> Result<(), ApiKeyError> {
    let taken = api_keys::table
        .filter(api_keys::name.eq(name))
        .count()
        .get_result::<i64>(conn)?;
    if taken > 0 {
        return Err(ApiKeyError::NameTaken(name.to_owned()));
    }
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(super::new_id()),
            api_keys::name.eq(name),
            api_keys::key_sha256.eq(key_sha256),
            api_keys::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Every key, oldest first.
pub fn list(conn: &mut DbConnection) -> Result<Vec<ApiKeyInfo>, DbError> {
    Ok(api_keys::table
        .order(api_keys::created_at.asc())
        .select(ApiKeyInfo::as_select())
        .load(conn)?)
}

/// Revokes a key by name.
pub fn revoke(conn: &mut DbConnection, name: &str, now: NaiveDateTime) -> Result<(), ApiKeyError> {
    let updated = diesel::update(
        api_keys::table
            .filter(api_keys::name.eq(name))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(now))
    .execute(conn)?;
    if updated == 0 {
        return Err(ApiKeyError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// The name of the active key with this hash, noting its use.
pub fn authenticate(
    conn: &mut DbConnection,
    key_sha256: &str,
    now: NaiveDateTime,
) -> Result<Option<String>, DbError> {
    let found = api_keys::table
        .filter(api_keys::key_sha256.eq(key_sha256))
        .filter(api_keys::revoked_at.is_null())
        .select((api_keys::id, api_keys::name, api_keys::last_used_at))
        .first::<(String, String, Option<NaiveDateTime>)>(conn)
        .optional()?;
    let Some((id, name, last_used)) = found else {
        return Ok(None);
    };
    // Written at most once a minute: a busy admin client is not a write load.
    if last_used.is_none_or(|t| now - t > chrono::Duration::minutes(1)) {
        diesel::update(api_keys::table.find(&id))
            .set(api_keys::last_used_at.eq(now))
            .execute(conn)?;
    }
    Ok(Some(name))
}
