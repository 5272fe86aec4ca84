//! Export and verification speed on a large ledger (PostgreSQL).
//!
//! cargo bench --bench export -- [--records N] [--pairs P] [--json FILE]
//!
//! Fills a scratch database with N confirmed subscriptions (each with a
//! request, a confirmation-sent and a confirmation event, and evidence for
//! both steps), then alternately measures, P times:
//!   A: PostgreSQL's own `COPY (<the export's columns>) TO STDOUT` (CSV)
//!   B: `assent export consent --format csv` (release binary, peak RSS)
//!   C: reading every ledger row (`COPY (SELECT * FROM consent_events ...)`)
//!   D: `assent ledger verify`
//! and prints B/A throughput, D/C time and B's peak memory.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use assent::clock::{Clock, SystemClock, naive};
use assent::config::Settings;
use assent::db::models::{ConsentEventRow, EvidenceRow, SubscriberRow, SubscriptionRow};
use assent::db::schema::{consent_events, evidence, subscribers, subscriptions};
use assent::ledger::chain::{HashedFields, format_time};
use assent::ledger::{Evidence, GENESIS_HASH, event_hash};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

struct Options {
    records: usize,
    pairs: usize,
    json: Option<String>,
}

fn options() -> Options {
    let mut opts = Options {
        records: 1_000_000,
        pairs: 3,
        json: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--records" => {
                opts.records = value.parse().expect("--records N");
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
            _ => {}
        }
        i += 1;
    }
    opts
}

fn admin_url() -> String {
    std::env::var("ASSENT_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// What differs between the generated events.
struct Draft<'a> {
    kind: &'a str,
    version: Option<(&'a str, &'a str)>,
    method: &'a str,
    evidence_sha256: Option<&'a str>,
    details: String,
}

/// Where an event sits: subscriber, subscription, list and time.
struct Place<'a> {
    subscriber_id: &'a str,
    subscription_id: &'a str,
    list_id: &'a str,
    at: chrono::NaiveDateTime,
}

fn event(place: &Place<'_>, seq: i64, prev: &str, draft: Draft<'_>) -> ConsentEventRow {
    let Place {
        subscriber_id,
        subscription_id,
        list_id,
        at,
    } = *place;
    let Draft {
        kind,
        version,
        method,
        evidence_sha256,
        details,
    } = draft;
    let id = uuid::Uuid::now_v7().to_string();
    let time = format_time(at);
    let hash = event_hash(
        prev,
        &HashedFields {
            id: &id,
            subscriber_id,
            seq,
            kind,
            occurred_at: &time,
            subscription_id: Some(subscription_id),
            list_id: Some(list_id),
            consent_version_id: version.map(|v| v.0),
            consent_sha256: version.map(|v| v.1),
            method: Some(method),
            evidence_sha256,
            details: &details,
        },
    );
    ConsentEventRow {
        id,
        subscriber_id: subscriber_id.to_owned(),
        seq,
        kind: kind.to_owned(),
        occurred_at: at,
        subscription_id: Some(subscription_id.to_owned()),
        list_id: Some(list_id.to_owned()),
        consent_version_id: version.map(|v| v.0.to_owned()),
        consent_sha256: version.map(|v| v.1.to_owned()),
        method: Some(method.to_owned()),
        evidence_sha256: evidence_sha256.map(str::to_owned),
        details,
        prev_hash: prev.to_owned(),
        hash,
    }
}

fn evidence_row(ip: String, ua: &str, url: Option<&str>, at: chrono::NaiveDateTime) -> EvidenceRow {
    let sealed = Evidence::new(
        Some(ip),
        Some("peer"),
        Some(ua.to_owned()),
        url.map(str::to_owned),
    )
    .seal();
    EvidenceRow {
        sha256: sealed.sha256,
        nonce: sealed.nonce,
        ip: sealed.evidence.ip,
        ip_source: sealed.evidence.ip_source,
        user_agent: sealed.evidence.user_agent,
        source_url: sealed.evidence.source_url,
        recorded_at: at,
    }
}

