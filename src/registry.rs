//! The lists this instance serves: configuration synced into the database
//! at start-up (texts are only ever added), then held in memory.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use crate::config::ValidList;
use crate::db::repo::lists::{self, ConsentVersion};
use crate::db::{DbConnection, DbError, retry, write_transaction};
use crate::webhooks::{ListWebhooks, WebhookDirectory};

/// One list with its database id and current consent version.
#[derive(Debug, Clone)]
pub struct ListEntry {
    pub id: String,
    pub settings: ValidList,
    pub current: ConsentVersion,
}

impl ListEntry {
    /// The slug.
    pub fn slug(&self) -> &str {
        self.settings.slug.as_str()
    }

    /// The list's language tag.
    pub fn language(&self) -> &str {
        self.settings.language.as_str()
    }
}

/// The lists by slug and id.
#[derive(Debug, Clone, Default)]
pub struct ListRegistry {
    by_slug: HashMap<String, Arc<ListEntry>>,
    by_id: HashMap<String, Arc<ListEntry>>,
    order: Vec<Arc<ListEntry>>,
}

impl ListRegistry {
    /// Finds a list by slug.
    pub fn by_slug(&self, slug: &str) -> Option<&Arc<ListEntry>> {
        self.by_slug.get(slug)
    }

    /// Finds a list by id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<ListEntry>> {
        self.by_id.get(id)
    }

    /// Every list, in configuration order.
    pub fn all(&self) -> &[Arc<ListEntry>] {
        &self.order
    }

    /// The lists' webhook endpoints by list id, as the database layer and
    /// the webhook worker look them up.
    pub fn webhook_directory(&self) -> WebhookDirectory {
        WebhookDirectory::new(self.order.iter().map(|list| ListWebhooks {
            list_id: list.id.clone(),
            slug: list.slug().to_owned(),
            endpoints: list.settings.webhooks.clone(),
        }))
    }
}

fn settings_record(list: &ValidList) -> String {
    json!({
        "from": list.from.to_string(),
        "reply_to": list.reply_to.as_ref().map(|m| m.to_string()),
        "double_opt_in": list.double_opt_in,
        "thank_you_url": list.thank_you_url.as_ref().map(|u| u.as_str()),
        "confirmed_url": list.confirmed_url.as_ref().map(|u| u.as_str()),
        "redirect_urls": list.redirect_urls,
        "language": list.language.as_str(),
    })
    .to_string()
}

/// Writes the configured lists and texts to the database and returns the
/// registry. Retries when another instance syncs at the same moment.
pub fn sync(
    conn: &mut DbConnection,
    configured: &[ValidList],
    now: chrono::NaiveDateTime,
) -> Result<ListRegistry, DbError> {
    let mut registry = ListRegistry::default();
    for list in configured {
        let entry = retry(|| {
            write_transaction(conn, |conn| {
                let id = lists::upsert_list(
                    conn,
                    list.slug.as_str(),
                    &list.name,
                    &settings_record(list),
                    now,
                )?;
                let mut current = None;
                for (index, (text, language)) in list.consent_texts.iter().enumerate() {
                    let version = lists::register_version(conn, &id, text, language, now)?;
                    if index == list.current_text {
                        current = Some(version);
                    }
                }
                let current = current.ok_or(DbError::Query(diesel::result::Error::NotFound))?;
                lists::set_current_version(conn, &id, &current.id)?;
                Ok::<_, DbError>(ListEntry {
                    id,
                    settings: list.clone(),
                    current,
                })
            })
        })?;
        let entry = Arc::new(entry);
        registry
            .by_slug
            .insert(entry.slug().to_owned(), Arc::clone(&entry));
        registry.by_id.insert(entry.id.clone(), Arc::clone(&entry));
        registry.order.push(entry);
    }
    Ok(registry)
}
