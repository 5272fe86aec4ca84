//! Typed settings: compiled-in defaults, an optional TOML file, then
//! `ASSENT_*` environment overrides (`__` separates nested keys). Everything
//! is checked before the service starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::db::DbUrl;
use crate::domain::{ConsentText, LanguageTag, ListSlug, WebhookEndpoint};

mod webhooks;
pub use webhooks::{ListWebhookSettings, WebhookDelivery, WebhookSettings};

/// The consent text of the built-in example list.
pub const EXAMPLE_CONSENT_TEXT: &str = "I consent to the transfer and validation of my email address in conjunction with this email service, and I understand that I may withdraw my consent and unsubscribe at any time.";

/// Top-level keys, so that unrelated `ASSENT_*` variables are not read as
/// settings.
const TOP_LEVEL_KEYS: &[&str] = &[
    "bind",
    "base_url",
    "database_url",
    "mail_url",
    "database",
    "mail",
    "outbox",
    "tokens",
    "http",
    "log",
    "abuse",
    "metrics",
    "templates_dir",
    "dkim",
    "webhooks",
    "lists",
];

/// Everything Assent can be told.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port to listen on.
    #[serde(default = "defaults::bind")]
    pub bind: String,
    /// Public URL used in every link Assent mails.
    #[serde(default = "defaults::base_url")]
    pub base_url: String,
    /// `sqlite://PATH`, `postgres://...` or `postgresql://...`.
    #[serde(default = "defaults::database_url")]
    pub database_url: SecretString,
    /// `file://DIR`, `smtp://...`, `smtp://...?tls=required` or `smtps://...`.
    #[serde(default = "defaults::mail_url")]
    pub mail_url: SecretString,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub mail: MailSettings,
    #[serde(default)]
    pub outbox: OutboxSettings,
    #[serde(default)]
    pub tokens: TokenSettings,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub abuse: AbuseSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// DKIM signing of every message (optional).
    #[serde(default)]
    pub dkim: Option<DkimSettings>,
    /// How webhooks are delivered (the endpoints are set per list).
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// A folder of template overrides: `NAME` for every list, `SLUG/NAME`
    /// for one list (see docs/configuration.md).
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// The lists; when none is configured, the example list `newsletter`.
    #[serde(default)]
    pub lists: Vec<ListSettings>,
}

/// Connection pool and SQLite settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Most connections held open by this instance.
    pub pool_max_size: u32,
    /// How long a request waits for a connection before answering 503.
    pub connection_timeout_ms: u64,
    /// How long SQLite waits for the write lock.
    pub sqlite_busy_timeout_ms: u64,
    /// Threads committing sign-ups in batches; 0 picks 1 on SQLite (its
    /// single writer) and 2 on PostgreSQL.
    pub signup_writers: u32,
    /// Most sign-ups committed in one transaction.
    pub signup_batch_max: u32,
    /// How long a writer waits for more sign-ups before committing a batch
    /// when no more are queued, in microseconds (0: commit at once).
    pub signup_batch_window_us: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            pool_max_size: 16,
            connection_timeout_ms: 3_000,
            sqlite_busy_timeout_ms: 5_000,
            signup_writers: 0,
            signup_batch_max: 128,
            signup_batch_window_us: 0,
        }
    }
}

/// Mail sending settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// Overall deadline of one SMTP exchange, connect to final reply.
    pub send_timeout_secs: u64,
    /// Most SMTP connections kept open.
    pub smtp_pool_max_size: u32,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            send_timeout_secs: 30,
            smtp_pool_max_size: 8,
        }
    }
}

/// The outbox worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Whether `assent serve` runs the worker.
    pub worker: bool,
    /// How often the worker looks for due rows when nothing woke it.
    pub poll_interval_ms: u64,
    /// Rows claimed at once.
    pub batch_size: u32,
    /// How long a claimed row stays with its worker before others may take it.
    pub lease_secs: u64,
    /// Attempts before a row is moved to `dead`.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt.
    pub backoff_base_secs: u64,
    /// Longest retry delay.
    pub backoff_max_secs: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            worker: true,
            poll_interval_ms: 1_000,
            batch_size: 256,
            lease_secs: 300,
            max_attempts: 12,
            backoff_base_secs: 30,
            backoff_max_secs: 3_600,
        }
    }
}

