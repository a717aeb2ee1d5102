//! Settings from `config.toml` with `TRACKLY_BOT_*` environment overrides, and the secrets that
//! come only from the environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Environment variable that holds the Discord bot token.
pub const TOKEN_VAR: &str = "DISCORD_TOKEN";
/// Environment variable that holds the base64 encoding of the 32-byte key for API-key encryption.
pub const ENCRYPTION_KEY_VAR: &str = "TRACKLY_BOT_ENCRYPTION_KEY";
/// Environment variable that names the encryption key, so that stored values record which key
/// sealed them and the key can be rotated later.
pub const ENCRYPTION_KEY_ID_VAR: &str = "TRACKLY_BOT_ENCRYPTION_KEY_ID";
/// Prefix of the environment variables that override `config.toml`; `__` separates sections,
/// as in `TRACKLY_BOT_TRACKLY__BASE_URL`.
pub const ENV_PREFIX: &str = "TRACKLY_BOT_";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub trackly: TracklyConfig,
    pub discord: DiscordConfig,
    pub guild: GuildConfig,
    pub linking: LinkingConfig,
    pub http: HttpConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// SQLite file, created on first start.
    pub path: PathBuf,
    /// How long a write waits for another writer's lock before failing, in milliseconds.
    pub busy_timeout_ms: u64,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("trackly-bot.db"),
            busy_timeout_ms: 5_000,
            max_connections: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracklyConfig {
    pub base_url: String,
    pub connect_timeout_ms: u64,
    /// Limit for one HTTP request, from sending it to the end of the body.
    pub request_timeout_ms: u64,
    /// Limit for one logical call including its retries and backoff waits.
    pub retry_budget_ms: u64,
    /// Retries after the first attempt, for 5xx, 429, connection failures and timeouts.
    pub max_retries: u32,
}

impl Default for TracklyConfig {
    fn default() -> Self {
        Self {
            base_url: "https://app.tracklysms.com/api/v2".to_owned(),
            connect_timeout_ms: 3_000,
            request_timeout_ms: 8_000,
            retry_budget_ms: 25_000,
            max_retries: 3,
        }
    }
}

impl TracklyConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn retry_budget(&self) -> Duration {
        Duration::from_millis(self.retry_budget_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandScope {
    /// Registered for every server the bot is in; Discord may take a while to show changes.
    Global,
    /// Registered only in `guild.id`, where changes show at once.
    Guild,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// Base URL that replaces `https://discord.com` in REST calls, for an HTTP proxy in front of
    /// Discord or a local fake. Empty means Discord itself.
    pub rest_base_url: String,
    pub command_scope: CommandScope,
    /// Limit for one REST request to Discord, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            rest_base_url: String::new(),
            command_scope: CommandScope::Global,
            request_timeout_ms: 15_000,
        }
    }
}

/// The server whose channels and roles the bot manages. Every id is optional; a feature whose id
/// is missing is skipped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuildConfig {
    pub id: Option<u64>,
    /// Category under which each linked account gets a private text channel.
    pub customer_category_id: Option<u64>,
    /// Role given to every user with an active link.
    pub linked_role_id: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkingConfig {
    /// Failed link attempts a user may make within the window before further attempts are
    /// rejected without calling Trackly.
    pub max_failed_attempts: u32,
    pub failed_attempt_window_secs: u64,
}

impl Default for LinkingConfig {
    fn default() -> Self {
        Self {
            max_failed_attempts: 5,
            failed_attempt_window_secs: 15 * 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for `/healthz` and `/metrics`. Empty disables the server.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9184".to_owned(),
        }
    }
}

