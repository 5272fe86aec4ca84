//! Sign-up throughput: `POST /subscriptions` over HTTP against the real
//! application, next to the same database statements run directly, in the
//! same process and the same run, alternately (direct, HTTP, direct, ...).
//!
//! cargo bench --bench signup -- [--backend postgres|sqlite|both]
//!     [--connections N] [--seconds S] [--pairs P] [--json FILE]
//!
//! On PostgreSQL each round also runs pgbench on the reference transaction
//! of docs/performance.md (three inserts: subscriber, token, outbox job) at
//! the same number of connections, `-j 2 -M prepared`, for the same time.
//!
//! PostgreSQL is reached through ASSENT_BENCH_POSTGRES_URL (default
//! postgres://postgres@127.0.0.1:5432/test); a scratch database is created
//! and dropped for each backend run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assent::clock::{Clock, SystemClock, naive};
use assent::config::Settings;
use assent::context::SharedContext;
use assent::db::repo::lists::ConsentRef;
use assent::db::repo::signup::{self, ConsentSource, SignupInput};
use assent::db::{retry, write_transaction};
use assent::domain::{ConfirmationToken, EmailAddress};
use assent::ledger::{EventMethod, Evidence};
use assent::startup::Application;
use diesel::Connection;
use diesel::connection::SimpleConnection;

#[derive(Debug, Clone)]
struct Options {
    backends: Vec<&'static str>,
    connections: usize,
    seconds: u64,
    pairs: usize,
    json: Option<String>,
}