/// Token lifetimes and the keys that sign unsubscribe links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// How long a confirmation link is valid.
    pub confirmation_ttl_hours: u64,
    /// Keys for unsubscribe links: the first signs, all verify. When empty,
    /// a key is generated on first start and kept in the database.
    pub keys: Vec<LinkKeySettings>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            confirmation_ttl_hours: 7 * 24,
            keys: Vec::new(),
        }
    }
}

/// One link-signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkKeySettings {
    /// Carried in every link it signs: 1 to 16 of `[A-Za-z0-9_-]`.
    pub id: String,
    /// Base64 of at least 32 random bytes (`openssl rand -base64 32`).
    pub secret: SecretString,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// How long a stopping instance lets in-flight requests finish.
    pub shutdown_grace_secs: u64,
    /// After SIGTERM, how long the instance keeps answering (not ready,
    /// closing every connection after its answer) before it stops
    /// accepting, in milliseconds.
    pub shutdown_drain_ms: u64,
    /// Reverse proxies (CIDR) whose `X-Forwarded-For` / `Forwarded` is
    /// believed. Empty: the socket peer is the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            workers: 0,
            shutdown_grace_secs: 30,
            shutdown_drain_ms: 2_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// DKIM signing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    /// The selector: the key is published at `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// The signing domain (`d=`), normally the From addresses' domain.
    pub domain: String,
    /// `rsa` (a PKCS#1 PEM key) or `ed25519` (the base64 32-byte seed).
    #[serde(default = "defaults::rsa")]
    pub algorithm: String,
    /// The private key itself...
    #[serde(default)]
    pub private_key: Option<SecretString>,
    /// ... or the file that holds it.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
}

/// The `/metrics` endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// When set, `/metrics` wants `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
}

/// Defences against subscription bombing and bots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseSettings {
    /// At most one confirmation email per address within this many seconds.
    pub confirmation_interval_secs: u64,
    /// At most this many confirmation emails per address in 24 hours.
    pub confirmations_per_day: u32,
    /// How long "I did not ask for this" stops confirmation emails.
    pub refusal_days: u64,
    /// Sign-ups per minute per client IP (0 turns the limit off).
    pub rate_limit_per_minute: u32,
    /// Sign-ups a client IP may send at once before the rate applies.
    pub rate_limit_burst: u32,
    /// Networks (CIDR) the rate limit does not apply to.
    pub rate_limit_exempt: Vec<String>,
    /// Proof-of-work difficulty: the answer lies in 0..=this (about half of
    /// it SHA-256 computations for a browser, well under a second at 50,000).
    pub proof_of_work_max_number: u64,
}

impl Default for AbuseSettings {
    fn default() -> Self {
        AbuseSettings {
            confirmation_interval_secs: 600,
            confirmations_per_day: 3,
            refusal_days: 365,
            rate_limit_per_minute: 10,
            rate_limit_burst: 20,
            rate_limit_exempt: Vec::new(),
            proof_of_work_max_number: 50_000,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `auto` (readable on a terminal, JSON otherwise), `json` or `pretty`.
    pub format: String,
    /// A tracing filter such as `info` or `assent=debug,info`; `RUST_LOG`
    /// wins when set.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "auto".to_owned(),
            filter: "info".to_owned(),
        }
    }
}

