use std::process::ExitCode;

use clap::Parser;
use trackly_bot::app;
use trackly_bot::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => app::run(&cli.config).await,
        Command::Migrate => app::migrate(&cli.config).await,
        Command::CheckConfig => app::check_config(&cli.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trackly-bot: {error:#}");
            ExitCode::FAILURE
        }
    }
}
