//! Running `assent serve` as a child process and loading it with sign-ups.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// A running `assent serve`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Its standard error, when captured.
    log: Option<Arc<std::sync::Mutex<String>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How to start a server beyond the defaults.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra `ASSENT_*` variables (they override the defaults below).
    pub env: Vec<(&'static str, String)>,
    /// Keep standard error for [`Server::log`] (also echoed).
    pub capture_log: bool,
    /// Run as this user and group (needs root), from this copy of the
    /// binary (the user must be able to execute it).
    pub run_as: Option<(u32, u32, std::path::PathBuf)>,
}

impl Server {
    /// Starts the binary and waits until `/readyz` answers 200.
    pub async fn start(database_url: &str, smtp_port: u16) -> Server {
        Self::start_with(database_url, smtp_port, &Options::default()).await
    }

    /// Starts the binary with options and waits until it is ready.
    pub async fn start_with(database_url: &str, smtp_port: u16, options: &Options) -> Server {
        let server = Self::spawn_with(database_url, smtp_port, options);
        server.wait_ready().await;
        server
    }

    /// Starts the binary with options, without waiting.
    pub fn spawn_with(database_url: &str, smtp_port: u16, options: &Options) -> Server {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let program = match &options.run_as {
            Some((_, _, binary)) => binary.clone(),
            None => env!("CARGO_BIN_EXE_assent").into(),
        };
        let mut command = Command::new(program);
        command
            .arg("serve")
            .env("ASSENT_BIND", format!("127.0.0.1:{port}"))
            .env("ASSENT_DATABASE_URL", database_url)
            .env("ASSENT_MAIL_URL", format!("smtp://127.0.0.1:{smtp_port}"))
            .env("ASSENT_OUTBOX__POLL_INTERVAL_MS", "100")
            .env("ASSENT_OUTBOX__LEASE_SECS", "3")
            .env("ASSENT_OUTBOX__BACKOFF_BASE_SECS", "1")
            .env("ASSENT_ABUSE__RATE_LIMIT_PER_MINUTE", "0")
            .env("ASSENT_HTTP__SHUTDOWN_GRACE_SECS", "5")
            .env("ASSENT_LOG__FILTER", "warn")
            .env("ASSENT_LOG__FORMAT", "json")
            .envs(options.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(if options.capture_log {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        if let Some((uid, gid, _)) = &options.run_as {
            command.uid(*uid).gid(*gid);
        }
        let mut child = command.spawn().expect("start assent");
        let log = child.stderr.take().map(|stderr| {
            let log = Arc::new(std::sync::Mutex::new(String::new()));
            let sink = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    let mut sink = sink.lock().unwrap();
                    sink.push_str(&line);
                    sink.push('\n');
                }
            });
            log
        });
        Server { child, port, log }
    }

    /// What the process wrote to standard error so far (when captured).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .map(|log| log.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Waits for readiness (20 s at most).
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("assent on port {} did not become ready", self.port);
    }

    /// A URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, without waiting.
    pub fn send_sigterm(&self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "assent on port {} did not exit",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until the listening socket is closed: a new
    /// connection is refused.
    pub async fn wait_listener_closed(&self, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Instant::now();
                }
                _ => {}
            }
            assert!(Instant::now() < deadline, "the listener stayed open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Addresses whose sign-up got a 202.
    pub acknowledged: BTreeSet<String>,
    pub sent: u64,
    /// Answers other than 202 (status codes).
    pub refused: Vec<u16>,
    /// Requests that got no answer (connection refused or reset).
    pub unanswered: u64,
    /// Each answer other than 202: when the request was sent, the address,
    /// the status.
    pub refused_requests: Vec<(Instant, String, u16)>,
    /// Each request without an answer.
    pub failures: Vec<Failure>,
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone)]
#[allow(dead_code)] // the address and error are read in assertion messages
pub struct Failure {
    /// When it was sent.
    pub sent_at: Instant,
    pub email: String,
    /// The connection could not even be made (refused): the request never
    /// reached the server.
    pub connect: bool,
    pub error: String,
}

