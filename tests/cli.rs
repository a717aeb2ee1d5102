//! The command-line interface: `run`, `check-config` and `migrate`, run as the real binary.

use std::path::Path;
use std::process::{Command, Output};

const KEY: &str = "dHJhY2tseS1ib3QtZTJlLWVuY3J5cHRpb24ta2V5ISE=";
const TOKEN: &str = "MTE5ODc2NTQzMjEwOTg3NjU0Mw.FakeTk.cli-test-token-value";

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trackly-bot"));
    command.current_dir(dir).args(args).env_clear();
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_config_lists_every_missing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["check-config"], &[]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("2 problems:"), "{text}");
    assert!(text.contains("DISCORD_TOKEN is not set"), "{text}");
    assert!(
        text.contains("TRACKLY_BOT_ENCRYPTION_KEY is not set"),
        "{text}"
    );
    assert!(text.contains("openssl rand -base64 32"), "{text}");
}

#[test]
fn run_without_secrets_stops_before_connecting() {
    for args in [&["run"][..], &[][..]] {
        let dir = tempfile::tempdir().unwrap();
        let output = run(dir.path(), args, &[]);
        assert_eq!(output.status.code(), Some(1), "trackly-bot {args:?}");
        let text = stderr(&output);
        assert!(
            text.contains("DISCORD_TOKEN is not set"),
            "{args:?}: {text}"
        );
        assert!(
            text.contains("TRACKLY_BOT_ENCRYPTION_KEY is not set"),
            "{args:?}: {text}"
        );
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        assert!(
            !dir.path().join("trackly-bot.db").exists(),
            "{args:?}: a database was created before the configuration was checked"
        );
    }
}

#[test]
fn check_config_accepts_defaults_and_ignores_unrelated_variables() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
        // Kubernetes adds variables like these for a Service named trackly-bot.
        ("TRACKLY_BOT_PORT", "tcp://10.0.0.1:80"),
        ("TRACKLY_BOT_SERVICE_HOST", "10.0.0.1"),
        ("TRACKLY_BOT_GUILD__ID", "42"),
    ];
    let output = run(dir.path(), &["check-config"], &env);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(text.contains("alerts:          enabled"), "{text}");
    assert!(text.contains("support tickets: not configured"), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    assert!(
        text.contains("guild:           42\n"),
        "the environment override was not applied: {text}"
    );
}

#[test]
fn explicit_config_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
    ];
    let output = run(
        dir.path(),
        &["--config", "missing.toml", "check-config"],
        &env,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("missing.toml does not exist"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn secret_in_config_file_is_rejected_unechoed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[discord]\ntoken = {TOKEN}\n"),
    )
    .unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
    ];
    let output = run(dir.path(), &["check-config"], &env);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("secrets are read only from the environment"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "the token was echoed: {text}");
}

#[test]
fn migrate_creates_database_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[database]\npath = \"data.db\"\n",
    )
    .unwrap();
    let output = run(dir.path(), &["migrate"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("data.db is at migration"), "{text}");
    assert!(dir.path().join("data.db").exists());

    // A second run finds nothing left to apply.
    let again = run(dir.path(), &["migrate"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn check_config_reports_misnamed_variables() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
        ("TRACKLY_BOT_GILD__ID", "value-not-shown-1"),
        ("TRACKLY_BOT_GUILD_ID", "value-not-shown-2"),
    ];
    let output = run(dir.path(), &["check-config"], &env);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("2 problems:"), "{text}");
    assert!(
        text.contains("TRACKLY_BOT_GILD__ID names the unknown section `gild`"),
        "{text}"
    );
    assert!(
        text.contains("rename it to TRACKLY_BOT_GUILD__ID"),
        "{text}"
    );
    assert!(!text.contains("value-not-shown"), "{text}");
}

#[test]
fn run_rejects_misnamed_variable_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
        ("TRACKLY_BOT_GUILD_ID", "42"),
    ];
    let output = run(dir.path(), &["run"], &env);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("rename it to TRACKLY_BOT_GUILD__ID"),
        "{text}"
    );
    assert!(!dir.path().join("trackly-bot.db").exists());
}

#[test]
fn check_config_names_file_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[guild]\nidd = 42\n").unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
    ];
    let output = run(dir.path(), &["check-config"], &env);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("`guild.idd` in config.toml is not a known setting"),
        "{text}"
    );
    assert!(!text.contains("default."), "{text}");
    assert!(!text.contains("``"), "{text}");

    std::fs::write(dir.path().join("config.toml"), "").unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
        ("TRACKLY_BOT_ALERTS__ENABLED", "maybe"),
    ];
    let output = run(dir.path(), &["check-config"], &env);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains(
            "environment variable TRACKLY_BOT_ALERTS__ENABLED (`alerts.enabled`) must be a boolean"
        ),
        "{text}"
    );
    assert!(!text.contains("maybe"), "{text}");
}

#[test]
fn check_config_names_the_file_read() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
    ];
    let output = run(dir.path(), &["check-config"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with(
            "configuration OK (defaults and the environment; no config file at config.toml)"
        ),
        "{text}"
    );
    assert!(text.contains("command scope:   global\n"), "{text}");
    assert!(text.contains("guild:           not set\n"), "{text}");

    std::fs::write(dir.path().join("config.toml"), "[guild]\nid = 7\n").unwrap();
    let output = run(dir.path(), &["check-config"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("configuration OK (read config.toml and the environment)"),
        "{text}"
    );
    assert!(text.contains("guild:           7\n"), "{text}");
}

#[test]
fn check_config_tolerates_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    // The read end is closed before the binary starts, so its first write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_trackly-bot"))
        .current_dir(dir.path())
        .arg("check-config")
        .env_clear()
        .env("DISCORD_TOKEN", TOKEN)
        .env("TRACKLY_BOT_ENCRYPTION_KEY", KEY)
        .stdout(writer)
        .output()
        .expect("the binary runs");
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.is_empty(), "{text}");
}

#[test]
fn check_config_reads_no_parent_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[guild]\nid = 42\n").unwrap();
    let child = dir.path().join("child");
    std::fs::create_dir(&child).unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
    ];
    let output = run(&child, &["check-config"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("no config file at config.toml"), "{text}");
    assert!(text.contains("guild:           not set\n"), "{text}");
}

#[test]
fn plain_http_discord_proxy_passes_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("TRACKLY_BOT_ENCRYPTION_KEY", KEY),
        (
            "TRACKLY_BOT_DISCORD__REST_BASE_URL",
            "http://discord-proxy.internal:8080",
        ),
    ];
    let output = run(dir.path(), &["check-config"], &env);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("warning: discord.rest_base_url sends the bot token over plain http"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
}
