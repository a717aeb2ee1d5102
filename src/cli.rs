//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigErrors};

#[derive(Debug, Parser)]
#[command(name = "trackly-bot", version, about = "Discord bot of Trackly SMS")]
pub struct Cli {
    /// Configuration file [default: config.toml, used only when it exists]. A file named here
    /// must exist.
    #[arg(long, short, global = true, env = "TRACKLY_BOT_CONFIG")]
    pub config: Option<PathBuf>,

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

/// The configuration file to read, and whether the operator named it.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// A named file must exist; the default `config.toml` is optional.
    pub explicit: bool,
}

impl ConfigFile {
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        Config::load_file(&self.path, self.explicit)
    }
}

impl Cli {
    pub fn config_file(&self) -> ConfigFile {
        match &self.config {
            Some(path) => ConfigFile {
                path: path.clone(),
                explicit: true,
            },
            None => ConfigFile {
                path: PathBuf::from("config.toml"),
                explicit: false,
            },
        }
    }
}
