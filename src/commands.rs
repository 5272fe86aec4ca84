//! The command-line tasks besides `serve`: API keys, ledger verification
//! and exports to files.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::DateTime;

use crate::cli::KeysCommand;
use crate::clock::{Clock, SystemClock, naive};
use crate::config::ValidSettings;
use crate::db::DbError;
use crate::db::repo::{api_keys, exports::ExportFilter, ledger};
use crate::domain::api_key::{ApiKey, parse_key_name};
use crate::exports::{ConsentFormat, write_consent};
use crate::startup::{build_context, prepare_database};

/// `assent keys create|list|revoke`.
pub fn keys(settings: &ValidSettings, action: KeysCommand) -> anyhow::Result<()> {
    let pool = prepare_database(settings)?;
    let mut conn = pool.get().map_err(DbError::from)?;
    let now = naive(SystemClock.now());
    match action {
        KeysCommand::Create { name } => {
            let name = parse_key_name(&name)?;
            let key = ApiKey::generate();
            api_keys::create(&mut conn, name, &key.digest(), now)?;
            eprintln!("created key {name:?}; it is shown only now:");
            println!("{}", key.expose());
        }
        KeysCommand::List => {
            for key in api_keys::list(&mut conn)? {
                println!(
                    "{}\tcreated {}\t{}\tlast used {}",
                    key.name,
                    key.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    key.revoked_at
                        .map(|t| format!("revoked {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                        .unwrap_or_else(|| "active".to_owned()),
                    key.last_used_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_else(|| "never".to_owned()),
                );
            }
        }
        KeysCommand::Revoke { name } => {
            api_keys::revoke(&mut conn, &name, now)?;
            println!("revoked {name:?}");
        }
    }
    Ok(())
}

/// `assent ledger verify`: prints the report as JSON; fails if broken.
pub fn verify_ledger(settings: &ValidSettings) -> anyhow::Result<()> {
    let pool = prepare_database(settings)?;
    let mut conn = pool.get().map_err(DbError::from)?;
    let report = ledger::verify_ledger(&pool, &mut conn)?;
    println!("{}", serde_json::to_string(&report)?);
    if !report.ok {
        bail!("the consent ledger is broken");
    }
    Ok(())
}

fn parse_time(name: &str, value: Option<String>) -> anyhow::Result<Option<chrono::NaiveDateTime>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(&v)
                .map(|t| t.naive_utc())
                .with_context(|| format!("--{name} {v:?} is not an RFC 3339 time"))
        })
        .transpose()
}

/// `assent export consent`: the same records as the HTTP export, to a file,
/// with a progress bar on a terminal.
pub fn export_consent(
    settings: &ValidSettings,
    format: &str,
    out: &Path,
    list: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> anyhow::Result<()> {
    let format = ConsentFormat::parse(format).context("--format is csv, ndjson or iso27560")?;
    let ctx = build_context(settings.clone(), Arc::new(SystemClock))?;
    let list_id = match list {
        Some(slug) => Some(
            ctx.lists
                .by_slug(&slug)
                .map(|l| l.id.clone())
                .with_context(|| format!("there is no list {slug:?}"))?,
        ),
        None => None,
    };
    let filter = ExportFilter {
        list_id,
        since: parse_time("since", since)?,
        until: parse_time("until", until)?,
    };
    let partial = out.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {human_pos} records {per_sec} {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut io_error = None;
    let mut conn = ctx.pool.get().map_err(DbError::from)?;
    let base = ctx.settings.base_url.to_string();
    let written = write_consent(
        &mut conn,
        &filter,
        format,
        &ctx.lists,
        &base,
        &mut |chunk| {
            let lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
            progress.inc(lines);
            match writer.write_all(&chunk) {
                Ok(()) => true,
                Err(e) => {
                    io_error = Some(e);
                    false
                }
            }
        },
    )?;
    if let Some(error) = io_error {
        return Err(error).with_context(|| format!("writing {}", partial.display()));
    }
    writer.flush()?;
    std::fs::rename(&partial, out).with_context(|| format!("renaming to {}", out.display()))?;
    progress.finish_and_clear();
    eprintln!("wrote {written} records to {}", out.display());
    Ok(())
}
