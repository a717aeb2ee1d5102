use std::process::ExitCode;

use clap::Parser;
use trackly_bot::cli::{Cli, Command};
use trackly_bot::{app, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_file = cli.config_file();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => app::run(&config_file).await,
        Command::Migrate => app::migrate(&config_file).await,
        Command::CheckConfig => app::check_config(&config_file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // This bypasses the log writer, so redact here too: a configuration error can quote
            // a value that an operator pasted into the wrong setting.
            let message = telemetry::redact(&format!("{error:#}"), &telemetry::env_secrets());
            eprintln!("trackly-bot: {message}");
            ExitCode::FAILURE
        }
    }
}