/// One thing wrong with the configuration, phrased for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem(pub String);

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every problem found, so that `check-config` can list them all at once.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Loads `path` (when it exists) over the defaults, then applies `TRACKLY_BOT_*` overrides
    /// and validates the result. A missing file is not an error because every setting has a
    /// default or can come from the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        if path.exists() {
            if let Err(problem) = reject_secrets_in_file(path) {
                problems.push(problem);
            }
        }

        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .ignore(&["config", "encryption_key", "encryption_key_id"])
                    .split("__"),
            );
        let config = match figment.extract::<Config>() {
            Ok(config) => Some(config),
            Err(error) => {
                for error in error {
                    problems.push(ConfigProblem(format!("{error}")));
                }
                None
            }
        };

        if let Some(config) = &config {
            problems.extend(config.validate());
        }
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigErrors(problems)),
        }
    }

    /// Checks the relations between settings that types alone cannot express.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |text: String| problems.push(ConfigProblem(text));

        if let Err(error) = reqwest::Url::parse(&self.trackly.base_url) {
            problem(format!(
                "trackly.base_url {:?} is not a valid URL ({error}); use e.g. https://app.tracklysms.com/api/v2",
                self.trackly.base_url
            ));
        }
        if !self.discord.rest_base_url.is_empty() {
            match reqwest::Url::parse(&self.discord.rest_base_url) {
                Ok(url) if url.path() != "/" || url.query().is_some() => problem(format!(
                    "discord.rest_base_url {:?} must be a bare origin such as http://127.0.0.1:8080, without a path",
                    self.discord.rest_base_url
                )),
                Ok(_) => {}
                Err(error) => problem(format!(
                    "discord.rest_base_url {:?} is not a valid URL ({error})",
                    self.discord.rest_base_url
                )),
            }
        }
        if self.discord.command_scope == CommandScope::Guild && self.guild.id.is_none() {
            problem(
                "discord.command_scope is \"guild\" but guild.id is not set; set guild.id or use \"global\"".to_owned(),
            );
        }
        if (self.guild.customer_category_id.is_some() || self.guild.linked_role_id.is_some())
            && self.guild.id.is_none()
        {
            problem(
                "guild.customer_category_id or guild.linked_role_id is set but guild.id is not; set guild.id".to_owned(),
            );
        }

        let trackly = &self.trackly;
        if trackly.connect_timeout_ms == 0 || trackly.request_timeout_ms == 0 {
            problem(
                "trackly.connect_timeout_ms and trackly.request_timeout_ms must be above 0"
                    .to_owned(),
            );
        }
        if trackly.retry_budget_ms < trackly.request_timeout_ms {
            problem(format!(
                "trackly.retry_budget_ms ({}) must be at least trackly.request_timeout_ms ({})",
                trackly.retry_budget_ms, trackly.request_timeout_ms
            ));
        }
        // A user waits on the deferred reply for the whole budget, so keep it well under a minute.
        if trackly.retry_budget_ms > 45_000 {
            problem(format!(
                "trackly.retry_budget_ms ({}) is above the maximum of 45000 ms",
                trackly.retry_budget_ms
            ));
        }
        if self.discord.request_timeout_ms == 0 {
            problem("discord.request_timeout_ms must be above 0".to_owned());
        }
        if self.database.max_connections == 0 {
            problem("database.max_connections must be at least 1".to_owned());
        }
        if self.linking.max_failed_attempts == 0 || self.linking.failed_attempt_window_secs == 0 {
            problem("linking.max_failed_attempts and linking.failed_attempt_window_secs must be above 0".to_owned());
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            problem(format!(
                "http.listen {:?} is not an address such as 127.0.0.1:9184; leave it empty to disable the server",
                self.http.listen
            ));
        }
        problems
    }

    pub fn health_listen_addr(&self) -> Option<SocketAddr> {
        self.http.listen.parse().ok()
    }
}

