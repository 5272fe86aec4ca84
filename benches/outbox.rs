//! Confirmation email delivery: how fast the outbox worker of a running
//! `assent serve` (the release binary, as a child process) delivers a
//! backlog of pending confirmation emails to a local SMTP sink, next to the
//! rate at which the same sink accepts messages from a plain SMTP load
//! generator, measured in the same run (reference, worker, reference).
//!
//! cargo bench --bench outbox -- [--backend postgres|sqlite] [--rows N]
//!     [--seconds S] [--sink-pipelining on|off] [--json FILE]
//!
//! The sink counts each distinct Message-ID, so a message delivered twice
//! shows; the worker's resident memory is sampled while it works.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assent::clock::{Clock, SystemClock, naive};
use assent::config::Settings;
use assent::db::repo::signup::{PendingSignup, record_batch};
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

mod common;

struct Options {
    backend: String,
    rows: usize,
    seconds: u64,
    json: Option<String>,
    /// Whether the sink offers PIPELINING to the worker.
    sink_pipelining: bool,
}

fn options() -> Options {
    let mut opts = Options {
        backend: "postgres".to_owned(),
        rows: 100_000,
        seconds: 5,
        json: None,
        sink_pipelining: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--backend" => opts.backend = value,
            "--rows" => opts.rows = value.parse().expect("--rows N"),
            "--seconds" => opts.seconds = value.parse().expect("--seconds S"),
            "--json" => opts.json = Some(value),
            "--sink-pipelining" => opts.sink_pipelining = value != "off",
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    opts
}

/// An SMTP server that accepts everything and remembers Message-IDs. Like
/// Postfix, it offers PIPELINING (unless told not to) and writes its
/// replies when it has read everything the client sent so far, so that a
/// client that pipelines gets its replies together and one that does not
/// gets each at once.
#[derive(Clone, Default)]
struct Sink {
    accepted: Arc<AtomicU64>,
    message_ids: Arc<Mutex<HashSet<String>>>,
    without_pipelining: bool,
}

impl Sink {
    async fn start(&self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let _ = sink.serve(stream).await;
                });
            }
        });
        port
    }

    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        // Replies go out at once, as a relay's do (no Nagle delay).
        stream.set_nodelay(true)?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let mut replies: Vec<u8> = b"220 sink ESMTP\r\n".to_vec();
        let mut line = String::new();
        loop {
            if next_line(&mut lines, &mut write, &mut replies, &mut line).await? == 0 {
                return Ok(());
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" if self.without_pipelining => {
                    replies.extend(b"250-sink\r\n250 8BITMIME\r\n")
                }
                "EHLO" => replies.extend(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
                "DATA" => {
                    replies.extend(b"354 go ahead\r\n");
                    let mut message_id = None;
                    loop {
                        if next_line(&mut lines, &mut write, &mut replies, &mut line).await? == 0 {
                            return Ok(());
                        }
                        if line == ".\r\n" {
                            break;
                        }
                        if message_id.is_none()
                            && line.len() > 11
                            && line[..11].eq_ignore_ascii_case("message-id:")
                        {
                            message_id = Some(line[11..].trim().to_owned());
                        }
                    }
                    if let Some(id) = message_id {
                        self.message_ids.lock().unwrap().insert(id);
                    }
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                    replies.extend(b"250 2.0.0 queued\r\n");
                }
                "QUIT" => {
                    replies.extend(b"221 bye\r\n");
                    write.write_all(&replies).await?;
                    return Ok(());
                }
                _ => replies.extend(b"250 ok\r\n"),
            }
        }
    }
}

/// Reads the client's next line into `line`, writing the replies held so
/// far first if the client has sent nothing more (so replies to pipelined
/// commands go out together). Returns the bytes read, 0 at the end.
async fn next_line(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    replies: &mut Vec<u8>,
    line: &mut String,
) -> std::io::Result<usize> {
    line.clear();
    if lines.buffer().is_empty() && !replies.is_empty() {
        write.write_all(replies).await?;
        replies.clear();
    }
    lines.read_line(line).await
}

/// A message the size of a confirmation email.
fn sample_message(n: u64) -> String {
    let mut body = format!(
        "From: news@bench.example\r\nTo: r{n}@bench.example\r\nSubject: Please confirm\r\nMessage-ID: <ref-{n}@bench.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    for _ in 0..30 {
        body.push_str("Please confirm your subscription by opening the link below.\r\n");
    }
    body
}

