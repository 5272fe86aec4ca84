//! Schemas of bodies that the handlers build with `serde_json::json!` (so
//! there is no Rust type to derive them from), each named after the function
//! that produces it. Bodies with a real type (`Problem`, `FieldError`,
//! `Challenge`, the ledger `Report`, `NewVersion`) derive their schema where
//! they are defined. The CI's schemathesis run checks these against live
//! answers (`.ci/run`).

#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

/// A constant string member, as its own one-value enum.
macro_rules! constant {
    ($name:ident, $value:literal) => {
        #[doc = concat!("Always `", $value, "`.")]
        #[derive(Serialize, ToSchema)]
        pub enum $name {
            #[serde(rename = $value)]
            #[schema(rename = $value)]
            Value,
        }
    };
}

constant!(Ok, "ok");
constant!(CheckInbox, "check_inbox");
constant!(Pending, "pending");
constant!(Confirmed, "confirmed");
constant!(UnsubscribedStatus, "unsubscribed");
constant!(WithdrawnStatus, "withdrawn");
constant!(ErasedStatus, "erased");
constant!(OneClick, "One-Click");
constant!(UnsubscribeAction, "unsubscribe");

/// `GET /healthz` (`routes::health::healthz`).
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: Ok,
}

/// Whether the service is ready (`routes::health::readyz`).
#[derive(Serialize, ToSchema)]
pub enum ReadyState {
    #[serde(rename = "ready")]
    #[schema(rename = "ready")]
    Ready,
    #[serde(rename = "not_ready")]
    #[schema(rename = "not_ready")]
    NotReady,
}

/// `GET /readyz` (`routes::health::readyz`).
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: ReadyState,
    /// Only when not ready: the migration state, the database error, or
    /// `shutting down`.
    pub reason: Option<String>,
}

/// The JSON body of `POST /subscriptions` (`routes::subscribe`). Unknown
/// members are ignored; `null` counts as absent.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"email": "ann@example.org", "consent": true, "list": "newsletter"}))]
pub struct SignupJson {
    /// The address; trimmed, at most 254 characters.
    pub email: String,
    /// Must be `true` (any other value is not consent).
    pub consent: bool,
    /// A list slug; absent means `newsletter`.
    pub list: Option<String>,
    /// The id (UUID) of a consent version of the list.
    pub consent_version: Option<String>,
    /// The verbatim consent text shown, byte for byte.
    pub consent_text: Option<String>,
    /// At most 100 characters, no control characters; never put into an email.
    pub name: Option<String>,
    /// The page the sign-up came from (else `Referer` is recorded).
    pub source_url: Option<String>,
    /// HTML answers only: followed when equal to one of the list's `redirect_urls`.
    pub redirect: Option<String>,
    /// The honeypot: leave it out or empty.
    pub website: Option<String>,
    /// A solved proof-of-work challenge, on lists with `proof_of_work = true`.
    pub altcha: Option<String>,
}

/// The form fields of `POST /subscriptions` (`application/x-www-form-urlencoded`
/// or `multipart/form-data`); for a repeated field the first one counts.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"email": "ann@example.org", "consent": "on", "list": "newsletter"}))]
pub struct SignupForm {
    /// The address; trimmed, at most 254 characters.
    pub email: String,
    /// Affirmative: `on`, `true`, `yes` or `1` (case-insensitive).
    pub consent: String,
    /// A list slug; absent means `newsletter`.
    pub list: Option<String>,
    /// The id (UUID) of a consent version of the list.
    pub consent_version: Option<String>,
    /// The verbatim consent text shown, byte for byte.
    pub consent_text: Option<String>,
    /// At most 100 characters, no control characters; never put into an email.
    pub name: Option<String>,
    /// The page the sign-up came from (else `Referer` is recorded).
    pub source_url: Option<String>,
    /// Followed when equal to one of the list's `redirect_urls`.
    pub redirect: Option<String>,
    /// The honeypot: leave it empty.
    pub website: Option<String>,
    /// A solved proof-of-work challenge, on lists with `proof_of_work = true`.
    pub altcha: Option<String>,
}

