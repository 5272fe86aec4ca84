//! Every SQL statement Assent runs, grouped by what it serves.

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

/// A new time-ordered id (UUIDv7) as stored.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
