//! The test harness: the real application on port 0, a fresh database per
//! test (a temporary SQLite file, or a PostgreSQL database created and
//! dropped), a real SMTP server, and helpers to act as a user would.

use std::sync::Arc;

use assent::clock::ManualClock;
use assent::config::Settings;
use assent::context::SharedContext;
use assent::db::DbConnection;
use assent::startup::Application;
use diesel::Connection;
use diesel::connection::SimpleConnection;

use crate::smtp_server::{ReceivedMail, SmtpServer};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the tests find PostgreSQL (a maintenance database to create and
/// drop test databases from).
pub fn postgres_admin_url() -> String {
    std::env::var("ASSENT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("ASSENT_TEST_POSTGRES_URL is a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// A database that lives as long as the test.
pub enum TestDatabase {
    // Held so the directory and its database file live as long as the test.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { name: String },
}

impl TestDatabase {
    pub fn create(backend: Backend) -> (Self, String) {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("assent.db").display());
                (TestDatabase::Sqlite(dir), url)
            }
            Backend::Postgres => {
                let name = format!("assent_test_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = diesel::PgConnection::establish(&admin).unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for the postgres leg of the tests ({admin}): {e}. \
                         Start it or set ASSENT_TEST_POSTGRES_URL."
                    )
                });
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create test database");
                let url = with_database(&admin, &name);
                (TestDatabase::Postgres { name }, url)
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { name } = self
            && let Ok(mut conn) = diesel::PgConnection::establish(&postgres_admin_url())
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The application under test.
pub struct TestApp {
    pub address: String,
    pub smtp: SmtpServer,
    pub clock: Arc<ManualClock>,
    pub context: SharedContext,
    pub client: reqwest::Client,
    pub database_url: String,
    // Dropped last: the database outlives the app's pool.
    database: Arc<TestDatabase>,
}

/// Lists every test app has, besides the example list.
pub const TEST_LISTS: &str = r#"
[[lists]]
slug = "newsletter"
name = "Clinic news"
from = "Clinic <news@clinic.example>"
reply_to = "Front desk <desk@clinic.example>"
redirect_urls = ["https://clinic.example/thanks"]
[[lists.consent_texts]]
text = "An older consent text."
[[lists.consent_texts]]
text = "I consent to the transfer and validation of my email address in conjunction with this email service, and I understand that I may withdraw my consent and unsubscribe at any time."
current = true

[[lists]]
slug = "offers"
name = "Offers"
from = "offers@clinic.example"
thank_you_url = "https://clinic.example/offers/thanks"
confirmed_url = "https://clinic.example/offers/welcome"
language = "de"
allowed_origins = ["https://clinic.example"]
embed_origins = ["https://clinic.example"]
subjects = { confirmation = "Bitte bestätigen: Angebote der Praxis" }
[[lists.consent_texts]]
text = "Ich willige ein, Angebote per E-Mail zu erhalten."
"#;

/// Lists for tests of list settings, given to `spawn_app_with`: `instant`
/// (single opt-in), `quiet` (no welcome email), `mailto` (a `mailto:`
/// unsubscribe address) and `records` (German, with a controller and a
/// retention statement for consent records).
pub const SETTINGS_LISTS: &str = r#"
[[lists]]
slug = "instant"
name = "Instant news"
from = "instant@clinic.example"
double_opt_in = false
[[lists.consent_texts]]
text = "I agree to receive instant news."

[[lists]]
slug = "quiet"
name = "Quiet news"
from = "quiet@clinic.example"
welcome = false
[[lists.consent_texts]]
text = "I agree to receive quiet news."

[[lists]]
slug = "mailto"
name = "Mailto news"
from = "mailto@clinic.example"
unsubscribe_mailto = "leave@clinic.example"
[[lists.consent_texts]]
text = "I agree to receive mailto news."

[[lists]]
slug = "records"
name = "Praxisbrief"
from = "brief@clinic.example"
language = "de"
retention = "Zwei Jahre nach dem Widerruf"
controller = { name = "Praxis Dr. Beispiel", address = "Hauptstr. 1, 10115 Berlin", contact = "datenschutz@clinic.example" }
[[lists.consent_texts]]
text = "Ich willige ein, den Praxisbrief per E-Mail zu erhalten."
"#;

/// The current consent text of the test list `newsletter`.
pub const CURRENT_TEXT: &str = "I consent to the transfer and validation of my email address in conjunction with this email service, and I understand that I may withdraw my consent and unsubscribe at any time.";

/// Starts an app with the default test settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, "").await
}

/// Starts an app with extra TOML settings (top-level keys and tables).
pub async fn spawn_app_with(backend: Backend, extra: &str) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        assent::telemetry::init(&assent::config::LogSettings {
            format: "pretty".to_owned(),
            filter: "debug".to_owned(),
        });
    }
    let smtp = SmtpServer::start().await;
    let (database, database_url) = TestDatabase::create(backend);
    build_app(smtp, Arc::new(database), database_url, extra).await
}