/// The answer to every accepted sign-up, whatever the address's state
/// (`routes::subscribe::accepted`).
#[derive(Serialize, ToSchema)]
pub struct SignupAccepted {
    pub status: CheckInbox,
}

/// A confirmation link that can still be confirmed (`routes::confirm::show`).
#[derive(Serialize, ToSchema)]
pub struct PendingConfirmation {
    pub status: Pending,
    /// The list's slug.
    pub list: String,
    /// The consent text the sign-up recorded.
    pub consent_text: String,
    /// SHA-256 of that text, hex.
    pub consent_sha256: String,
}

/// A confirmed subscription (`routes::confirm::success`); `list` is absent
/// when the list is no longer configured.
#[derive(Serialize, ToSchema)]
pub struct ConfirmedSubscription {
    pub status: Confirmed,
    /// The list's slug.
    pub list: Option<String>,
}

/// What `GET /confirm/{token}` shows.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ConfirmationLink {
    Pending(PendingConfirmation),
    Confirmed(ConfirmedSubscription),
}

/// A subscription's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    Pending,
    Confirmed,
    Unsubscribed,
    Withdrawn,
}

/// `GET /unsubscribe/{token}` (`routes::leave::show`).
#[derive(Serialize, ToSchema)]
pub struct UnsubscribeView {
    /// The list's slug.
    pub list: String,
    pub state: SubscriptionState,
}

/// The only bodies `POST /unsubscribe/{token}` accepts: exactly one field.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UnsubscribeBody {
    OneClick(OneClickBody),
    Page(PageUnsubscribeBody),
}

/// RFC 8058 one-click: `List-Unsubscribe=One-Click`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneClickBody {
    #[serde(rename = "List-Unsubscribe")]
    #[schema(rename = "List-Unsubscribe")]
    pub list_unsubscribe: OneClick,
}

/// The unsubscribe page's button: `action=unsubscribe`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PageUnsubscribeBody {
    pub action: UnsubscribeAction,
}

/// `POST /unsubscribe/{token}` (`routes::leave::unsubscribe`).
#[derive(Serialize, ToSchema)]
pub struct Unsubscribed {
    pub status: UnsubscribedStatus,
}

/// The body of `POST /withdraw/{token}`; other fields are ignored.
#[derive(Serialize, ToSchema)]
pub struct WithdrawBody {
    /// `true`, `on`, `yes` or `1` (case-insensitive) also erases the
    /// person's data; anything else withdraws without erasing.
    pub erase: Option<String>,
}

/// `POST /withdraw/{token}` (`routes::leave::withdraw`).
#[derive(Serialize, ToSchema)]
pub struct Withdrawn {
    pub status: WithdrawnStatus,
    /// Whether the person's data is erased (now or earlier).
    pub erased: bool,
}

/// `GET /refuse/{token}` (`routes::refuse::show`).
#[derive(Serialize, ToSchema)]
pub struct RefusalView {
    /// The UTC date (`YYYY-MM-DD`) a refusal in force ends, or `null`.
    #[schema(format = Date)]
    pub refused_until: Option<String>,
}

/// What `POST /refuse/{token}` does.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefusalAction {
    Refuse,
    Lift,
}

/// The only body `POST /refuse/{token}` accepts: exactly one field.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefusalBody {
    pub action: RefusalAction,
}

/// The outcome of `POST /refuse/{token}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefusalOutcome {
    Refused,
    Lifted,
}

/// `POST /refuse/{token}` (`routes::refuse::act`).
#[derive(Serialize, ToSchema)]
pub struct RefusalDone {
    pub status: RefusalOutcome,
}