fn options() -> Options {
    let mut opts = Options {
        backends: vec!["postgres", "sqlite"],
        connections: 64,
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
                opts.connections = value.parse().expect("--connections N");
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
    _dir: Option<tempfile::TempDir>,
}

impl Scratch {
    fn new(backend: &str) -> Self {
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
                    _dir: None,
                }
            }
            _ => {
                let dir = tempfile::tempdir().unwrap();
                Scratch {
                    url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                    drop_pg: None,
                    _dir: Some(dir),
                }
            }
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

fn settings(url: &str, mail_dir: &std::path::Path) -> assent::config::ValidSettings {
    let toml = format!(
        r#"
bind = "127.0.0.1:0"
database_url = "{url}"
mail_url = "file://{}"
[outbox]
worker = false
[abuse]
rate_limit_per_minute = 0
[log]
filter = "warn"
"#,
        mail_dir.display()
    );
    Settings::from_toml(&toml).unwrap().validate().unwrap()
}

#[derive(Debug, Clone, serde::Serialize)]
struct RunResult {
    kind: &'static str,
    backend: &'static str,
    connections: usize,
    requests: u64,
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

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn unique_email(prefix: &str) -> String {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{n}-{}@bench.example", std::process::id())
}

/// The same statements the HTTP path runs, on as many threads as the pool
/// has connections.
fn run_direct(ctx: &SharedContext, backend: &'static str, seconds: u64) -> RunResult {
    let list = ctx.lists.by_slug("newsletter").unwrap().clone();
    let threads = ctx.settings.database.pool_max_size as usize;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..threads {
        let ctx = Arc::clone(ctx);
        let list = list.clone();
        handles.push(std::thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut conn = ctx.pool.get().unwrap();
            while Instant::now() < deadline {
                let t = Instant::now();
                let email = EmailAddress::parse(&unique_email("d")).unwrap();
                let input = SignupInput {
                    list_id: list.id.clone(),
                    double_opt_in: true,
                    welcome: true,
                    email_hmac: ctx.subject_hash(&email),
                    email,
                    name: None,
                    consent: ConsentRef::Id(list.current.id.clone()),
                    consent_source: ConsentSource::VersionId,
                    method: EventMethod::Api,
                    evidence: Evidence::new(
                        Some("127.0.0.1".into()),
                        Some("peer"),
                        Some("bench".into()),
                        None,
                    )
                    .seal(),
                    token: ConfirmationToken::generate(),
                    token_ttl: chrono::Duration::days(7),
                    message_domain: "localhost".into(),
                    budget: assent::db::repo::signup::ConfirmationBudget {
                        interval: chrono::Duration::minutes(10),
                        per_day: 3,
                    },
                };
                let now = naive(ctx.clock.now());
                retry(|| write_transaction(&mut conn, |c| signup::record(c, &input, now))).unwrap();
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut latencies: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    RunResult {
        kind: "direct",
        backend,
        connections: threads,
        requests: latencies.len() as u64,
        seconds: elapsed,
        per_second: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    }
}

/// `POST /subscriptions` from `connections` keep-alive connections.
async fn run_http(
    port: u16,
    backend: &'static str,
    connections: usize,
    seconds: u64,
) -> (RunResult, u64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/subscriptions");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < deadline {
                let body = format!(r#"{{"email":"{}","consent":true}}"#, unique_email("h"));
                let t = Instant::now();
                let response = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        RunResult {
            kind: "http",
            backend,
            connections,
            requests: latencies.len() as u64,
            seconds: elapsed,
            per_second: latencies.len() as f64 / elapsed,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
        },
        failures,
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

/// pgbench on the reference transaction; returns transactions per second.
fn run_pgbench(url: &str, connections: usize, seconds: u64, script: &std::path::Path) -> f64 {
    let mut conn = diesel::PgConnection::establish(url).expect("reference database");
    conn.batch_execute(REFERENCE_TABLES)
        .expect("reference tables");
    let output = std::process::Command::new(PGBENCH)
        .args([
            "-n",
            "-c",
            &connections.to_string(),
            "-j",
            "2",
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
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("pgbench printed tps")
}

fn stored_signups(ctx: &SharedContext) -> i64 {
    use assent::db::schema::consent_events;
    use diesel::prelude::*;
    let mut conn = ctx.pool.get().unwrap();
    consent_events::table
        .filter(consent_events::kind.eq("consent_requested"))
        .count()
        .get_result(&mut *conn)
        .unwrap()
}

fn main() {
    let opts = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    let mut summary = Vec::new();
    for backend in opts.backends.clone() {
        let scratch = Scratch::new(backend);
        let mail = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let app = runtime
            .block_on(Application::build(
                settings(&scratch.url, mail.path()),
                clock.clone(),
            ))
            .expect("application");
        let port = app.port();
        let ctx = app.context();
        let server = runtime.spawn(app.run_until_stopped());
        let mut ratios = Vec::new();
        let mut reference_ratios = Vec::new();
        let script = mail.path().join("reference.sql");
        std::fs::write(&script, REFERENCE_SCRIPT).unwrap();
        let mut acknowledged: u64 = 0;
        for pair in 0..opts.pairs {
            let direct = run_direct(&ctx, backend, opts.seconds);
            acknowledged += direct.requests;
            let (http, failures) =
                runtime.block_on(run_http(port, backend, opts.connections, opts.seconds));
            acknowledged += http.requests;
            let stored = stored_signups(&ctx) as u64;
            assert_eq!(stored, acknowledged, "every acknowledged sign-up is stored");
            let ratio = http.per_second / direct.per_second;
            println!(
                "{backend:8} pair {}: direct {:8.1}/s (p50 {:.1} ms, p99 {:.1} ms) | http {:8.1}/s (p50 {:.1} ms, p99 {:.1} ms, {} failed) | ratio {:.2} | stored = acknowledged = {}",
                pair + 1,
                direct.per_second,
                direct.p50_ms,
                direct.p99_ms,
                http.per_second,
                http.p50_ms,
                http.p99_ms,
                failures,
                ratio,
                stored
            );
            ratios.push(ratio);
            if backend == "postgres" {
                let tps = run_pgbench(&scratch.url, opts.connections, opts.seconds, &script);
                let reference_ratio = http.per_second / tps;
                println!(
                    "{backend:8} pair {}: pgbench reference {tps:8.1} tx/s at {} connections | http/pgbench {reference_ratio:.2}",
                    pair + 1,
                    opts.connections
                );
                reference_ratios.push(reference_ratio);
            }
            results.push(direct);
            results.push(http);
        }
        reference_ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
        if let Some(median) = reference_ratios.get(reference_ratios.len() / 2) {
            println!(
                "{backend:8} median ratio http/pgbench-reference at {} connections: {median:.2}",
                opts.connections
            );
        }
        ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = ratios[ratios.len() / 2];
        println!(
            "{backend:8} median ratio http/direct at {} connections: {median:.2}",
            opts.connections
        );
        summary.push(serde_json::json!({
            "backend": backend,
            "connections": opts.connections,
            "median_ratio_http_over_direct": median,
            "ratios_http_over_direct": ratios,
            "ratios_http_over_pgbench_reference": reference_ratios,
        }));
        server.abort();
        drop(ctx);
    }
    let report = serde_json::json!({ "bench": "signup", "runs": results, "summary": summary });
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        println!("wrote {path}");
    } else {
        println!("{}", serde_json::to_string(&report).unwrap());
    }
}
