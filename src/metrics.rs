//! Counters and histograms of what the service did, kept in memory per
//! instance and exposed in the Prometheus text format by `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Everything `/metrics` reports from memory.
#[derive(Debug, Default)]
pub struct Metrics {
    pub signups_accepted: AtomicU64,
    pub signups_throttled: AtomicU64,
    pub signups_refused: AtomicU64,
    pub signups_bot: AtomicU64,
    pub signups_rate_limited: AtomicU64,
    pub signups_already_confirmed: AtomicU64,
    pub confirmations: AtomicU64,
    pub unsubscribes_one_click: AtomicU64,
    pub unsubscribes_page: AtomicU64,
    pub withdrawals: AtomicU64,
    pub erasures: AtomicU64,
    pub send_attempts: AtomicU64,
    pub send_failures_transient: AtomicU64,
    pub send_failures_permanent: AtomicU64,
    pub webhook_attempts: AtomicU64,
    pub webhook_failures_transient: AtomicU64,
    pub webhook_failures_permanent: AtomicU64,
    http: Mutex<BTreeMap<String, Histogram>>,
    unsubscribe_effect: Mutex<Histogram>,
}

/// Gauges read from the database when `/metrics` is asked.
#[derive(Debug, Clone, Default)]
pub struct DatabaseGauges {
    /// Whether the outbox gauges could be read.
    pub database_up: bool,
    pub outbox_pending: i64,
    pub outbox_due: i64,
    pub outbox_oldest_due_age_seconds: f64,
    pub outbox_dead: i64,
    pub pool_connections: u32,
    pub pool_idle: u32,
}

impl Metrics {
    /// Adds one.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records how long a request to `route` took.
    pub fn observe_request(&self, route: &str, seconds: f64) {
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        http.entry(route.to_owned()).or_default().observe(seconds);
    }

    /// Records how long an unsubscribe took from request to committed effect.
    pub fn observe_unsubscribe(&self, seconds: f64) {
        self.unsubscribe_effect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, db: &DatabaseGauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let counter = |out: &mut String, name: &str, help: &str, series: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in series {
                let braces = if labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{labels}}}")
                };
                let _ = writeln!(out, "{name}{braces} {}", Self::get(value));
            }
        };
        counter(
            &mut out,
            "assent_signups_total",
            "Sign-ups by outcome (answered alike, except rate_limited: 429).",
            &[
                ("outcome=\"accepted\"", &self.signups_accepted),
                ("outcome=\"throttled\"", &self.signups_throttled),
                ("outcome=\"refused\"", &self.signups_refused),
                ("outcome=\"bot\"", &self.signups_bot),
                ("outcome=\"rate_limited\"", &self.signups_rate_limited),
                (
                    "outcome=\"already_confirmed\"",
                    &self.signups_already_confirmed,
                ),
            ],
        );
        counter(
            &mut out,
            "assent_confirmations_total",
            "Subscriptions confirmed.",
            &[("", &self.confirmations)],
        );
        counter(
            &mut out,
            "assent_unsubscribes_total",
            "Unsubscribes by method.",
            &[
                ("method=\"one_click\"", &self.unsubscribes_one_click),
                ("method=\"page\"", &self.unsubscribes_page),
            ],
        );
        counter(
            &mut out,
            "assent_withdrawals_total",
            "Consent withdrawals.",
            &[("", &self.withdrawals)],
        );
        counter(
            &mut out,
            "assent_erasures_total",
            "Erasures of personal data.",
            &[("", &self.erasures)],
        );
        counter(
            &mut out,
            "assent_send_attempts_total",
            "Mail send attempts.",
            &[("", &self.send_attempts)],
        );
        counter(
            &mut out,
            "assent_send_failures_total",
            "Failed mail sends by SMTP class.",
            &[
                ("class=\"transient\"", &self.send_failures_transient),
                ("class=\"permanent\"", &self.send_failures_permanent),
            ],
        );
        counter(
            &mut out,
            "assent_webhook_attempts_total",
            "Webhook delivery attempts.",
            &[("", &self.webhook_attempts)],
        );
        counter(
            &mut out,
            "assent_webhook_failures_total",
            "Failed webhook deliveries: transient (5xx, 408, 429, timeout, connection) or permanent (other statuses).",
            &[
                ("class=\"transient\"", &self.webhook_failures_transient),
                ("class=\"permanent\"", &self.webhook_failures_permanent),
            ],
        );
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "assent_outbox_pending",
            "Outbox rows waiting to be sent.",
            db.outbox_pending.to_string(),
        );
        gauge(
            &mut out,
            "assent_outbox_due",
            "Outbox rows due now.",
            db.outbox_due.to_string(),
        );
        gauge(
            &mut out,
            "assent_outbox_oldest_due_age_seconds",
            "How long the oldest due row has waited.",
            db.outbox_oldest_due_age_seconds.to_string(),
        );
        gauge(
            &mut out,
            "assent_outbox_dead",
            "Dead letters (GET /admin/outbox?state=dead).",
            db.outbox_dead.to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP assent_db_pool_connections Database connections held by this instance.\n# TYPE assent_db_pool_connections gauge"
        );
        let _ = writeln!(
            out,
            "assent_db_pool_connections{{state=\"idle\"}} {}",
            db.pool_idle
        );
        let _ = writeln!(
            out,
            "assent_db_pool_connections{{state=\"in_use\"}} {}",
            db.pool_connections.saturating_sub(db.pool_idle)
        );
        let _ = writeln!(
            out,
            "# HELP assent_http_request_duration_seconds HTTP request durations by route pattern.\n# TYPE assent_http_request_duration_seconds histogram"
        );
        for (route, histogram) in self.http.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let route = route.replace('"', "");
            histogram.render(
                &mut out,
                "assent_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP assent_unsubscribe_effect_seconds From receiving an unsubscribe to its committed effect (RFC 8058; Gmail allows 48 hours).\n# TYPE assent_unsubscribe_effect_seconds histogram"
        );
        self.unsubscribe_effect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(&mut out, "assent_unsubscribe_effect_seconds", "");
        out
    }
}