/// One list as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSettings {
    pub slug: String,
    pub name: String,
    /// The From header: `Name <address>` or an address.
    pub from: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default = "defaults::yes")]
    pub double_opt_in: bool,
    /// Where a browser goes after signing up.
    #[serde(default)]
    pub thank_you_url: Option<String>,
    /// Where a browser goes after confirming.
    #[serde(default)]
    pub confirmed_url: Option<String>,
    /// The only URLs a form's `redirect` field may name.
    #[serde(default)]
    pub redirect_urls: Vec<String>,
    /// Language of the list's pages and emails.
    #[serde(default = "defaults::language")]
    pub language: String,
    /// Send a welcome email (with the unsubscribe link) after confirmation.
    #[serde(default = "defaults::yes")]
    pub welcome: bool,
    /// An address for `mailto:` unsubscribing, added to `List-Unsubscribe`.
    #[serde(default)]
    pub unsubscribe_mailto: Option<String>,
    /// Origins (`https://clinic.example`) whose pages may post to this list;
    /// empty allows any. Browsers posting from elsewhere get 403.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Origins that may show the hosted form in a frame; empty allows none.
    #[serde(default)]
    pub embed_origins: Vec<String>,
    /// Subject lines of this list's emails (defaults: built-in, in the
    /// list's language).
    #[serde(default)]
    pub subjects: SubjectSettings,
    /// Require a proof-of-work solution (the hosted form solves it with a
    /// small script; without JavaScript the form cannot be sent).
    #[serde(default)]
    pub proof_of_work: bool,
    /// Who is responsible for the processing (GDPR controller), for
    /// consent records.
    #[serde(default)]
    pub controller: ControllerSettings,
    /// What the consent is for, as stated in consent records.
    #[serde(default = "defaults::purpose")]
    pub purpose: String,
    /// How long the data is kept, as stated in consent records.
    #[serde(default = "defaults::retention")]
    pub retention: String,
    /// The consent texts; the one marked `current` (else the last) is shown.
    pub consent_texts: Vec<ConsentTextSettings>,
    /// Endpoints told when a subscription is confirmed or ends, consent is
    /// withdrawn or a person erased (none by default).
    #[serde(default)]
    pub webhooks: Vec<ListWebhookSettings>,
}

/// Subject lines a list may set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectSettings {
    pub confirmation: Option<String>,
    pub welcome: Option<String>,
}

/// The controller named in consent records.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSettings {
    pub name: Option<String>,
    pub address: Option<String>,
    pub contact: Option<String>,
}

/// One consent text of a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentTextSettings {
    pub text: String,
    /// Defaults to the list's language.
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub current: bool,
}

mod defaults {
    use secrecy::SecretString;

    pub fn bind() -> String {
        "127.0.0.1:8080".to_owned()
    }
    pub fn base_url() -> String {
        "http://127.0.0.1:8080".to_owned()
    }
    pub fn database_url() -> SecretString {
        SecretString::from("sqlite://assent.db")
    }
    pub fn mail_url() -> SecretString {
        SecretString::from("file://./mail")
    }
    pub fn yes() -> bool {
        true
    }
    pub fn language() -> String {
        "en".to_owned()
    }
    pub fn rsa() -> String {
        "rsa".to_owned()
    }
    pub fn purpose() -> String {
        "Sending the newsletter: news, announcements, updates and offers by email".to_owned()
    }
    pub fn retention() -> String {
        "Until consent is withdrawn; consent records are kept as proof for as long as claims can be brought".to_owned()
    }
}

/// Why the settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.to_string(),
    }
}

