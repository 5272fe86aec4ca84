//! The `assent` binary: parse the command line, load settings, run.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use assent::cli::{Cli, Command, ExportCommand, LedgerCommand};
use assent::clock::SystemClock;
use assent::commands;
use assent::config::Settings;
use assent::db::migrate;
use assent::startup::Application;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Openapi)) {
        // Needs no configuration: the document describes the code.
        return print_openapi();
    }
    let settings = match Settings::load(cli.config.as_deref()).and_then(|s| s.validate()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("assent: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    assent::telemetry::init(&settings.log);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Migrate { revert_all } => run_migrations(&settings, revert_all),
        Command::CheckConfig => {
            println!("{settings:#?}");
            Ok(())
        }
        Command::Keys { action } => commands::keys(&settings, action),
        Command::Ledger {
            action: LedgerCommand::Verify,
        } => commands::verify_ledger(&settings),
        Command::Export {
            what:
                ExportCommand::Consent {
                    format,
                    out,
                    list,
                    since,
                    until,
                },
        } => commands::export_consent(&settings, &format, &out, list, since, until),
        Command::Openapi => {
            print_openapi();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = ?error, "assent stopped with an error");
            eprintln!("assent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_openapi() -> ExitCode {
    print!("{}", assent::openapi::json());
    ExitCode::SUCCESS
}

fn serve(settings: assent::config::ValidSettings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings, Arc::new(SystemClock)).await?;
        tracing::info!(port = app.port(), "assent is listening");
        app.run_until_stopped().await?;
        Ok(())
    })
}

fn run_migrations(
    settings: &assent::config::ValidSettings,
    revert_all: bool,
) -> anyhow::Result<()> {
    let mut conn = settings
        .database_url
        .establish(Duration::from_millis(
            settings.database.sqlite_busy_timeout_ms,
        ))
        .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", settings.database_url.redacted()))?;
    if revert_all {
        migrate::revert_all(&mut conn)?;
        println!("reverted every migration");
        return Ok(());
    }
    let applied = migrate::run(&mut conn)?;
    if applied.is_empty() {
        println!("the database is up to date");
    } else {
        println!("applied: {}", applied.join(", "));
    }
    Ok(())
}
