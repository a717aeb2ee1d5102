//! Command-line interface.

use std::io::{self, Write};
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

/// Formats the summary that `check-config` prints for a valid `config`, read from `file` when
/// it exists.
pub fn config_summary(config: &Config, file: &ConfigFile) -> String {
    let source = if file.path.exists() {
        format!("read {} and the environment", file.path.display())
    } else {
        format!(
            "defaults and the environment; no config file at {}",
            file.path.display()
        )
    };
    let rest = if config.discord.rest_base_url.is_empty() {
        "https://discord.com"
    } else {
        config.discord.rest_base_url.as_str()
    };
    let guild = config
        .guild
        .id
        .map_or_else(|| "not set".to_owned(), |id| id.to_string());
    let health = if config.http.listen.is_empty() {
        "disabled"
    } else {
        config.http.listen.as_str()
    };
    let alerts = if config.alerts.enabled {
        let internal = [
            config.alerts.all_alerts_channel_id,
            config.alerts.billing_alerts_channel_id,
        ]
        .iter()
        .filter(|id| id.is_some())
        .count();
        format!("enabled, {internal} of 2 internal channels set")
    } else {
        "disabled".to_owned()
    };
    let support = if config.support.channels().is_some() {
        "configured"
    } else {
        "not configured (/support needs support.channel_id, staff_channel_id, staff_log_channel_id and staff_role_id)"
    };

    [
        format!("configuration OK ({source})"),
        format!("  database:        {}", config.database.path.display()),
        format!("  trackly:         {}", config.trackly.base_url),
        format!("  discord REST:    {rest}"),
        format!(
            "  command scope:   {}",
            config.discord.command_scope.as_str()
        ),
        format!("  guild:           {guild}"),
        format!("  health server:   {health}"),
        format!("  alerts:          {alerts}"),
        format!("  support tickets: {support}"),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect()
}

/// Writes `text` to stdout. A closed stdout, as when the output is piped into `head`, ends the
/// output quietly instead of failing.
pub fn print_stdout(text: &str) -> io::Result<()> {
    write_ignoring_closed_pipe(&mut io::stdout().lock(), text)
}

fn write_ignoring_closed_pipe(output: &mut impl Write, text: &str) -> io::Result<()> {
    match output
        .write_all(text.as_bytes())
        .and_then(|()| output.flush())
    {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every write with `kind`.
    struct FailingOutput(io::ErrorKind);

    impl Write for FailingOutput {
        fn write(&mut self, _buffer: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn closed_pipe_is_not_an_error() {
        let mut closed = FailingOutput(io::ErrorKind::BrokenPipe);
        assert!(write_ignoring_closed_pipe(&mut closed, "text").is_ok());
        let mut full = FailingOutput(io::ErrorKind::StorageFull);
        let error = write_ignoring_closed_pipe(&mut full, "text").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn summary_prints_plain_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile {
            path: dir.path().join("config.toml"),
            explicit: false,
        };
        let mut config = Config::default();
        let summary = config_summary(&config, &file);
        assert!(
            summary
                .starts_with("configuration OK (defaults and the environment; no config file at "),
            "{summary}"
        );
        assert!(summary.contains("command scope:   global\n"), "{summary}");
        assert!(summary.contains("guild:           not set\n"), "{summary}");
        assert!(!summary.contains("None"), "{summary}");

        std::fs::write(&file.path, "").unwrap();
        config.guild.id = Some(123);
        let summary = config_summary(&config, &file);
        assert!(summary.starts_with("configuration OK (read "), "{summary}");
        assert!(
            summary.contains("config.toml and the environment)"),
            "{summary}"
        );
        assert!(summary.contains("guild:           123\n"), "{summary}");
        assert!(!summary.contains("Some("), "{summary}");
    }
}