impl Settings {
    /// Loads defaults, then the TOML file if given, then `ASSENT_*`.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "config",
                    format!("the file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("ASSENT_").split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase().replace("__", ".");
            TOP_LEVEL_KEYS.contains(&key.split('.').next().unwrap_or(""))
        }));
        figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Loads settings from a TOML string (tests and examples).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks every value and returns the forms the service runs on.
    pub fn validate(&self) -> Result<ValidSettings, ConfigError> {
        let bind: SocketAddr = self.bind.parse().map_err(|e| {
            invalid(
                "bind",
                format!("{:?} is not an address:port ({e})", self.bind),
            )
        })?;
        let base_url = parse_base_url(&self.base_url)?;
        let database_url = DbUrl::parse(self.database_url.expose_secret())
            .map_err(|e| invalid("database_url", e))?;
        let mail_url = MailUrl::parse(self.mail_url.expose_secret())?;
        if self.database.pool_max_size == 0 {
            return Err(invalid("database.pool_max_size", "must be at least 1"));
        }
        if !(1..=1000).contains(&self.database.signup_batch_max) {
            return Err(invalid(
                "database.signup_batch_max",
                "must be between 1 and 1000",
            ));
        }
        if self.database.signup_batch_window_us > 10_000 {
            return Err(invalid(
                "database.signup_batch_window_us",
                "must be at most 10000 (10 ms): every sign-up may wait that long",
            ));
        }
        if self.database.signup_writers > 64 {
            return Err(invalid("database.signup_writers", "must be at most 64"));
        }
        if self.http.shutdown_drain_ms > 600_000 {
            return Err(invalid(
                "http.shutdown_drain_ms",
                "must be at most 600000 (10 minutes)",
            ));
        }
        if self.outbox.max_attempts == 0 {
            return Err(invalid("outbox.max_attempts", "must be at least 1"));
        }
        if self.outbox.batch_size == 0 {
            return Err(invalid("outbox.batch_size", "must be at least 1"));
        }
        if self.tokens.confirmation_ttl_hours == 0 {
            return Err(invalid(
                "tokens.confirmation_ttl_hours",
                "must be at least 1",
            ));
        }
        let link_keys = self
            .tokens
            .keys
            .iter()
            .map(|k| crate::tokens::SigningKey::new(&k.id, k.secret.expose_secret()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("tokens.keys", e))?;
        if !link_keys.is_empty() {
            crate::tokens::LinkKeys::new(link_keys.clone())
                .map_err(|e| invalid("tokens.keys", e))?;
        }
        if self
            .metrics
            .token
            .as_ref()
            .is_some_and(|t| t.expose_secret().len() < 16)
        {
            return Err(invalid("metrics.token", "must be at least 16 characters"));
        }
        if !matches!(self.log.format.as_str(), "auto" | "json" | "pretty") {
            return Err(invalid("log.format", "must be auto, json or pretty"));
        }
        let (lists, example_list) = if self.lists.is_empty() {
            (vec![example_list()], true)
        } else {
            (self.lists.clone(), false)
        };
        let mut valid_lists = Vec::with_capacity(lists.len());
        for (index, list) in lists.iter().enumerate() {
            let valid = validate_list(index, list)?;
            if valid_lists
                .iter()
                .any(|other: &ValidList| other.slug == valid.slug)
            {
                return Err(invalid(
                    format!("lists[{index}].slug"),
                    format!("{} is used by two lists", valid.slug),
                ));
            }
            valid_lists.push(valid);
        }
        let trusted_proxies = parse_networks("http.trusted_proxies", &self.http.trusted_proxies)?;
        let rate_limit_exempt =
            parse_networks("abuse.rate_limit_exempt", &self.abuse.rate_limit_exempt)?;
        if self.abuse.confirmations_per_day == 0 {
            return Err(invalid("abuse.confirmations_per_day", "must be at least 1"));
        }
        Ok(ValidSettings {
            trusted_proxies,
            rate_limit_exempt,
            abuse: self.abuse.clone(),
            metrics: self.metrics.clone(),
            templates_dir: self.templates_dir.clone(),
            dkim: self.dkim.as_ref().map(validate_dkim).transpose()?,
            webhooks: self.webhooks.validate()?,
            bind,
            base_url,
            database_url,
            mail_url,
            database: self.database.clone(),
            mail: self.mail.clone(),
            outbox: self.outbox.clone(),
            tokens: self.tokens.clone(),
            http: self.http.clone(),
            log: self.log.clone(),
            lists: valid_lists,
            link_keys,
            example_list,
        })
    }
}

fn example_list() -> ListSettings {
    ListSettings {
        slug: "newsletter".to_owned(),
        name: "Newsletter".to_owned(),
        from: "Newsletter <newsletter@localhost>".to_owned(),
        reply_to: None,
        double_opt_in: true,
        thank_you_url: None,
        confirmed_url: None,
        redirect_urls: Vec::new(),
        language: "en".to_owned(),
        welcome: true,
        unsubscribe_mailto: None,
        allowed_origins: Vec::new(),
        embed_origins: Vec::new(),
        proof_of_work: false,
        subjects: SubjectSettings::default(),
        controller: ControllerSettings::default(),
        purpose: defaults::purpose(),
        retention: defaults::retention(),
        consent_texts: vec![ConsentTextSettings {
            text: EXAMPLE_CONSENT_TEXT.to_owned(),
            language: None,
            current: true,
        }],
        webhooks: Vec::new(),
    }
}