/// Starts an app whose relay does not offer PIPELINING.
pub async fn spawn_app_without_pipelining(backend: Backend) -> TestApp {
    let smtp = SmtpServer::start_without_pipelining().await;
    let (database, database_url) = TestDatabase::create(backend);
    build_app(smtp, Arc::new(database), database_url, "").await
}

impl TestApp {
    /// Starts another instance on the same database and SMTP server with
    /// other settings (a restart after a configuration change).
    pub async fn respawn_with(&self, extra: &str) -> TestApp {
        build_app(
            self.smtp.clone(),
            Arc::clone(&self.database),
            self.database_url.clone(),
            extra,
        )
        .await
    }
}

async fn build_app(
    smtp: SmtpServer,
    database: Arc<TestDatabase>,
    database_url: String,
    extra: &str,
) -> TestApp {
    // Tests post many sign-ups from loopback; the rate-limit tests bring
    // their own [abuse] table.
    let http = if extra.contains("[http]") {
        ""
    } else {
        "[http]\nworkers = 2\nshutdown_grace_secs = 1\n"
    };
    let abuse = if extra.contains("[abuse]") {
        ""
    } else {
        "[abuse]\nrate_limit_exempt = [\"127.0.0.0/8\"]\n"
    };
    // Settings given in `extra` replace the defaults below.
    let mail_url = if extra.contains("mail_url") {
        String::new()
    } else {
        format!("mail_url = \"smtp://127.0.0.1:{}\"", smtp.port)
    };
    let toml = format!(
        r#"
bind = "127.0.0.1:0"
base_url = "http://127.0.0.1:8080"
database_url = "{database_url}"
{mail_url}
{extra}
[mail]
send_timeout_secs = 2
[outbox]
worker = false
max_attempts = 3
backoff_base_secs = 60
{http}
{abuse}
{TEST_LISTS}
"#
    );
    let settings = Settings::from_toml(&toml)
        .expect("test settings parse")
        .validate()
        .expect("test settings are valid");
    let clock = Arc::new(ManualClock::default());
    let app = Application::build(settings, clock.clone())
        .await
        .expect("application builds");
    let port = app.port();
    let context = app.context();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        smtp,
        clock,
        context,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        database_url,
        database,
    }
}

impl TestApp {
    /// A URL on the app.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Posts a browser form.
    pub async fn post_form(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url("/subscriptions"))
            .form(fields)
            .send()
            .await
            .expect("request")
    }

    /// Posts JSON.
    pub async fn post_json(&self, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/subscriptions"))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Signs up an address on a list with the JSON API.
    pub async fn sign_up(&self, email: &str, list: &str) -> reqwest::Response {
        self.post_json(&serde_json::json!({ "email": email, "list": list, "consent": true }))
            .await
    }

    /// Runs the outbox worker until nothing is due (no sleeping: the clock
    /// decides what is due).
    pub async fn dispatch_all_pending_emails(&self) -> usize {
        let mut total = 0;
        for _ in 0..100 {
            let n = assent::mail::worker::dispatch_due(&self.context)
                .await
                .expect("outbox pass");
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    }

    /// Mails received for an address.
    pub fn mails_to(&self, email: &str) -> Vec<ReceivedMail> {
        self.smtp
            .received()
            .into_iter()
            .filter(|m| {
                m.rcpt_to
                    .iter()
                    .any(|r| r.to_lowercase().contains(&email.to_lowercase()))
            })
            .collect()
    }

    /// The confirmation links in the mails to an address, oldest first.
    pub fn confirmation_links(&self, email: &str) -> Vec<String> {
        self.mails_to(email)
            .iter()
            .filter_map(|mail| {
                links_in(&text_part(&mail.data))
                    .into_iter()
                    .find(|l| l.contains("/confirm/"))
            })
            .collect()
    }

    /// Turns a link from a mail (with the configured base URL) into one on
    /// this test server.
    pub fn local(&self, link: &str) -> String {
        link.replace("http://127.0.0.1:8080", &self.address)
    }

    /// A connection to the test database, for assertions on stored rows.
    pub fn db(&self) -> DbConnection {
        let url = assent::db::DbUrl::parse(&self.database_url).unwrap();
        url.establish(std::time::Duration::from_secs(5)).unwrap()
    }
}

/// The decoded text/plain part of a raw message.
pub fn text_part(raw: &str) -> String {
    let parsed = mailparse::parse_mail(raw.as_bytes()).expect("a parseable message");
    if parsed.subparts.is_empty() {
        return parsed.get_body().unwrap();
    }
    parsed
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/plain")
        .map(|p| p.get_body().unwrap())
        .expect("a text/plain part")
}

/// The decoded text/html part of a raw message.
pub fn html_part(raw: &str) -> String {
    let parsed = mailparse::parse_mail(raw.as_bytes()).expect("a parseable message");
    parsed
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/html")
        .map(|p| p.get_body().unwrap())
        .expect("a text/html part")
}

/// A header's value, unfolded.
pub fn header(raw: &str, name: &str) -> Option<String> {
    let parsed = mailparse::parse_mail(raw.as_bytes()).expect("a parseable message");
    use mailparse::MailHeaderMap;
    parsed.headers.get_first_value(name)
}

/// Every http(s) URL in a text.
pub fn links_in(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches(['.', ',', '>', ')']).to_owned())
        .collect()
}

