//! Sign-up throughput of a running `assent serve` (the release binary, as a
//! child process) against references measured in the same run, alternately:
//!
//! - on PostgreSQL, pgbench on the reference transaction of
//!   docs/performance.md (three inserts: subscriber, token, outbox job) at
//!   the same number of connections, `-j 2 -M prepared`, for the same time;
//! - on both backends, the same repository function the route calls, run
//!   directly (no HTTP, one transaction per sign-up) on as many threads as
//!   the pool has connections.
//!
//! cargo bench --bench signup -- [--backend postgres|sqlite|both]
//!     [--connections 1,8,64] [--seconds S] [--pairs P] [--json FILE]
//!
//! The load generator is in this file: keep-alive HTTP/1.1 connections,
//! each sending `POST /subscriptions` for a new address as soon as the
//! previous answer arrived. After every run the number of `consent_requested`
//! events must equal the number of acknowledged sign-ups.
//!
//! PostgreSQL is reached through ASSENT_BENCH_POSTGRES_URL (default
//! postgres://postgres@127.0.0.1:5432/test); a scratch database is created
//! and dropped for each backend.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assent::clock::{Clock, SystemClock, naive};
use assent::config::Settings;
use assent::db::repo::signup;
use assent::db::{DbPool, retry, write_transaction};
use diesel::Connection;
use diesel::connection::SimpleConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

#[derive(Debug, Clone)]
struct Options {
    backends: Vec<&'static str>,
    connections: Vec<usize>,
    seconds: u64,
    pairs: usize,
    json: Option<String>,
}