fn parse_base_url(value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| invalid("base_url", format!("{value:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("base_url", "must start with http:// or https://"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(invalid("base_url", "must not have a query or fragment"));
    }
    Ok(url)
}

fn parse_absolute_url(key: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| invalid(key, format!("{value:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, "must be an http:// or https:// URL"));
    }
    Ok(url)
}

fn parse_origins(key: &str, values: &[String]) -> Result<Vec<String>, ConfigError> {
    values
        .iter()
        .map(|value| {
            let url = parse_absolute_url(key, value)?;
            let origin = url.origin().ascii_serialization();
            if value.trim_end_matches('/') != origin {
                return Err(invalid(
                    key,
                    format!("{value:?} is not an origin; use {origin}"),
                ));
            }
            Ok(origin)
        })
        .collect()
}

fn validate_dkim(settings: &DkimSettings) -> Result<crate::mail::dkim::Dkim, ConfigError> {
    let key = match (&settings.private_key, &settings.private_key_file) {
        (Some(key), None) => key.expose_secret().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| invalid("dkim.private_key_file", format!("{}: {e}", path.display())))?,
        _ => {
            return Err(invalid(
                "dkim",
                "set exactly one of private_key and private_key_file",
            ));
        }
    };
    crate::mail::dkim::Dkim::new(
        &settings.selector,
        &settings.domain,
        &settings.algorithm,
        &key,
    )
    .map_err(|e| invalid("dkim", e))
}

fn validate_subjects(
    key: &str,
    subjects: &SubjectSettings,
) -> Result<SubjectSettings, ConfigError> {
    for subject in [&subjects.confirmation, &subjects.welcome]
        .into_iter()
        .flatten()
    {
        if subject.trim().is_empty() || subject.chars().any(char::is_control) || subject.len() > 200
        {
            return Err(invalid(
                key,
                "a subject is one line of at most 200 characters",
            ));
        }
    }
    Ok(subjects.clone())
}

fn parse_networks(key: &str, values: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    values
        .iter()
        .map(|value| {
            value
                .parse::<ipnet::IpNet>()
                .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        key,
                        format!("{value:?} is not a CIDR network or an address"),
                    )
                })
        })
        .collect()
}