/// Writes `records` confirmed subscriptions with valid chains.
fn fill(conn: &mut PgConnection, records: usize, list_id: &str, version: (&str, &str)) {
    let started = Instant::now();
    let now = naive(SystemClock.now());
    let batch = 1_000;
    let mut done = 0;
    while done < records {
        let n = batch.min(records - done);
        let mut subs = Vec::with_capacity(n);
        let mut subscriptions_rows = Vec::with_capacity(n);
        let mut evidence_rows = Vec::with_capacity(2 * n);
        let mut events = Vec::with_capacity(3 * n);
        for i in done..done + n {
            let subscriber_id = uuid::Uuid::now_v7().to_string();
            let subscription_id = uuid::Uuid::now_v7().to_string();
            let at = now - chrono::Duration::seconds((records - i) as i64);
            let requested_evidence = evidence_row(
                format!("198.51.{}.{}", i / 256 % 256, i % 256),
                "Mozilla/5.0 (X11; Linux x86_64) bench",
                Some("https://clinic.example/footer"),
                at,
            );
            let confirmed_evidence = evidence_row(
                format!("203.0.{}.{}", i / 256 % 256, i % 256),
                "Mozilla/5.0 bench",
                None,
                at,
            );
            let place = Place {
                subscriber_id: &subscriber_id,
                subscription_id: &subscription_id,
                list_id,
                at,
            };
            let requested_details = format!(
                r#"{{"consent_source":"version_id","double_opt_in":true,"token_expires_at":"{}"}}"#,
                format_time(at + chrono::Duration::days(7))
            );
            let requested = event(
                &place,
                1,
                GENESIS_HASH,
                Draft {
                    kind: "consent_requested",
                    version: Some(version),
                    method: "form",
                    evidence_sha256: Some(&requested_evidence.sha256),
                    details: requested_details,
                },
            );
            let sent = event(
                &place,
                2,
                &requested.hash,
                Draft {
                    kind: "confirmation_sent",
                    version: None,
                    method: "mail",
                    evidence_sha256: None,
                    details: format!(
                        r#"{{"message_id":"<{}@clinic.example>"}}"#,
                        uuid::Uuid::now_v7()
                    ),
                },
            );
            let confirmed = event(
                &place,
                3,
                &sent.hash,
                Draft {
                    kind: "consent_confirmed",
                    version: Some(version),
                    method: "confirmation_page",
                    evidence_sha256: Some(&confirmed_evidence.sha256),
                    details: format!(r#"{{"request_event_id":"{}"}}"#, requested.id),
                },
            );
            subs.push(SubscriberRow {
                id: subscriber_id.clone(),
                email: Some(format!("u{i}@bench.example")),
                email_key: Some(format!("u{i}@bench.example")),
                email_hmac: format!("{:064x}", i),
                name: if i % 10 == 0 {
                    Some(format!("=Name {i}"))
                } else {
                    None
                },
                created_at: at,
                erased_at: None,
                chain_seq: 3,
                chain_head: confirmed.hash.clone(),
            });
            subscriptions_rows.push(SubscriptionRow {
                id: subscription_id,
                subscriber_id,
                list_id: list_id.to_owned(),
                state: "confirmed".to_owned(),
                consent_version_id: version.0.to_owned(),
                created_at: at,
                updated_at: at,
                confirmed_at: Some(at),
                ended_at: None,
            });
            evidence_rows.push(requested_evidence);
            evidence_rows.push(confirmed_evidence);
            events.extend([requested, sent, confirmed]);
        }
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            diesel::insert_into(subscribers::table)
                .values(&subs)
                .execute(conn)?;
            diesel::insert_into(subscriptions::table)
                .values(&subscriptions_rows)
                .execute(conn)?;
            diesel::insert_into(evidence::table)
                .values(&evidence_rows)
                .execute(conn)?;
            diesel::insert_into(consent_events::table)
                .values(&events)
                .execute(conn)?;
            Ok(())
        })
        .expect("insert a batch");
        done += n;
        if done % 100_000 == 0 {
            eprintln!(
                "  filled {done} records ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    conn.batch_execute("VACUUM ANALYZE").unwrap();
}

/// The export's columns in SQL, for PostgreSQL's own COPY.
const COPY_SQL: &str = r#"COPY (
SELECT s.id, l.slug, p.id, p.email, p.name, p.email_hmac, p.erased_at IS NOT NULL, s.state,
       r.consent_version_id, r.consent_sha256, t.language,
       r.occurred_at, r.method, re.ip, re.user_agent, re.source_url, r.details::json->>'token_expires_at',
       snt.occurred_at, snt.details::json->>'message_id',
       c.occurred_at, c.method, ce.ip, ce.user_agent,
       e.occurred_at, e.kind, e.method, p.chain_seq, p.chain_head
FROM subscriptions s
JOIN subscribers p ON p.id = s.subscriber_id
JOIN lists l ON l.id = s.list_id
LEFT JOIN LATERAL (SELECT * FROM consent_events x WHERE x.subscription_id = s.id AND x.kind = 'consent_confirmed' ORDER BY x.seq DESC LIMIT 1) c ON true
LEFT JOIN LATERAL (SELECT * FROM consent_events x WHERE x.subscription_id = s.id AND x.kind = 'consent_requested' ORDER BY x.seq DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (SELECT * FROM consent_events x WHERE x.subscription_id = s.id AND x.kind = 'confirmation_sent' ORDER BY x.seq DESC LIMIT 1) snt ON true
LEFT JOIN LATERAL (SELECT * FROM consent_events x WHERE x.subscription_id = s.id AND x.kind IN ('unsubscribed', 'consent_withdrawn') ORDER BY x.seq DESC LIMIT 1) e ON true
LEFT JOIN evidence re ON re.sha256 = r.evidence_sha256
LEFT JOIN evidence ce ON ce.sha256 = c.evidence_sha256
LEFT JOIN consent_versions v ON v.id = r.consent_version_id
LEFT JOIN consent_texts t ON t.sha256 = v.text_sha256
ORDER BY s.id
) TO STDOUT WITH (FORMAT csv, HEADER)"#;

const READ_LEDGER_SQL: &str =
    "COPY (SELECT * FROM consent_events ORDER BY subscriber_id, seq) TO STDOUT";

/// Runs psql with a COPY ... TO STDOUT and counts the bytes it streams.
fn psql_copy(url: &str, sql: &str) -> (f64, u64) {
    let started = Instant::now();
    let mut child = Command::new("psql")
        .args([url, "-X", "-q", "-c", sql])
        .stdout(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut stdout = child.stdout.take().unwrap();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = stdout.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    assert!(child.wait().unwrap().success());
    (started.elapsed().as_secs_f64(), bytes)
}

/// Runs the release binary; returns seconds and its peak RSS in KiB.
fn assent(url: &str, config: &std::path::Path, args: &[&str]) -> (f64, i64) {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(args)
        .env("ASSENT_DATABASE_URL", url)
        .env("ASSENT_CONFIG", config)
        .env("ASSENT_LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .status()
        .expect("assent");
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "assent {args:?} failed");
    (seconds, children_peak_rss_kib())
}

/// The largest peak RSS of any waited-for child so far.
fn children_peak_rss_kib() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss
}

fn main() {
    let opts = options();
    let admin = admin_url();
    let name = format!("assent_bench_export_{}", std::process::id());
    let mut admin_conn = PgConnection::establish(&admin).expect("PostgreSQL");
    admin_conn
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin_conn
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("assent.toml");
    std::fs::write(&config, "[log]\nfilter = \"warn\"\n").unwrap();

    let settings = Settings::from_toml(&format!(
        "database_url = \"{url}\"\nmail_url = \"file://{}\"",
        dir.path().display()
    ))
    .unwrap()
    .validate()
    .unwrap();
    let ctx = assent::startup::build_context(settings, std::sync::Arc::new(SystemClock)).unwrap();
    let list = ctx.lists.by_slug("newsletter").unwrap().clone();
    drop(ctx);
    let mut conn = PgConnection::establish(&url).unwrap();
    eprintln!("filling {} records ...", opts.records);
    fill(
        &mut conn,
        opts.records,
        &list.id,
        (&list.current.id, &list.current.sha256),
    );

    let out = dir.path().join("consent.csv");
    let mut rows = Vec::new();
    let mut export_ratios = Vec::new();
    let mut verify_ratios = Vec::new();
    let mut peak = 0;
    for pair in 1..=opts.pairs {
        let (copy_s, copy_bytes) = psql_copy(&url, COPY_SQL);
        let (export_s, rss) = assent(
            &url,
            &config,
            &[
                "export",
                "consent",
                "--format",
                "csv",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let export_bytes = std::fs::metadata(&out).unwrap().len();
        let (read_s, _) = psql_copy(&url, READ_LEDGER_SQL);
        let (verify_s, verify_rss) = assent(&url, &config, &["ledger", "verify"]);
        peak = peak.max(rss).max(verify_rss);
        let copy_rate = opts.records as f64 / copy_s;
        let export_rate = opts.records as f64 / export_s;
        let export_ratio = export_rate / copy_rate;
        let verify_ratio = verify_s / read_s;
        println!(
            "pair {pair}: COPY {copy_s:.2} s ({copy_rate:.0} rec/s, {} MB) | assent export {export_s:.2} s ({export_rate:.0} rec/s, {} MB) | ratio {export_ratio:.2} | read ledger {read_s:.2} s | verify {verify_s:.2} s | verify/read {verify_ratio:.2} | peak RSS so far {} MiB",
            copy_bytes / 1_000_000,
            export_bytes / 1_000_000,
            peak / 1024
        );
        export_ratios.push(export_ratio);
        verify_ratios.push(verify_ratio);
        rows.push(serde_json::json!({
            "pair": pair, "copy_seconds": copy_s, "export_seconds": export_s, "export_ratio": export_ratio,
            "read_ledger_seconds": read_s, "verify_seconds": verify_s, "verify_over_read": verify_ratio,
        }));
    }
    export_ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    verify_ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median_export = export_ratios[export_ratios.len() / 2];
    let median_verify = verify_ratios[verify_ratios.len() / 2];
    println!(
        "records {}: median export/COPY throughput {median_export:.2} (target >= 0.5), median verify/read time {median_verify:.2} (target <= 3), peak RSS of assent {} MiB (target < 64)",
        opts.records,
        peak / 1024
    );
    let report = serde_json::json!({
        "bench": "export", "records": opts.records, "pairs": rows,
        "median_export_over_copy": median_export, "median_verify_over_read": median_verify,
        "peak_rss_mib": peak as f64 / 1024.0,
    });
    match &opts.json {
        Some(path) => std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap(),
        None => println!("{report}"),
    }
    drop(conn);
    let _ = admin_conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