/// A list as configured (`routes::admin::lists::list_json`).
#[derive(Serialize, ToSchema)]
pub struct ListView {
    pub slug: String,
    pub name: String,
    /// The From mailbox.
    pub from: String,
    pub reply_to: Option<String>,
    pub double_opt_in: bool,
    pub welcome: bool,
    /// A language tag (`en`, `de-AT`).
    pub language: String,
    pub thank_you_url: Option<String>,
    pub confirmed_url: Option<String>,
    pub redirect_urls: Vec<String>,
    /// The version the hosted form shows.
    pub current_consent_version_id: String,
}

/// `GET /admin/lists`.
#[derive(Serialize, ToSchema)]
pub struct Lists {
    pub lists: Vec<ListView>,
}

/// A consent version (`routes::admin::lists::version_json`).
#[derive(Serialize, ToSchema)]
pub struct ConsentVersionView {
    pub id: String,
    /// SHA-256 of `text`, hex.
    pub sha256: String,
    pub language: String,
    /// The exact text.
    pub text: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// `GET /admin/lists/{slug}`: the list with every consent version, oldest
/// first.
#[derive(Serialize, ToSchema)]
pub struct ListDetail {
    #[serde(flatten)]
    pub list: ListView,
    pub consent_versions: Vec<ConsentVersionView>,
}

/// One line of `GET /admin/lists/{slug}/audience` (NDJSON).
#[derive(Serialize, ToSchema)]
pub struct AudienceMember {
    pub email: String,
    #[schema(format = DateTime)]
    pub confirmed_at: Option<String>,
    pub unsubscribe_url: String,
    /// The exact `List-Unsubscribe` header value.
    pub list_unsubscribe: String,
    /// `List-Unsubscribe=One-Click`.
    pub list_unsubscribe_post: String,
}

/// A person (`routes::admin::subjects::profile_json`).
#[derive(Serialize, ToSchema)]
pub struct Profile {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub erased_at: Option<String>,
    /// Events in the person's chain.
    pub chain_seq: i64,
    /// Hash of the person's last event.
    pub chain_head: String,
}

/// A subscription (`routes::admin::subjects::subscriptions_json`).
#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: String,
    /// The list's slug.
    pub list: String,
    pub state: SubscriptionState,
    pub consent_version_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub confirmed_at: Option<String>,
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
}