fn validate_list(index: usize, list: &ListSettings) -> Result<ValidList, ConfigError> {
    let key = |field: &str| format!("lists[{index}].{field}");
    let slug = ListSlug::parse(&list.slug).map_err(|e| invalid(key("slug"), e))?;
    if list.name.trim().is_empty() || list.name.chars().any(char::is_control) {
        return Err(invalid(key("name"), "must be a non-empty single line"));
    }
    let from: lettre::message::Mailbox = list
        .from
        .parse()
        .map_err(|e| invalid(key("from"), format!("{:?}: {e}", list.from)))?;
    let reply_to = match &list.reply_to {
        Some(value) => Some(
            value
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| invalid(key("reply_to"), format!("{value:?}: {e}")))?,
        ),
        None => None,
    };
    let language = LanguageTag::parse(&list.language).map_err(|e| invalid(key("language"), e))?;
    let thank_you_url = list
        .thank_you_url
        .as_deref()
        .map(|u| parse_absolute_url(&key("thank_you_url"), u))
        .transpose()?;
    let confirmed_url = list
        .confirmed_url
        .as_deref()
        .map(|u| parse_absolute_url(&key("confirmed_url"), u))
        .transpose()?;
    let redirect_urls = list
        .redirect_urls
        .iter()
        .map(|u| parse_absolute_url(&key("redirect_urls"), u).map(|_| u.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let unsubscribe_mailto = match &list.unsubscribe_mailto {
        Some(address) => Some(
            crate::domain::EmailAddress::parse(address)
                .map_err(|e| invalid(key("unsubscribe_mailto"), e))?,
        ),
        None => None,
    };
    if list.consent_texts.is_empty() {
        return Err(invalid(
            key("consent_texts"),
            "a list needs at least one consent text",
        ));
    }
    let mut texts = Vec::with_capacity(list.consent_texts.len());
    for (i, text) in list.consent_texts.iter().enumerate() {
        let text_key = format!("{}[{i}]", key("consent_texts"));
        let body = ConsentText::new(text.text.clone()).map_err(|e| invalid(&text_key, e))?;
        let language = match &text.language {
            Some(l) => LanguageTag::parse(l).map_err(|e| invalid(&text_key, e))?,
            None => language.clone(),
        };
        texts.push((body, language));
    }
    let marked: Vec<usize> = list
        .consent_texts
        .iter()
        .enumerate()
        .filter(|(_, t)| t.current)
        .map(|(i, _)| i)
        .collect();
    let current = match marked.as_slice() {
        [] => texts.len() - 1,
        [one] => *one,
        _ => {
            return Err(invalid(
                key("consent_texts"),
                "only one consent text may be marked current",
            ));
        }
    };
    Ok(ValidList {
        slug,
        name: list.name.clone(),
        from,
        reply_to,
        double_opt_in: list.double_opt_in,
        thank_you_url,
        confirmed_url,
        redirect_urls,
        language,
        welcome: list.welcome,
        unsubscribe_mailto,
        allowed_origins: parse_origins(&key("allowed_origins"), &list.allowed_origins)?,
        embed_origins: parse_origins(&key("embed_origins"), &list.embed_origins)?,
        proof_of_work: list.proof_of_work,
        subjects: validate_subjects(&key("subjects"), &list.subjects)?,
        controller: list.controller.clone(),
        purpose: list.purpose.clone(),
        retention: list.retention.clone(),
        consent_texts: texts,
        current_text: current,
        webhooks: webhooks::validate_list(index, &list.webhooks)?,
    })
}

/// Where mail goes.
#[derive(Clone)]
pub enum MailUrl {
    /// Each message written as an `.eml` file into this folder.
    File(PathBuf),
    /// An SMTP relay; the URL in lettre's form.
    Smtp(SecretString),
}

impl std::fmt::Debug for MailUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailUrl::File(dir) => write!(f, "File({})", dir.display()),
            MailUrl::Smtp(_) => f.write_str("Smtp(***)"),
        }
    }
}

impl MailUrl {
    /// Parses `file://DIR`, `smtp://...` or `smtps://...`.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        if let Some(dir) = value.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(invalid(
                    "mail_url",
                    "file:// needs a folder, e.g. file://./mail",
                ));
            }
            return Ok(MailUrl::File(PathBuf::from(dir)));
        }
        if value.starts_with("smtp://") || value.starts_with("smtps://") {
            let url = Url::parse(value).map_err(|e| invalid("mail_url", e))?;
            if url.host_str().unwrap_or("").is_empty() {
                return Err(invalid("mail_url", "the SMTP URL has no host"));
            }
            for (name, v) in url.query_pairs() {
                let ok = match name.as_ref() {
                    "tls" => matches!(v.as_ref(), "required" | "opportunistic"),
                    _ => false,
                };
                if !ok {
                    return Err(invalid(
                        "mail_url",
                        format!("unsupported SMTP URL parameter {name}={v}"),
                    ));
                }
            }
            return Ok(MailUrl::Smtp(SecretString::from(value.to_owned())));
        }
        Err(invalid(
            "mail_url",
            "use file://DIR, smtp://[user:pass@]host:port[?tls=required] or smtps://...",
        ))
    }
}

/// A list whose settings were checked.
#[derive(Debug, Clone)]
pub struct ValidList {
    pub slug: ListSlug,
    pub name: String,
    pub from: lettre::message::Mailbox,
    pub reply_to: Option<lettre::message::Mailbox>,
    pub double_opt_in: bool,
    pub thank_you_url: Option<Url>,
    pub confirmed_url: Option<Url>,
    /// Kept as configured: a form's `redirect` must match one exactly.
    pub redirect_urls: Vec<String>,
    pub language: LanguageTag,
    pub welcome: bool,
    pub unsubscribe_mailto: Option<crate::domain::EmailAddress>,
    /// Serialised origins (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    pub embed_origins: Vec<String>,
    pub proof_of_work: bool,
    pub subjects: SubjectSettings,
    pub controller: ControllerSettings,
    pub purpose: String,
    pub retention: String,
    pub consent_texts: Vec<(ConsentText, LanguageTag)>,
    /// Index into `consent_texts`.
    pub current_text: usize,
    /// Its webhook endpoints (may be empty).
    pub webhooks: Vec<WebhookEndpoint>,
}

