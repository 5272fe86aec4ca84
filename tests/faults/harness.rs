//! Running `assent serve` as a child process and loading it with sign-ups.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// A running `assent serve`.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts the binary and waits until `/readyz` answers 200.
    pub async fn start(database_url: &str, smtp_port: u16) -> Server {
        let server = Self::spawn(database_url, smtp_port);
        server.wait_ready().await;
        server
    }

    /// Starts the binary without waiting.
    pub fn spawn(database_url: &str, smtp_port: u16) -> Server {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_assent"))
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
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start assent");
        Server { child, port }
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

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
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
                    Ok(r) => report.refused.push(r.status().as_u16()),
                    Err(_) => {
                        report.unanswered += 1;
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