impl Failure {
    /// The whole cause chain, for reports.
    fn describe(error: &reqwest::Error) -> String {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Posts unique sign-ups from `clients` connections, round robin over the
/// servers, until `stop` is set or `limit` passes (both bounded).
pub async fn load(
    ports: Vec<u16>,
    clients: usize,
    prefix: &str,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> LoadReport {
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + limit;
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let ports = ports.clone();
        let report = report.clone();
        let counter = counter.clone();
        let stop = stop.clone();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut round = client_index;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let email = format!("{prefix}{n}@load.example");
                let port = ports[round % ports.len()];
                round += 1;
                let sent_at = Instant::now();
                let result = client
                    .post(format!("http://127.0.0.1:{port}/subscriptions"))
                    .json(&serde_json::json!({ "email": email, "consent": true }))
                    .send()
                    .await;
                let mut report = report.lock().await;
                report.sent += 1;
                match result {
                    Ok(r) if r.status() == 202 => {
                        report.acknowledged.insert(email);
                    }
                    Ok(r) => {
                        let status = r.status().as_u16();
                        report.refused.push(status);
                        report.refused_requests.push((sent_at, email, status));
                    }
                    Err(error) => {
                        report.unanswered += 1;
                        report.failures.push(Failure {
                            sent_at,
                            email,
                            connect: error.is_connect(),
                            error: Failure::describe(&error),
                        });
                        drop(report);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(report).ok().unwrap().into_inner()
}

/// Waits (bounded) until `done` holds.
pub async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits until `count` reaches `target`, for as long as it keeps growing:
/// fails once it has not grown for `stall` (a backlog drains at the speed
/// of the build under test, which a fixed limit would make a race).
pub async fn wait_for_count(
    what: &str,
    stall: Duration,
    target: usize,
    mut count: impl FnMut() -> usize,
) {
    let mut last = count();
    let mut grew_at = Instant::now();
    while last < target {
        assert!(
            grew_at.elapsed() < stall,
            "timed out waiting for {what}: {last} of {target}, none for {stall:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count();
        if now > last {
            grew_at = Instant::now();
        }
        last = now;
    }
}

/// The addresses with a `consent_requested` event in the database.
pub fn stored_signups(database_url: &str) -> BTreeSet<String> {
    use assent::db::schema::{consent_events, subscribers};
    use diesel::prelude::*;
    let url = assent::db::DbUrl::parse(database_url).unwrap();
    let mut conn = url.establish(Duration::from_secs(5)).unwrap();
    consent_events::table
        .inner_join(subscribers::table)
        .filter(consent_events::kind.eq("consent_requested"))
        .select(subscribers::email.assume_not_null())
        .load::<String>(&mut conn)
        .unwrap()
        .into_iter()
        .collect()
}

/// Runs `assent ledger verify` on a database.
pub fn verify_ledger(database_url: &str) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["ledger", "verify"])
        .env("ASSENT_DATABASE_URL", database_url)
        .env("ASSENT_LOG__FILTER", "warn")
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "ledger verify printed {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The Message-ID of a raw message.
pub fn message_id(raw: &str) -> String {
    crate::helpers::header(raw, "Message-ID").unwrap_or_default()
}

/// One connection to the database under test.
pub fn connect(database_url: &str) -> assent::db::DbConnection {
    assent::db::DbUrl::parse(database_url)
        .unwrap()
        .establish(Duration::from_secs(5))
        .unwrap()
}

/// How many rows of each kind a set of addresses has: (subscribers,
/// consent events, confirmation tokens, outbox rows), by address.
pub fn rows_of(
    database_url: &str,
    emails: &BTreeSet<String>,
) -> BTreeMap<String, (i64, i64, i64, i64)> {
    use assent::db::schema::{
        confirmation_tokens, consent_events, outbox, subscribers, subscriptions,
    };
    use diesel::prelude::*;
    let mut conn = connect(database_url);
    let mut rows = BTreeMap::new();
    // In chunks, to keep each statement's parameter list small.
    let emails: Vec<&String> = emails.iter().collect();
    for chunk in emails.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|e| e.to_lowercase()).collect();
        let found: Vec<(String, String)> = subscribers::table
            .filter(subscribers::email_key.eq_any(&keys))
            .select((subscribers::email_key.assume_not_null(), subscribers::id))
            .load(&mut conn)
            .unwrap();
        for (email, id) in found {
            let events = consent_events::table
                .filter(consent_events::subscriber_id.eq(&id))
                .filter(consent_events::kind.eq("consent_requested"))
                .count()
                .get_result::<i64>(&mut conn)
                .unwrap();
            let subscription_ids: Vec<String> = subscriptions::table
                .filter(subscriptions::subscriber_id.eq(&id))
                .select(subscriptions::id)
                .load(&mut conn)
                .unwrap();
            let tokens = confirmation_tokens::table
                .filter(confirmation_tokens::subscription_id.eq_any(&subscription_ids))
                .count()
                .get_result::<i64>(&mut conn)
                .unwrap();
            let mails = outbox::table
                .filter(outbox::subscription_id.eq_any(&subscription_ids))
                .count()
                .get_result::<i64>(&mut conn)
                .unwrap();
            let entry = rows.entry(email).or_insert((0, 0, 0, 0));
            entry.0 += 1;
            entry.1 += events;
            entry.2 += tokens;
            entry.3 += mails;
        }
    }
    rows
}

/// Asserts that every acknowledged sign-up is whole (its subscriber, a
/// `consent_requested` event, a confirmation token and an outbox row) and
/// that none of `unstored` left any row at all.
pub fn assert_whole_or_absent(
    database_url: &str,
    acknowledged: &BTreeSet<String>,
    unstored: &BTreeSet<String>,
) {
    let rows = rows_of(database_url, acknowledged);
    for email in acknowledged {
        let found = rows.get(&email.to_lowercase()).copied().unwrap_or_default();
        assert!(
            found.0 == 1 && found.1 >= 1 && found.2 >= 1 && found.3 >= 1,
            "{email} was acknowledged but is not whole (subscribers, events, tokens, outbox): {found:?}"
        );
    }
    let left = rows_of(database_url, unstored);
    assert!(left.is_empty(), "answered 503 but stored: {left:?}");
}