/// Settings the service runs on.
#[derive(Debug, Clone)]
pub struct ValidSettings {
    pub bind: SocketAddr,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub rate_limit_exempt: Vec<ipnet::IpNet>,
    pub abuse: AbuseSettings,
    pub metrics: MetricsSettings,
    pub templates_dir: Option<PathBuf>,
    /// The DKIM signer, when configured.
    pub dkim: Option<crate::mail::dkim::Dkim>,
    /// How webhooks are delivered.
    pub webhooks: WebhookDelivery,
    pub base_url: Url,
    pub database_url: DbUrl,
    pub mail_url: MailUrl,
    pub database: DatabaseSettings,
    pub mail: MailSettings,
    pub outbox: OutboxSettings,
    pub tokens: TokenSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub lists: Vec<ValidList>,
    /// Configured link-signing keys, in order (may be empty).
    pub link_keys: Vec<crate::tokens::SigningKey>,
    /// True when no list was configured and the example list is in use.
    pub example_list: bool,
}

impl ValidSettings {
    /// The public URL of a path under the base URL.
    pub fn public_url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.base_url.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    /// How long a request waits for a database connection.
    pub fn connection_timeout(&self) -> Duration {
        Duration::from_millis(self.database.connection_timeout_ms)
    }

    /// How the sign-up writer batches, with the number of writers resolved
    /// for the backend.
    pub fn signup_writer(&self) -> crate::signup_writer::WriterConfig {
        let writers = match (self.database.signup_writers, self.database_url.backend()) {
            (0, crate::db::Backend::Sqlite) => 1,
            // One batch collects while the other commits. More writers make
            // smaller batches that contend in PostgreSQL for the same list
            // and consent-version rows (their foreign-key locks): 2 writers
            // recorded 1.6x the sign-ups of 4 in docs/performance.md.
            (0, crate::db::Backend::Postgres) => 2,
            (n, _) => n as usize,
        };
        crate::signup_writer::WriterConfig {
            writers,
            max_batch: self.database.signup_batch_max as usize,
            window: Duration::from_micros(self.database.signup_batch_window_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let settings = Settings::from_toml("").unwrap().validate().unwrap();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert!(settings.example_list);
        assert_eq!(settings.lists[0].slug.as_str(), "newsletter");
        assert_eq!(
            settings.lists[0].consent_texts[0].0.as_str(),
            EXAMPLE_CONSENT_TEXT
        );
    }

    #[test]
    fn refuses_unknown_database_schemes() {
        let settings = Settings::from_toml("database_url = \"mysql://x\"").unwrap();
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("unsupported database URL scheme"), "{error}");
    }

    #[test]
    fn refuses_unknown_keys() {
        assert!(Settings::from_toml("bnid = \"x\"").is_err());
    }

    #[test]
    fn lists_from_toml() {
        let toml = r#"
            [[lists]]
            slug = "clinic"
            name = "Clinic news"
            from = "Clinic <news@clinic.example>"
            redirect_urls = ["https://clinic.example/thanks"]
            [[lists.consent_texts]]
            text = "Old text."
            [[lists.consent_texts]]
            text = "New text."
            language = "de"
        "#;
        let settings = Settings::from_toml(toml).unwrap().validate().unwrap();
        let list = &settings.lists[0];
        assert_eq!(list.current_text, 1);
        assert_eq!(list.consent_texts[1].1.as_str(), "de");
        assert!(!settings.example_list);
    }

    #[test]
    fn mail_urls() {
        assert!(matches!(
            MailUrl::parse("file://./mail").unwrap(),
            MailUrl::File(_)
        ));
        assert!(matches!(
            MailUrl::parse("smtps://u:p@mail.example:465").unwrap(),
            MailUrl::Smtp(_)
        ));
        assert!(MailUrl::parse("smtp://relay:25?tls=required").is_ok());
        assert!(MailUrl::parse("smtp://relay:25?bogus=1").is_err());
        assert!(MailUrl::parse("http://relay").is_err());
    }
}
