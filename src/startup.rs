//! Building the application: pool, migrations, secrets, lists, templates,
//! mailer, the HTTP server and the outbox worker.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpRequest, HttpServer, web};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use tokio::sync::{Notify, watch};
use tracing_actix_web::TracingLogger;

use crate::clock::{Clock, naive};
use crate::config::ValidSettings;
use crate::context::{AppContext, ServerKey, SharedContext};
use crate::db::{self, DbError, migrate, repo};
use crate::error::{AppError, ErrorKind};
use crate::mail::Mailer;
use crate::render::Templates;
use crate::routes;
use crate::routes::request;
use crate::telemetry::RouteSpans;
use crate::tokens::{LinkKeys, SigningKey};

/// A built application, bound to its port, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    context: SharedContext,
}

fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

/// Opens the pool and brings the schema up to date.
pub fn prepare_database(settings: &ValidSettings) -> anyhow::Result<db::DbPool> {
    let url = &settings.database_url;
    let busy = Duration::from_millis(settings.database.sqlite_busy_timeout_ms);
    let mut conn = url
        .establish(busy)
        .with_context(|| format!("connecting to the database at {}", url.redacted()))?;
    let applied = migrate::run(&mut conn).context("migrating the database")?;
    if !applied.is_empty() {
        tracing::info!(versions = ?applied, backend = url.backend().as_str(), "migrations applied");
    }
    Ok(db::build_pool(
        url,
        settings.database.pool_max_size,
        settings.connection_timeout(),
        busy,
    ))
}

/// Builds the shared context: migrations, server secrets, lists.
pub fn build_context(
    settings: ValidSettings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<SharedContext> {
    let pool = prepare_database(&settings)?;
    let slugs: Vec<&str> = settings.lists.iter().map(|l| l.slug.as_str()).collect();
    let templates = Templates::load(settings.templates_dir.as_deref(), &slugs)
        .context("compiling the templates")?;
    let mailer =
        Mailer::new(&settings.mail_url, &settings.mail).context("building the mail transport")?;
    let now = naive(clock.now());
    let mut conn = pool
        .get()
        .map_err(DbError::from)
        .context("taking a database connection")?;
    let (subject_key, created) =
        repo::secrets::get_or_create(&mut conn, "subject_key", now, random_key)
            .context("loading the subject key")?;
    if created {
        tracing::info!("generated the subject key and stored it in the database");
    }
    let subject_key = STANDARD
        .decode(subject_key.trim())
        .context("the stored subject key is not base64")?;
    let link_keys = load_link_keys(&settings, &mut conn, now)?;
    let lists =
        crate::registry::sync(&mut conn, &settings.lists, now).context("syncing the lists")?;
    drop(conn);
    if settings.example_list {
        tracing::warn!(
            "no [[lists]] configured: serving the example list \"newsletter\" with an example consent text; configure your own before going live"
        );
    }
    let rate_limiter = crate::rate_limit::RateLimiter::new(
        settings.abuse.rate_limit_per_minute,
        settings.abuse.rate_limit_burst,
    );
    let webhooks = Arc::new(lists.webhook_directory());
    let webhook_client = crate::webhooks::WebhookClient::new(
        settings.webhooks.timeout,
        settings.webhooks.proxy.as_ref(),
    )
    .context("building the webhook client")?;
    let subject_key = ServerKey::new(subject_key);
    let pow =
        crate::pow::ProofOfWork::new(subject_key.mac_hex("proof-of-work key", b"").into_bytes());
    let signups = crate::signup_writer::SignupWriter::start(pool.clone(), settings.signup_writer())
        .context("starting the sign-up writer")?;
    Ok(Arc::new(AppContext {
        signups,
        pow,
        settings,
        pool,
        clock,
        lists,
        templates,
        mailer,
        subject_key,
        link_keys,
        outbox_wake: Notify::new(),
        webhooks,
        webhook_client,
        webhook_wake: Notify::new(),
        instance_id: format!("{}-{}", hostname_hint(), uuid::Uuid::new_v4()),
        rate_limiter,
        metrics: crate::metrics::Metrics::default(),
        draining: crate::shutdown::Draining::default(),
    }))
}

/// The name of the generated link key in `server_secrets`; its key id in
/// links is `auto`.
const GENERATED_LINK_KEY: &str = "link_key_auto";

/// Configured keys first (the first signs); the generated key, when one
/// exists, always verifies, so links minted before keys were configured
/// keep working. With no key configured the generated one signs.
fn load_link_keys(
    settings: &ValidSettings,
    conn: &mut db::DbConnection,
    now: chrono::NaiveDateTime,
) -> anyhow::Result<LinkKeys> {
    let mut keys = settings.link_keys.clone();
    let generated = if keys.is_empty() {
        let (secret, created) =
            repo::secrets::get_or_create(conn, GENERATED_LINK_KEY, now, random_key)
                .context("loading the generated link key")?;
        if created {
            tracing::warn!(
                "no [tokens] keys configured: generated a link-signing key and stored it in the database; configure keys to control rotation"
            );
        }
        Some(secret)
    } else {
        repo::secrets::find(conn, GENERATED_LINK_KEY).context("loading the generated link key")?
    };
    if let Some(secret) = generated {
        let key = SigningKey::new("auto", &secret).context("the stored link key is malformed")?;
        if !keys.iter().any(|k| k.id() == "auto") {
            keys.push(key);
        }
    }
    LinkKeys::new(keys).context("building the link keys")
}

fn hostname_hint() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "assent".to_owned())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect()
}