/// Generates the SQLite and PostgreSQL variants of each test.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

/// An event as a test looks at it.
#[derive(Debug, Clone)]
pub struct EventSummary {
    pub kind: String,
    pub method: Option<String>,
    pub consent_sha256: Option<String>,
    pub evidence_sha256: Option<String>,
    pub details: String,
}

impl TestApp {
    /// The ledger events of the subscriber with this address, in order.
    pub fn events_for(&self, email: &str) -> Vec<EventSummary> {
        use assent::db::schema::{consent_events, subscribers};
        use diesel::prelude::*;
        let mut conn = self.db();
        consent_events::table
            .inner_join(subscribers::table)
            .filter(subscribers::email_key.eq(email.to_lowercase()))
            .order(consent_events::seq.asc())
            .select((
                consent_events::kind,
                consent_events::method,
                consent_events::consent_sha256,
                consent_events::evidence_sha256,
                consent_events::details,
            ))
            .load::<(
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                String,
            )>(&mut conn)
            .unwrap()
            .into_iter()
            .map(
                |(kind, method, consent_sha256, evidence_sha256, details)| EventSummary {
                    kind,
                    method,
                    consent_sha256,
                    evidence_sha256,
                    details,
                },
            )
            .collect()
    }

    /// The kinds of those events.
    pub fn event_kinds(&self, email: &str) -> Vec<String> {
        self.events_for(email).into_iter().map(|e| e.kind).collect()
    }

    /// The state of an address's subscription to a list.
    pub fn subscription_state(&self, email: &str, list: &str) -> Option<String> {
        use assent::db::schema::{lists, subscribers, subscriptions};
        use diesel::prelude::*;
        let mut conn = self.db();
        subscriptions::table
            .inner_join(subscribers::table)
            .inner_join(lists::table)
            .filter(subscribers::email_key.eq(email.to_lowercase()))
            .filter(lists::slug.eq(list))
            .select(subscriptions::state)
            .first::<String>(&mut conn)
            .optional()
            .unwrap()
    }

    /// Every outbox row: (state, attempts, last_error).
    pub fn outbox_rows(&self) -> Vec<(String, i32, Option<String>)> {
        use assent::db::schema::outbox;
        use diesel::prelude::*;
        let mut conn = self.db();
        outbox::table
            .order(outbox::created_at.asc())
            .select((outbox::state, outbox::attempts, outbox::last_error))
            .load(&mut conn)
            .unwrap()
    }

    /// The evidence row an event points to: (ip, user agent, source URL).
    pub fn evidence(
        &self,
        sha256: &str,
    ) -> Option<(Option<String>, Option<String>, Option<String>)> {
        use assent::db::schema::evidence;
        use diesel::prelude::*;
        let mut conn = self.db();
        evidence::table
            .find(sha256)
            .select((evidence::ip, evidence::user_agent, evidence::source_url))
            .first(&mut conn)
            .optional()
            .unwrap()
    }
}

