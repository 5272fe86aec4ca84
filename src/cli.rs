//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ASSENT_GIT_COMMIT"),
    ")"
);

/// Assent: newsletter consent and subscription service.
#[derive(Debug, Parser)]
#[command(name = "assent", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// A TOML configuration file (see docs/configuration.md). Environment
    /// variables ASSENT_* override it.
    #[arg(long, global = true, env = "ASSENT_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; `serve` when none is given.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service and the outbox worker (migrates first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Revert every migration instead (destroys all data; for tests).
        #[arg(long, hide = true)]
        revert_all: bool,
    },
    /// Check the configuration and print it with secrets redacted.
    CheckConfig,
    /// Manage admin API keys (printed once, stored only hashed).
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Work with the consent ledger.
    Ledger {
        #[command(subcommand)]
        action: LedgerCommand,
    },
    /// Write a compliance export to a file.
    Export {
        #[command(subcommand)]
        what: ExportCommand,
    },
    /// Print the OpenAPI 3.1 description of the HTTP API (the same as
    /// `GET /openapi.json`): `assent openapi > docs/openapi.json`.
    Openapi,
}

/// `assent keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create {
        /// A name to list and revoke the key by.
        #[arg(long)]
        name: String,
    },
    /// List keys (names and dates, never the keys).
    List,
    /// Revoke a key by name.
    Revoke {
        /// The key's name.
        name: String,
    },
}

/// `assent ledger ...`
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every hash chain; exit 1 if any is broken.
    Verify,
}

/// `assent export ...`
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// One record per subscription (see docs/compliance.md).
    Consent {
        /// csv, ndjson or iso27560.
        #[arg(long, default_value = "csv")]
        format: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Only this list.
        #[arg(long)]
        list: Option<String>,
        /// Only subscriptions with activity at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// ... and before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
    },
}