fn extractor_error(error: impl std::fmt::Display, req: &HttpRequest) -> actix_web::Error {
    let format = request::page_format(req);
    AppError::new(ErrorKind::BadRequest(error.to_string()), format).into()
}

fn json_error(error: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let kind = match error {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ErrorKind::PayloadTooLarge
        }
        JsonPayloadError::ContentType => ErrorKind::UnsupportedMediaType,
        other => ErrorKind::BadRequest(other.to_string()),
    };
    AppError::new(kind, crate::error::Format::Json).into()
}

impl Application {
    /// Builds everything and binds the listener (port 0 picks a free port).
    pub async fn build(settings: ValidSettings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let bind = settings.bind;
        let workers = settings.http.workers;
        let grace = settings.http.shutdown_grace_secs;
        let context = tokio::task::spawn_blocking(move || build_context(settings, clock))
            .await
            .context("start-up task")??;
        let listener = TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
        let port = listener.local_addr()?.port();
        let data = web::Data::from(Arc::clone(&context));
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    routes::error_pages::localize,
                ))
                .wrap(TracingLogger::<RouteSpans>::new())
                .wrap(
                    actix_web::middleware::DefaultHeaders::new()
                        .add(("X-Content-Type-Options", "nosniff")),
                )
                .wrap(actix_web::middleware::from_fn(
                    crate::shutdown::close_connections_when_draining,
                ))
                .app_data(data.clone())
                .app_data(web::PathConfig::default().error_handler(extractor_error))
                .app_data(web::QueryConfig::default().error_handler(extractor_error))
                .app_data(
                    web::JsonConfig::default()
                        .limit(crate::routes::body::MAX_BODY_BYTES)
                        .error_handler(json_error),
                )
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)?
        // Signals are handled in `run_until_stopped` (drain first).
        .disable_signals()
        .shutdown_timeout(grace);
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Application {
            port,
            server: server.run(),
            context,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared context (tests drive the outbox through it).
    pub fn context(&self) -> SharedContext {
        Arc::clone(&self.context)
    }

    /// Serves until the server stops (see `shutdown`: SIGTERM drains for
    /// `http.shutdown_drain_ms`, then stops accepting and lets in-flight
    /// requests finish within `http.shutdown_grace_secs`; SIGINT and SIGQUIT
    /// stop at once), running the outbox workers beside it when enabled:
    /// one for mail and one for webhooks, so a slow receiver never holds up
    /// an email.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (stop_worker, stopped) = watch::channel(false);
        let workers = self.context.settings.outbox.worker.then(|| {
            (
                tokio::spawn(crate::mail::worker::run(
                    Arc::clone(&self.context),
                    stopped.clone(),
                )),
                tokio::spawn(crate::webhooks::worker::run(
                    Arc::clone(&self.context),
                    stopped,
                )),
            )
        });
        let signals = {
            let handle = self.server.handle();
            let context = Arc::clone(&self.context);
            let drain = Duration::from_millis(context.settings.http.shutdown_drain_ms);
            tokio::spawn(async move {
                crate::shutdown::stop_on_signal(handle, &context.draining, drain).await
            })
        };
        let result = self.server.await;
        signals.abort();
        let _ = stop_worker.send(true);
        if let Some((mail, webhooks)) = workers {
            let _ = mail.await;
            let _ = webhooks.await;
        }
        result
    }
}
