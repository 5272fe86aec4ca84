//! Lists and their consent text versions.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::models::{ConsentTextRow, ConsentVersionRow, ListRow};
use crate::db::schema::{consent_texts, consent_versions, lists};
use crate::db::{DbConnection, DbError};
use crate::domain::{ConsentHash, ConsentText, LanguageTag};

/// A registered consent text version of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentVersion {
    pub id: String,
    pub list_id: String,
    pub sha256: String,
    pub body: String,
    pub language: String,
    pub created_at: NaiveDateTime,
}

/// Which version a sign-up names.
#[derive(Debug, Clone)]
pub enum ConsentRef {
    /// By the version id a form carried.
    Id(String),
    /// By the verbatim text shown.
    Text(ConsentHash),
    /// Both: they must name the same version.
    Both(String, ConsentHash),
}

impl ConsentRef {
    /// Whether `version` is the one this reference names (the same test
    /// `find_version` makes in SQL, for versions already loaded).
    pub fn names(&self, version: &ConsentVersion) -> bool {
        match self {
            ConsentRef::Id(id) => version.id == *id,
            ConsentRef::Text(hash) => version.sha256 == hash.as_str(),
            ConsentRef::Both(id, hash) => version.id == *id && version.sha256 == hash.as_str(),
        }
    }
}

/// Creates or updates a list from configuration and registers its consent
/// texts; texts never disappear. Returns the list id.
pub fn upsert_list(
    conn: &mut DbConnection,
    slug: &str,
    name: &str,
    settings: &str,
    now: NaiveDateTime,
) -> Result<String, DbError> {
    let existing = lists::table
        .filter(lists::slug.eq(slug))
        .select(lists::id)
        .first::<String>(conn)
        .optional()?;
    match existing {
        Some(id) => {
            diesel::update(lists::table.find(&id))
                .set((
                    lists::name.eq(name),
                    lists::settings.eq(settings),
                    lists::updated_at.eq(now),
                ))
                .execute(conn)?;
            Ok(id)
        }
        None => {
            let id = super::new_id();
            diesel::insert_into(lists::table)
                .values(ListRow {
                    id: id.clone(),
                    slug: slug.to_owned(),
                    name: name.to_owned(),
                    settings: settings.to_owned(),
                    current_consent_version_id: None,
                    created_at: now,
                    updated_at: now,
                })
                .execute(conn)?;
            Ok(id)
        }
    }
}

/// Registers a text for a list (once per list and text) and returns the
/// version.
pub fn register_version(
    conn: &mut DbConnection,
    list_id: &str,
    text: &ConsentText,
    language: &LanguageTag,
    now: NaiveDateTime,
) -> Result<ConsentVersion, DbError> {
    let sha256 = text.hash().as_str().to_owned();
    let known_text = consent_texts::table
        .find(&sha256)
        .select(consent_texts::sha256)
        .first::<String>(conn)
        .optional()?;
    if known_text.is_none() {
        diesel::insert_into(consent_texts::table)
            .values(ConsentTextRow {
                sha256: sha256.clone(),
                body: text.as_str().to_owned(),
                language: language.as_str().to_owned(),
                first_seen_at: now,
            })
            .execute(conn)?;
    }
    let version = find_version(conn, list_id, &ConsentRef::Text(text.hash()))?;
    if let Some(version) = version {
        return Ok(version);
    }
    let id = super::new_id();
    diesel::insert_into(consent_versions::table)
        .values(ConsentVersionRow {
            id: id.clone(),
            list_id: list_id.to_owned(),
            text_sha256: sha256,
            created_at: now,
        })
        .execute(conn)?;
    find_version(conn, list_id, &ConsentRef::Id(id))?
        .ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// Makes a version the list's current one.
pub fn set_current_version(
    conn: &mut DbConnection,
    list_id: &str,
    version_id: &str,
) -> Result<(), DbError> {
    diesel::update(lists::table.find(list_id))
        .set(lists::current_consent_version_id.eq(version_id))
        .execute(conn)?;
    Ok(())
}

/// Finds a registered version of a list.
pub fn find_version(
    conn: &mut DbConnection,
    list_id: &str,
    reference: &ConsentRef,
) -> Result<Option<ConsentVersion>, DbError> {
    let query = consent_versions::table
        .inner_join(consent_texts::table)
        .filter(consent_versions::list_id.eq(list_id))
        .select((
            consent_versions::id,
            consent_versions::list_id,
            consent_texts::sha256,
            consent_texts::body,
            consent_texts::language,
            consent_versions::created_at,
        ))
        .into_boxed();
    let query = match reference {
        ConsentRef::Id(id) => query.filter(consent_versions::id.eq(id.clone())),
        ConsentRef::Text(hash) => query.filter(consent_texts::sha256.eq(hash.as_str().to_owned())),
        ConsentRef::Both(id, hash) => query
            .filter(consent_versions::id.eq(id.clone()))
            .filter(consent_texts::sha256.eq(hash.as_str().to_owned())),
    };
    let row = query
        .first::<(String, String, String, String, String, NaiveDateTime)>(conn)
        .optional()?;
    Ok(row.map(
        |(id, list_id, sha256, body, language, created_at)| ConsentVersion {
            id,
            list_id,
            sha256,
            body,
            language,
            created_at,
        },
    ))
}

/// Every version of a list, oldest first.
pub fn versions_of(conn: &mut DbConnection, list_id: &str) -> Result<Vec<ConsentVersion>, DbError> {
    versions_of_lists(conn, &[list_id])
}

/// Every version of some lists, oldest first.
pub fn versions_of_lists(
    conn: &mut DbConnection,
    list_ids: &[&str],
) -> Result<Vec<ConsentVersion>, DbError> {
    let rows = consent_versions::table
        .inner_join(consent_texts::table)
        .filter(consent_versions::list_id.eq_any(list_ids))
        .order(consent_versions::created_at.asc())
        .select((
            consent_versions::id,
            consent_versions::list_id,
            consent_texts::sha256,
            consent_texts::body,
            consent_texts::language,
            consent_versions::created_at,
        ))
        .load::<(String, String, String, String, String, NaiveDateTime)>(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, list_id, sha256, body, language, created_at)| ConsentVersion {
                id,
                list_id,
                sha256,
                body,
                language,
                created_at,
            },
        )
        .collect())
}
