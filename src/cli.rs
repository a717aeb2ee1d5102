//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "trackly-bot", version, about = "Discord bot of Trackly SMS")]
pub struct Cli {
    /// Configuration file; a missing file means defaults plus TRACKLY_BOT_* environment overrides.
    #[arg(
        long,
        short,
        global = true,
        env = "TRACKLY_BOT_CONFIG",
        default_value = "config.toml"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Connect to Discord and serve commands (the default).
    Run,
    /// Create the database if needed, apply pending migrations and exit.
    Migrate,
    /// Validate the configuration and the secrets in the environment, reporting every problem.
    CheckConfig,
}