#[derive(diesel::QueryableByName)]
struct TableColumn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Every `table.column` of the database at `database_url` whose text
/// contains `needle` (case-insensitive), searching every text column of
/// every table.
pub fn find_text_anywhere_in(database_url: &str, needle: &str) -> Vec<String> {
    use diesel::RunQueryDsl;
    let needle = needle.to_lowercase().replace('\'', "''");
    let url = assent::db::DbUrl::parse(database_url).unwrap();
    let mut found = Vec::new();
    match url.establish(std::time::Duration::from_secs(5)).unwrap() {
        DbConnection::Postgres(mut conn) => {
            let columns: Vec<TableColumn> = diesel::sql_query(
                "SELECT table_name::text AS table_name, column_name::text AS column_name \
                 FROM information_schema.columns WHERE table_schema = 'public' \
                 AND data_type IN ('text', 'character varying')",
            )
            .load(&mut conn)
            .unwrap();
            for c in columns {
                let sql = format!(
                    "SELECT count(*) AS n FROM {} WHERE lower({}) LIKE '%{}%'",
                    c.table_name, c.column_name, needle
                );
                let count: Count = diesel::sql_query(sql).get_result(&mut conn).unwrap();
                if count.n > 0 {
                    found.push(format!("{}.{}", c.table_name, c.column_name));
                }
            }
        }
        DbConnection::Sqlite(mut conn) => {
            let columns: Vec<TableColumn> = diesel::sql_query(
                "SELECT m.name AS table_name, p.name AS column_name \
                 FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND upper(p.type) = 'TEXT'",
            )
            .load(&mut conn)
            .unwrap();
            for c in columns {
                let sql = format!(
                    "SELECT count(*) AS n FROM {} WHERE lower({}) LIKE '%{}%'",
                    c.table_name, c.column_name, needle
                );
                let count: Count = diesel::sql_query(sql).get_result(&mut conn).unwrap();
                if count.n > 0 {
                    found.push(format!("{}.{}", c.table_name, c.column_name));
                }
            }
        }
    }
    found
}

impl TestApp {
    /// Every `table.column` whose text contains `needle` (case-insensitive),
    /// searching every text column of every table.
    pub fn find_text_anywhere(&self, needle: &str) -> Vec<String> {
        find_text_anywhere_in(&self.database_url, needle)
    }

    /// Signs up, confirms and delivers the welcome email; returns the
    /// `List-Unsubscribe` URL on this test server.
    pub async fn confirmed_subscriber(&self, email: &str, list: &str) -> String {
        // Past the per-address confirmation budget's interval.
        self.clock.advance(chrono::Duration::minutes(11));
        assert_eq!(self.sign_up(email, list).await.status(), 202);
        self.dispatch_all_pending_emails().await;
        let link = self.local(self.confirmation_links(email).last().unwrap());
        let status = self.client.post(&link).send().await.unwrap().status();
        assert!(status == 200 || status == 303, "{status}");
        self.dispatch_all_pending_emails().await;
        let welcome = self
            .mails_to(email)
            .into_iter()
            .rev()
            .find(|m| header(&m.data, "List-Unsubscribe").is_some())
            .expect("a welcome email");
        let value = header(&welcome.data, "List-Unsubscribe").unwrap();
        let url = value
            .split(',')
            .map(|part| part.trim().trim_start_matches('<').trim_end_matches('>'))
            .find(|part| part.starts_with("http"))
            .expect("an http URL in List-Unsubscribe")
            .to_owned();
        self.local(&url)
    }
}

impl TestApp {
    /// Creates an admin API key (as `assent keys create` does).
    pub fn admin_key(&self, name: &str) -> String {
        let key = assent::domain::api_key::ApiKey::generate();
        let mut conn = self.db();
        assent::db::repo::api_keys::create(
            &mut conn,
            name,
            &key.digest(),
            chrono::Utc::now().naive_utc(),
        )
        .unwrap();
        key.expose().to_owned()
    }

    /// A request to an admin route with a key.
    pub fn admin(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    /// GETs an admin route and returns the JSON body.
    pub async fn admin_json(&self, path: &str, key: &str) -> serde_json::Value {
        let response = self
            .admin(reqwest::Method::GET, path, key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// GETs an admin route and returns the text body.
    pub async fn admin_text(&self, path: &str, key: &str) -> String {
        let response = self
            .admin(reqwest::Method::GET, path, key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    }

    /// Runs a statement against the test database (tampering tests).
    pub fn execute(&self, sql: &str) -> usize {
        use diesel::RunQueryDsl;
        let mut conn = self.db();
        diesel::sql_query(sql).execute(&mut conn).unwrap()
    }

    /// Unsubscribes through a one-click POST.
    pub async fn one_click(&self, url: &str) {
        let response = self
            .client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

impl TestApp {
    /// Runs the webhook worker until nothing is due (the clock decides what
    /// is due, as for mail).
    pub async fn dispatch_all_pending_webhooks(&self) -> usize {
        let mut total = 0;
        for _ in 0..100 {
            let n = assent::webhooks::worker::dispatch_due(&self.context)
                .await
                .expect("webhook pass");
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    }
}