/// Rejects a config file that carries a secret, because secrets are read only from the
/// environment and a file is easy to commit by mistake.
fn reject_secrets_in_file(path: &Path) -> Result<(), ConfigProblem> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| ConfigProblem(format!("cannot read {}: {error}", path.display())))?;
    let lowered = text.to_ascii_lowercase();
    for line in lowered.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if matches!(key, "token" | "discord_token" | "encryption_key") {
            return Err(ConfigProblem(format!(
                "{} contains `{key}`; secrets are read only from the environment ({TOKEN_VAR}, {ENCRYPTION_KEY_VAR}), so remove it from the file",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The secrets the bot needs, read only from the environment.
pub struct Secrets {
    pub discord_token: Zeroizing<String>,
    pub encryption_key: Zeroizing<[u8; 32]>,
    pub encryption_key_id: String,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("discord_token", &"<redacted>")
            .field("encryption_key", &"<redacted>")
            .field("encryption_key_id", &self.encryption_key_id)
            .finish()
    }
}

impl Secrets {
    /// Reads the secrets from the process environment.
    pub fn from_env() -> Result<Secrets, ConfigErrors> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the secrets through `lookup`, reporting every missing or invalid one.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Secrets, ConfigErrors> {
        let mut problems = Vec::new();

        let token = lookup(TOKEN_VAR).map(|value| Zeroizing::new(value.trim().to_owned()));
        if token.as_ref().is_none_or(|token| token.is_empty()) {
            problems.push(ConfigProblem(format!(
                "{TOKEN_VAR} is not set; export the bot token from the Discord developer portal (Bot tab, Reset Token) as {TOKEN_VAR}"
            )));
        }

        let key = match lookup(ENCRYPTION_KEY_VAR).map(Zeroizing::new) {
            None => {
                problems.push(ConfigProblem(format!(
                    "{ENCRYPTION_KEY_VAR} is not set; generate one with `openssl rand -base64 32` and export it as {ENCRYPTION_KEY_VAR}"
                )));
                None
            }
            Some(encoded) => match decode_key(encoded.trim()) {
                Ok(key) => Some(key),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
        };

        let key_id = lookup(ENCRYPTION_KEY_ID_VAR).unwrap_or_else(|| "k1".to_owned());
        let key_id_valid = !key_id.is_empty()
            && key_id.len() <= 32
            && key_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !key_id_valid {
            problems.push(ConfigProblem(format!(
                "{ENCRYPTION_KEY_ID_VAR} must be 1 to 32 letters, digits, '-' or '_'"
            )));
        }

        match (token, key) {
            (Some(discord_token), Some(encryption_key)) if problems.is_empty() => Ok(Secrets {
                discord_token,
                encryption_key,
                encryption_key_id: key_id,
            }),
            _ => Err(ConfigErrors(problems)),
        }
    }
}

fn decode_key(encoded: &str) -> Result<Zeroizing<[u8; 32]>, ConfigProblem> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| {
                ConfigProblem(format!(
                    "{ENCRYPTION_KEY_VAR} is not valid base64; generate one with `openssl rand -base64 32`"
                ))
            })?,
    );
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        ConfigProblem(format!(
            "{ENCRYPTION_KEY_VAR} decodes to {} bytes but must be exactly 32; generate one with `openssl rand -base64 32`",
            bytes.len()
        ))
    })?;
    Ok(Zeroizing::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 ASCII bytes

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn secrets_all_missing_reports_each() {
        let errors = Secrets::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(errors.0.len(), 2, "{errors}");
        assert!(errors.0[0].0.contains(TOKEN_VAR));
        assert!(errors.0[1].0.contains(ENCRYPTION_KEY_VAR));
    }

    #[test]
    fn secrets_short_key_rejected() {
        let errors = Secrets::from_lookup(lookup(&[
            (TOKEN_VAR, "t"),
            (ENCRYPTION_KEY_VAR, "c2hvcnQ="),
        ]))
        .unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert!(errors.0[0].0.contains("5 bytes"), "{errors}");
    }

    #[test]
    fn secrets_valid_and_debug_redacted() {
        let secrets =
            Secrets::from_lookup(lookup(&[(TOKEN_VAR, "tok-123"), (ENCRYPTION_KEY_VAR, KEY)]))
                .unwrap();
        assert_eq!(secrets.encryption_key_id, "k1");
        let debug = format!("{secrets:?}");
        assert!(!debug.contains("tok-123"));
    }

    #[test]
    fn validate_guild_scope_needs_guild_id() {
        let mut config = Config::default();
        config.discord.command_scope = CommandScope::Guild;
        let problems = config.validate();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].0.contains("guild.id"));
    }

    #[test]
    fn validate_reports_every_problem() {
        let mut config = Config::default();
        config.trackly.base_url = "not a url".into();
        config.discord.rest_base_url = "http://127.0.0.1:1/api".into();
        config.trackly.retry_budget_ms = 90_000;
        config.http.listen = "nowhere".into();
        let problems = config.validate();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn load_rejects_token_in_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[discord]\ntoken = \"abc\"\n").unwrap();
        let errors = Config::load(&path).unwrap_err();
        assert!(errors
            .to_string()
            .contains("secrets are read only from the environment"));
    }

    #[test]
    fn load_reads_file_and_unknown_field_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[guild]\nid = 42\n[linking]\nmax_failed_attempts = 2\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.guild.id, Some(42));
        assert_eq!(config.linking.max_failed_attempts, 2);

        std::fs::write(&path, "[guild]\nidd = 42\n").unwrap();
        let errors = Config::load(&path).unwrap_err();
        assert!(errors.to_string().contains("idd"), "{errors}");
    }
}