/// One SMTP client sending messages one after another (no pipelining,
/// as lettre sends) until the deadline.
async fn generator_connection(port: u16, deadline: Instant, next: Arc<AtomicU64>) -> u64 {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    let reply = async |lines: &mut BufReader<_>, line: &mut String| -> bool {
        loop {
            line.clear();
            match lines.read_line(line).await {
                Ok(0) | Err(_) => return false,
                Ok(_) if line.as_bytes().get(3) == Some(&b'-') => continue,
                Ok(_) => return true,
            }
        }
    };
    if !reply(&mut lines, &mut line).await {
        return 0;
    }
    let _ = write.write_all(b"EHLO generator\r\n").await;
    reply(&mut lines, &mut line).await;
    let mut sent = 0;
    while Instant::now() < deadline {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let steps = [
            "MAIL FROM:<news@bench.example>\r\n".to_owned(),
            format!("RCPT TO:<r{n}@bench.example>\r\n"),
            "DATA\r\n".to_owned(),
            format!("{}\r\n.\r\n", sample_message(n)),
        ];
        for step in steps {
            if write.write_all(step.as_bytes()).await.is_err()
                || !reply(&mut lines, &mut line).await
            {
                return sent;
            }
        }
        sent += 1;
    }
    let _ = write.write_all(b"QUIT\r\n").await;
    sent
}

/// Messages per second the sink accepts from `connections` plain clients.
async fn reference_rate(port: u16, connections: usize, seconds: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(generator_connection(port, deadline, Arc::clone(&next))))
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += task.await.unwrap();
    }
    sent as f64 / started.elapsed().as_secs_f64()
}

/// Queues `rows` confirmation emails the way sign-ups do (in batches).
fn fill(ctx: &assent::context::SharedContext, rows: usize) {
    let mut conn = ctx.pool.get().unwrap();
    let now = naive(ctx.clock.now());
    let mut done = 0;
    while done < rows {
        let batch: Vec<PendingSignup> = (done..(done + 500).min(rows))
            .map(|n| PendingSignup {
                input: common::newsletter_signup(
                    ctx,
                    &format!("w{n}@bench.example"),
                    "bench.example",
                ),
                now,
            })
            .collect();
        for result in record_batch(&mut conn, &batch) {
            result.expect("queued");
        }
        done += batch.len();
    }
}

fn resident_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user and system) a process has used so far, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: fields count from
    // after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The process ids of the PostgreSQL backends connected to the database.
