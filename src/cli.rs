//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Assent: newsletter consent and subscription service.
#[derive(Debug, Parser)]
#[command(name = "assent", version, about, long_about = None)]
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
}