/// A ledger event (`exports::event_json`); also one line of
/// `GET /admin/exports/events`.
#[derive(Serialize, ToSchema)]
pub struct LedgerEvent {
    pub id: String,
    pub subscriber_id: String,
    /// Position in the person's chain, from 1.
    pub seq: i64,
    /// `consent_requested`, `consent_confirmed`, `unsubscribed`, ...
    pub kind: String,
    #[schema(format = DateTime)]
    pub occurred_at: String,
    pub subscription_id: Option<String>,
    pub list_id: Option<String>,
    pub consent_version_id: Option<String>,
    pub consent_sha256: Option<String>,
    pub method: Option<String>,
    pub evidence_sha256: Option<String>,
    /// The stored details as a JSON object.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// `GET /admin/subscribers?email=` (`routes::admin::subjects::lookup`).
#[derive(Serialize, ToSchema)]
pub struct SubjectLookup {
    pub subscriber: Profile,
    pub subscriptions: Vec<SubscriptionView>,
    pub events: Vec<LedgerEvent>,
}

/// An evidence row of a person's events.
#[derive(Serialize, ToSchema)]
pub struct EvidenceView {
    pub sha256: String,
    pub ip: Option<String>,
    /// `peer`, `x-forwarded-for` or `forwarded`.
    pub ip_source: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
    #[schema(format = DateTime)]
    pub recorded_at: String,
}

/// A consent text a person's events name.
#[derive(Serialize, ToSchema)]
pub struct AgreedText {
    pub sha256: String,
    pub language: String,
    pub text: String,
}

/// What proves the record.
#[derive(Serialize, ToSchema)]
pub struct Proof {
    pub chain_seq: i64,
    pub chain_head: String,
    pub how_to_verify: String,
}

/// `GET /admin/subjects/{email}/export` (`routes::admin::subjects::export`).
#[derive(Serialize, ToSchema)]
pub struct SubjectExport {
    /// `assent-subject-export-v1`.
    pub format: String,
    #[schema(format = DateTime)]
    pub exported_at: String,
    pub profile: Profile,
    pub subscriptions: Vec<SubscriptionView>,
    pub events: Vec<LedgerEvent>,
    pub evidence: Vec<EvidenceView>,
    pub consent_texts: Vec<AgreedText>,
    pub proof: Proof,
}

/// `DELETE /admin/subjects/{email}` (`routes::admin::subjects::erase`).
#[derive(Serialize, ToSchema)]
pub struct Erased {
    pub status: ErasedStatus,
    /// Subscriptions withdrawn by this erasure.
    pub withdrawn_subscriptions: i64,
}

/// One line of `GET /admin/exports/consent?format=ndjson` (and one CSV
/// row); see docs/api.md for each column.
#[derive(Serialize, ToSchema)]
pub struct ConsentRecord {
    pub subscription_id: String,
    pub list: String,
    pub subscriber_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub email_hmac: String,
    pub erased: bool,
    pub state: SubscriptionState,
    pub consent_version_id: Option<String>,
    pub consent_sha256: Option<String>,
    pub consent_language: Option<String>,
    pub requested_at: Option<String>,
    pub requested_method: Option<String>,
    pub requested_ip: Option<String>,
    pub requested_user_agent: Option<String>,
    pub requested_source_url: Option<String>,
    pub token_expires_at: Option<String>,
    pub confirmation_sent_at: Option<String>,
    pub confirmation_message_id: Option<String>,
    pub confirmed_at: Option<String>,
    pub confirmed_method: Option<String>,
    pub confirmed_ip: Option<String>,
    pub confirmed_user_agent: Option<String>,
    pub ended_at: Option<String>,
    pub ended_event: Option<String>,
    pub ended_method: Option<String>,
    pub chain_seq: i64,
    pub chain_head: String,
}

/// A registered consent text (`routes::admin::exports::consent_texts`).
#[derive(Serialize, ToSchema)]
pub struct ConsentTextRecord {
    pub sha256: String,
    pub language: String,
    #[schema(format = DateTime)]
    pub first_seen_at: String,
    pub text: String,
}

/// `GET /admin/exports/consent-texts`.
#[derive(Serialize, ToSchema)]
pub struct ConsentTexts {
    pub consent_texts: Vec<ConsentTextRecord>,
}

/// An outbox row, without its payload (`routes::admin::outbox::index`).
#[derive(Serialize, ToSchema)]
pub struct OutboxRowView {
    pub id: String,
    /// `confirmation`, `welcome`, or `webhook:<event>`.
    pub kind: String,
    /// `pending`, `sent`, `dead` or `cancelled`.
    pub state: String,
    pub attempts: i32,
    /// The last failure, addresses masked.
    pub last_error: Option<String>,
    /// The Message-ID of an email; the `webhook-id` of a webhook notice.
    pub message_id: String,
    pub subscription_id: Option<String>,
    /// Where a webhook notice goes (the host only); absent for emails and
    /// once delivered.
    pub webhook_host: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    #[schema(format = DateTime)]
    pub sent_at: Option<String>,
}

/// `GET /admin/outbox`.
#[derive(Serialize, ToSchema)]
pub struct OutboxRows {
    pub rows: Vec<OutboxRowView>,
}

/// `POST /admin/outbox/{id}/retry` (`routes::admin::outbox::retry`).
#[derive(Serialize, ToSchema)]
pub struct Retried {
    pub id: String,
    pub state: Pending,
}

/// `format` of the exports: `csv`, `ndjson` or `iso27560` for consent
/// records; `ndjson` only for the ledger.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Ndjson,
    Iso27560,
}

/// An outbox row's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Dead,
    Pending,
    Sent,
    Cancelled,
}