fn backends_of(admin: &str, database: &str) -> Vec<u32> {
    #[derive(diesel::QueryableByName)]
    struct Backend {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let Ok(mut conn) = diesel::PgConnection::establish(admin) else {
        return Vec::new();
    };
    diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(database)
        .load::<Backend>(&mut conn)
        .map(|rows| rows.into_iter().map(|b| b.pid as u32).collect())
        .unwrap_or_default()
}

fn main() {
    let opts = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, drop_pg) = if opts.backend == "sqlite" {
        (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            None,
        )
    } else {
        let admin = std::env::var("ASSENT_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("assent_bench_outbox_{}", std::process::id());
        let mut conn = diesel::PgConnection::establish(&admin).expect("PostgreSQL for the bench");
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop an old scratch database");
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("scratch database");
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        (url.to_string(), Some((admin, name)))
    };

    let sink = Sink {
        without_pipelining: !opts.sink_pipelining,
        ..Sink::default()
    };
    let sink_port = runtime.block_on(sink.start());
    // The worker sends over `mail.smtp_pool_max_size` SMTP connections at
    // a time (8, the default, set below); the generator gets as many.
    let connections = 8;
    let before = runtime.block_on(reference_rate(sink_port, connections, opts.seconds));
    println!(
        "reference: the sink accepts {before:.0} messages/s from {connections} plain SMTP clients"
    );

    let settings = Settings::from_toml(&format!(
        "database_url = \"{url}\"\nmail_url = \"file://{}\"\n[outbox]\nworker = false\n[log]\nfilter = \"warn\"\n",
        dir.path().display()
    ))
    .unwrap()
    .validate()
    .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ctx = assent::startup::build_context(settings, clock).expect("context");
    let filling = Instant::now();
    fill(&ctx, opts.rows);
    // The statistics autovacuum keeps a database in: without them the
    // planner takes the backlog for a few dozen rows.
    ctx.pool
        .get()
        .unwrap()
        .batch_execute(if opts.backend == "sqlite" {
            "ANALYZE"
        } else {
            "VACUUM ANALYZE"
        })
        .unwrap();
    println!(
        "queued {} confirmation emails in {:.1} s",
        opts.rows,
        filling.elapsed().as_secs_f64()
    );
    drop(ctx);

    let config = dir.path().join("assent.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:0\"\ndatabase_url = \"{url}\"\nmail_url = \"smtp://127.0.0.1:{sink_port}\"\n[mail]\nsmtp_pool_max_size = {connections}\n[log]\nfilter = \"warn\"\n"
        ),
    )
    .unwrap();
    let already = sink.accepted.load(Ordering::Relaxed);
    let sink_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("assent serve");
    let mut samples = Vec::new();
    let deadline = started + Duration::from_secs(1800);
    let target = already + opts.rows as u64;
    // Completion is checked every 5 ms (so the time is not rounded up to a
    // sampling period), the resident memory every 500 ms.
    let mut next_sample = Instant::now();
    while sink.accepted.load(Ordering::Relaxed) < target {
        assert!(
            Instant::now() < deadline,
            "the worker did not deliver everything in time"
        );
        if Instant::now() >= next_sample {
            samples.push(resident_mib(child.id()));
            next_sample += Duration::from_millis(500);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    samples.push(resident_mib(child.id()));
    let seconds = started.elapsed().as_secs_f64();
    // CPU per message, read before the processes end: the worker's own and
    // that of the PostgreSQL backends serving it (start-up included).
    let worker_cpu = cpu_seconds(child.id());
    // The sink is this process, which does little else meanwhile.
    let sink_cpu = cpu_seconds(std::process::id()) - sink_cpu_before;
    let database_cpu = drop_pg.as_ref().map(|(admin, name)| {
        backends_of(admin, name)
            .into_iter()
            .map(cpu_seconds)
            .sum::<f64>()
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let worker_rate = opts.rows as f64 / seconds;
    let distinct = sink.message_ids.lock().unwrap().len() as u64;
    // The reference's own Message-IDs count too.
    let delivered_twice = sink.accepted.load(Ordering::Relaxed) - distinct;

    let after = runtime.block_on(reference_rate(sink_port, connections, opts.seconds));
    println!(
        "reference: the sink accepts {after:.0} messages/s from {connections} plain SMTP clients"
    );
    let reference = (before + after) / 2.0;
    let ratio = worker_rate / reference;
    let quarter = samples.len() / 4;
    let early = samples
        .iter()
        .take(quarter.max(1))
        .cloned()
        .fold(0.0, f64::max);
    let late = samples
        .iter()
        .skip(samples.len() - quarter.max(1))
        .cloned()
        .fold(0.0, f64::max);
    let peak = samples.iter().cloned().fold(0.0, f64::max);
    let per_message = |cpu: f64| cpu * 1e6 / opts.rows as f64;
    println!(
        "worker ({}): delivered {} in {seconds:.1} s = {worker_rate:.0}/s (including start-up) | worker/reference {ratio:.2} | duplicates {delivered_twice} | RSS peak {peak:.1} MiB, first quarter max {early:.1} MiB, last quarter max {late:.1} MiB | CPU per message: assent {:.1} µs, PostgreSQL {}, sink {:.1} µs",
        opts.backend,
        opts.rows,
        per_message(worker_cpu),
        database_cpu.map_or("not measured".to_owned(), |cpu| format!(
            "{:.1} µs",
            per_message(cpu)
        )),
        per_message(sink_cpu),
    );
    let report = serde_json::json!({
        "bench": "outbox",
        "backend": opts.backend,
        "rows": opts.rows,
        "sink_pipelining": opts.sink_pipelining,
        "reference_per_second": [before, after],
        "worker_per_second": worker_rate,
        "worker_seconds": seconds,
        "worker_over_reference": ratio,
        "duplicates": delivered_twice,
        "rss_mib": { "peak": peak, "first_quarter_max": early, "last_quarter_max": late },
        "cpu_microseconds_per_message": {
            "assent": per_message(worker_cpu),
            "postgres": database_cpu.map(per_message),
            "sink": per_message(sink_cpu),
        },
    });
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    } else {
        println!("{report}");
    }
    if let Some((admin, name)) = drop_pg
        && let Ok(mut conn) = diesel::PgConnection::establish(&admin)
    {
        let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}