fn options() -> Options {
    let mut opts = Options {
        backends: vec!["postgres", "sqlite"],
        connections: vec![1, 8, 64],
        seconds: 4,
        pairs: 3,
        json: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--backend" => {
                opts.backends = match value.as_str() {
                    "postgres" => vec!["postgres"],
                    "sqlite" => vec!["sqlite"],
                    _ => vec!["postgres", "sqlite"],
                };
                i += 1;
            }
            "--connections" => {
                opts.connections = value
                    .split(',')
                    .map(|n| n.trim().parse().expect("--connections N[,N...]"))
                    .collect();
                i += 1;
            }
            "--seconds" => {
                opts.seconds = value.parse().expect("--seconds S");
                i += 1;
            }
            "--pairs" => {
                opts.pairs = value.parse().expect("--pairs P");
                i += 1;
            }
            "--json" => {
                opts.json = Some(value);
                i += 1;
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    opts
}

/// A scratch database for one backend.
struct Scratch {
    url: String,
    drop_pg: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(backend: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            "postgres" => {
                let admin = std::env::var("ASSENT_BENCH_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
                let name = format!("assent_bench_{}", std::process::id());
                let mut conn =
                    diesel::PgConnection::establish(&admin).expect("PostgreSQL for the bench");
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .expect("drop old scratch database");
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create scratch database");
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&format!("/{name}"));
                Scratch {
                    url: url.to_string(),
                    drop_pg: Some((admin, name)),
                    dir,
                }
            }
            _ => Scratch {
                url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                drop_pg: None,
                dir,
            },
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.drop_pg
            && let Ok(mut conn) = diesel::PgConnection::establish(admin)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The service's configuration: defaults, except no outbox worker (no mail
/// is sent during the runs), no rate limit, warnings only in the log.
fn config(scratch: &Scratch, port: u16) -> std::path::PathBuf {
    let path = scratch.dir.path().join("assent.toml");
    let toml = format!(
        r#"
bind = "127.0.0.1:{port}"
database_url = "{}"
mail_url = "file://{}"
[outbox]
worker = false
[abuse]
rate_limit_per_minute = 0
[log]
filter = "warn"
"#,
        scratch.url,
        scratch.dir.path().join("mail").display()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `assent serve`.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts the service and waits until `/readyz` answers 200; returns
    /// it with the time that took.
    fn start(config: &std::path::Path, port: u16) -> (Self, Duration) {
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_assent"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("assent serve");
        let server = Server { child, port };
        let deadline = started + Duration::from_secs(30);
        while !server.ready() {
            assert!(Instant::now() < deadline, "assent serve did not get ready");
            std::thread::sleep(Duration::from_millis(2));
        }
        let took = started.elapsed();
        (server, took)
    }

    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer.starts_with(b"HTTP/1.1 200")
    }

    /// Resident memory now and at its peak, in MiB (from /proc).
    fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn stop(mut self) {
        // SIGTERM: the graceful path.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct RunResult {
    kind: &'static str,
    backend: &'static str,
    connections: usize,
    requests: u64,
    failed: u64,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn result(
    kind: &'static str,
    backend: &'static str,
    connections: usize,
    mut latencies: Vec<f64>,
    failed: u64,
    elapsed: f64,
) -> RunResult {
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    RunResult {
        kind,
        backend,
        connections,
        requests: latencies.len() as u64,
        failed,
        seconds: elapsed,
        per_second: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn unique_email(prefix: &str) -> String {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{n}-{}@bench.example", std::process::id())
}

/// One keep-alive connection sending the requests `next` makes, one after
/// the other, until it makes none or the deadline passed; returns the
/// latencies of the answers with status `ok` and the number of others.
async fn post_one_by_one(
    port: u16,
    deadline: Instant,
    ok: u16,
    mut next: impl FnMut() -> Option<String>,
) -> (Vec<f64>, u64) {
    let mut latencies = Vec::new();
    let mut failed = 0;
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (latencies, 1);
    };
    let _ = stream.set_nodelay(true);
    let mut buffer = vec![0u8; 16384];
    while Instant::now() < deadline {
        let Some(request) = next() else {
            break;
        };
        let sent = Instant::now();
        if stream.write_all(request.as_bytes()).await.is_err() {
            failed += 1;
            break;
        }
        match read_response(&mut stream, &mut buffer).await {
            Some(status) if status == ok => latencies.push(sent.elapsed().as_secs_f64() * 1000.0),
            Some(_) => failed += 1,
            None => {
                failed += 1;
                break;
            }
        }
    }
    (latencies, failed)
}

/// One keep-alive connection sending sign-ups of new addresses until the
/// deadline.
async fn http_connection(port: u16, deadline: Instant) -> (Vec<f64>, u64) {
    post_one_by_one(port, deadline, 202, || {
        let body = format!(r#"{{"email":"{}","consent":true}}"#, unique_email("h"));
        Some(format!(
            "POST /subscriptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await
}

/// Reads one HTTP/1.1 response with a `Content-Length`; its status.
async fn read_response(stream: &mut tokio::net::TcpStream, buffer: &mut [u8]) -> Option<u16> {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buffer[filled..]).await.ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
        let head = &buffer[..filled];
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
            if filled == buffer.len() {
                return None;
            }
            continue;
        };
        let text = std::str::from_utf8(&head[..end]).ok()?;
        let status = text.get(9..12)?.parse().ok()?;
        let length: usize = text
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut have = filled - (end + 4);
        while have < length {
            let n = stream.read(&mut buffer[..]).await.ok()?;
            if n == 0 {
                return None;
            }
            have += n;
        }
        return Some(status);
    }
}

/// One keep-alive connection posting `requests` (path and form body) taken
/// from a shared queue until it is empty or the deadline passed.
async fn click_connection(
    port: u16,
    deadline: Instant,
    requests: Arc<std::sync::Mutex<Vec<(String, &'static str)>>>,
) -> (Vec<f64>, u64) {
    post_one_by_one(port, deadline, 200, || {
        let (path, body) = requests.lock().ok()?.pop()?;
        Some(format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await
}

/// Posts every request of `requests` over `connections` keep-alive
/// connections (or until `seconds` pass).
async fn run_clicks(
    port: u16,
    backend: &'static str,
    kind: &'static str,
    connections: usize,
    seconds: u64,
    requests: Vec<(String, &'static str)>,
) -> RunResult {
    let requests = Arc::new(std::sync::Mutex::new(requests));
    run_connections(backend, kind, connections, seconds, |deadline| {
        click_connection(port, deadline, Arc::clone(&requests))
    })
    .await
}

/// Runs `connection` on `connections` tasks until `seconds` pass and sums
/// up their latencies and failures as the run `kind`.
async fn run_connections<F>(
    backend: &'static str,
    kind: &'static str,
    connections: usize,
    seconds: u64,
    connection: impl Fn(Instant) -> F,
) -> RunResult
where
    F: std::future::Future<Output = (Vec<f64>, u64)> + Send + 'static,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(deadline)))
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    result(
        kind,
        backend,
        connections,
        latencies,
        failed,
        started.elapsed().as_secs_f64(),
    )
}

/// The confirmation links of pending sign-ups (their tokens are in the
/// outbox rows, no worker having sent them), with their subscriptions.
fn confirmation_links(pool: &DbPool, most: i64) -> Vec<(String, String)> {
    use assent::db::schema::outbox;
    use diesel::prelude::*;
    let mut conn = pool.get().unwrap();
    outbox::table
        .filter(outbox::kind.eq("confirmation"))
        .filter(outbox::state.eq("pending"))
        .select((outbox::subscription_id, outbox::payload))
        .limit(most)
        .load::<(Option<String>, String)>(&mut *conn)
        .unwrap()
        .into_iter()
        .filter_map(|(subscription, payload)| {
            let token = serde_json::from_str::<serde_json::Value>(&payload).ok()?["token"]
                .as_str()?
                .to_owned();
            Some((subscription?, format!("/confirm/{token}")))
        })
        .collect()
}

async fn run_http(port: u16, backend: &'static str, connections: usize, seconds: u64) -> RunResult {
    run_connections(backend, "http", connections, seconds, |deadline| {
        http_connection(port, deadline)
    })
    .await
}

/// The application's context on the scratch database, for the direct runs.
fn direct_context(url: &str) -> assent::context::SharedContext {
    let toml = format!(
        "database_url = \"{url}\"\nmail_url = \"file:///tmp\"\n[outbox]\nworker = false\n[log]\nfilter = \"warn\"\n"
    );
    let settings = Settings::from_toml(&toml).unwrap().validate().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    assent::startup::build_context(settings, clock).expect("context")
}

/// The statements of one sign-up, one transaction each, on as many threads
/// as the pool has connections.
fn run_direct(
    ctx: &assent::context::SharedContext,
    backend: &'static str,
    seconds: u64,
) -> RunResult {
    let threads = ctx.settings.database.pool_max_size as usize;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let ctx = Arc::clone(ctx);
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut conn = ctx.pool.get().unwrap();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let input = common::newsletter_signup(&ctx, &unique_email("d"), "localhost");
                    let now = naive(ctx.clock.now());
                    retry(|| write_transaction(&mut conn, |c| signup::record(c, &input, now)))
                        .unwrap();
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let latencies: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    result(
        "direct",
        backend,
        threads,
        latencies,
        0,
        started.elapsed().as_secs_f64(),
    )
}

const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";

const REFERENCE_TABLES: &str = "
DROP TABLE IF EXISTS ref_outbox, ref_tokens, ref_subscribers;
CREATE TABLE ref_subscribers (id uuid PRIMARY KEY, email text NOT NULL UNIQUE, name text, created_at timestamptz NOT NULL, status text NOT NULL);
CREATE TABLE ref_tokens (token text PRIMARY KEY, subscriber_id uuid NOT NULL REFERENCES ref_subscribers (id));
CREATE TABLE ref_outbox (id bigserial PRIMARY KEY, subscriber_id uuid NOT NULL REFERENCES ref_subscribers (id), kind text NOT NULL, payload text NOT NULL);
";

const REFERENCE_SCRIPT: &str = r#"\set r random(1, 9000000000000000000)
BEGIN;
INSERT INTO ref_subscribers (id, email, name, created_at, status) VALUES (gen_random_uuid(), 'u' || :client_id || 'r' || :r || '@example.com', 'n' || :r, now(), 'pending') RETURNING id AS sid \gset
INSERT INTO ref_tokens (token, subscriber_id) VALUES (substr(md5(:r::text || random()::text), 1, 25), :sid::uuid);
INSERT INTO ref_outbox (subscriber_id, kind, payload) VALUES (:sid::uuid, 'confirmation', repeat('x', 330));
END;
"#;

/// pgbench on the reference transaction; transactions per second.
fn run_pgbench(url: &str, connections: usize, seconds: u64, script: &std::path::Path) -> RunResult {
    let mut conn = diesel::PgConnection::establish(url).expect("reference database");
    conn.batch_execute(REFERENCE_TABLES)
        .expect("reference tables");
    let threads = connections.min(2).to_string();
    let output = Command::new(PGBENCH)
        .args([
            "-n",
            "-c",
            &connections.to_string(),
            "-j",
            &threads,
            "-M",
            "prepared",
            "-T",
            &seconds.to_string(),
            "-f",
            script.to_str().unwrap(),
            url,
        ])
        .output()
        .expect("pgbench");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let number = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.trim_start_matches(prefix).split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let tps = number("tps = ").expect("pgbench printed tps");
    let transactions = number("number of transactions actually processed: ").unwrap_or(0.0);
    RunResult {
        kind: "pgbench",
        backend: "postgres",
        connections,
        requests: transactions as u64,
        failed: 0,
        seconds: seconds as f64,
        per_second: tps,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    }
}

fn stored_signups(pool: &DbPool) -> u64 {
    use assent::db::schema::consent_events;
    use diesel::prelude::*;
    let mut conn = pool.get().unwrap();
    consent_events::table
        .filter(consent_events::kind.eq("consent_requested"))
        .count()
        .get_result::<i64>(&mut *conn)
        .unwrap() as u64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn print_run(pair: usize, run: &RunResult) {
    println!(
        "{:8} {:>3} conn pair {}: {:7} {:8.1}/s  p50 {:6.1} ms  p99 {:6.1} ms  ({} ok, {} failed)",
        run.backend,
        run.connections,
        pair + 1,
        run.kind,
        run.per_second,
        run.p50_ms,
        run.p99_ms,
        run.requests,
        run.failed
    );
}

fn main() {
    let opts = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runs = Vec::new();
    let mut summary = Vec::new();
    let mut memory = Vec::new();
    for backend in opts.backends.clone() {
        let scratch = Scratch::new(backend);
        let port = free_port();
        let config = config(&scratch, port);
        // The first start creates the schema; the second measures start-up
        // on an existing database.
        let (first, _) = Server::start(&config, port);
        first.stop();
        let (server, startup) = Server::start(&config, port);
        std::thread::sleep(Duration::from_millis(500));
        let (idle_rss, _) = server.memory_mib();
        println!(
            "{backend:8} start-up to ready on an existing database: {:.0} ms; idle RSS {idle_rss:.1} MiB",
            startup.as_secs_f64() * 1000.0
        );
        let ctx = direct_context(&scratch.url);
        let script = scratch.dir.path().join("reference.sql");
        std::fs::write(&script, REFERENCE_SCRIPT).unwrap();
        let mut acknowledged = stored_signups(&ctx.pool);
        for &connections in &opts.connections {
            let mut over_reference = Vec::new();
            let mut over_direct = Vec::new();
            let mut p99 = Vec::new();
            for pair in 0..opts.pairs {
                let reference = (backend == "postgres")
                    .then(|| run_pgbench(&scratch.url, connections, opts.seconds, &script));
                let http = runtime.block_on(run_http(port, backend, connections, opts.seconds));
                acknowledged += http.requests;
                assert_eq!(
                    stored_signups(&ctx.pool),
                    acknowledged,
                    "every acknowledged sign-up is stored"
                );
                // The direct statements at the highest load only: they use
                // the pool's connections whatever the HTTP load.
                let direct = (Some(&connections) == opts.connections.iter().max())
                    .then(|| run_direct(&ctx, backend, opts.seconds));
                if let Some(direct) = &direct {
                    acknowledged += direct.requests;
                    assert_eq!(stored_signups(&ctx.pool), acknowledged);
                }
                for run in reference.iter().chain([&http]).chain(direct.iter()) {
                    print_run(pair, run);
                }
                if let Some(reference) = &reference {
                    let ratio = http.per_second / reference.per_second;
                    println!(
                        "{backend:8} {connections:>3} conn pair {}: http/pgbench {ratio:.2}",
                        pair + 1
                    );
                    over_reference.push(ratio);
                }
                if let Some(direct) = &direct {
                    over_direct.push(http.per_second / direct.per_second);
                }
                p99.push(http.p99_ms);
                runs.extend(reference);
                runs.push(http);
                runs.extend(direct);
            }
            let (_, peak) = server.memory_mib();
            println!(
                "{backend:8} {connections:>3} conn: median http/pgbench {:.2}, median http/direct {:.2}, median p99 {:.1} ms, peak RSS so far {peak:.1} MiB",
                median(over_reference.clone()),
                median(over_direct.clone()),
                median(p99.clone()),
            );
            summary.push(serde_json::json!({
                "backend": backend,
                "connections": connections,
                "ratios_http_over_pgbench": over_reference,
                "median_http_over_pgbench": median(over_reference.clone()),
                "ratios_http_over_direct": over_direct,
                "median_p99_ms": median(p99),
                "peak_rss_mib": peak,
            }));
        }
        // Clicks at the highest load: confirmations, then one-click
        // unsubscribes of the same subscriptions, each request its own
        // transaction (they are not group-committed; see
        // docs/performance.md).
        let most = *opts.connections.iter().max().unwrap_or(&64);
        let links = confirmation_links(&ctx.pool, 200_000);
        let confirmations = links
            .iter()
            .map(|(_, path)| (path.clone(), ""))
            .collect::<Vec<_>>();
        let confirm = runtime.block_on(run_clicks(
            port,
            backend,
            "confirm",
            most,
            opts.seconds,
            confirmations,
        ));
        print_run(0, &confirm);
        // The run takes links from the end of the list: the confirmed ones.
        let unsubscribes = links
            .iter()
            .rev()
            .take(confirm.requests as usize)
            .filter_map(|(subscription, _)| {
                let id = uuid::Uuid::parse_str(subscription).ok()?;
                let token = ctx.link_keys.mint(assent::tokens::Purpose::Leave, id);
                Some((
                    format!("/unsubscribe/{token}"),
                    "List-Unsubscribe=One-Click",
                ))
            })
            .collect::<Vec<_>>();
        let unsubscribe = runtime.block_on(run_clicks(
            port,
            backend,
            "unsubscribe",
            most,
            opts.seconds,
            unsubscribes,
        ));
        print_run(0, &unsubscribe);
        summary.push(serde_json::json!({
            "backend": backend,
            "connections": most,
            "confirmations_per_second": confirm.per_second,
            "confirmation_p99_ms": confirm.p99_ms,
            "unsubscribes_per_second": unsubscribe.per_second,
            "unsubscribe_p99_ms": unsubscribe.p99_ms,
        }));
        runs.push(confirm);
        runs.push(unsubscribe);
        let (_, peak) = server.memory_mib();
        memory.push(serde_json::json!({
            "backend": backend,
            "startup_ms": startup.as_secs_f64() * 1000.0,
            "idle_rss_mib": idle_rss,
            "peak_rss_mib": peak,
        }));
        server.stop();
        drop(ctx);
    }
    let report = serde_json::json!({
        "bench": "signup",
        "runs": runs,
        "summary": summary,
        "process": memory,
    });
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        println!("wrote {path}");
    } else {
        println!("{}", serde_json::to_string(&report).unwrap());
    }
}
