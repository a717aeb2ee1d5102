//! Settings from `config.toml` with `TRACKLY_BOT_*` environment overrides, and the secrets that
//! come only from the environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use figment::error::{Actual, Kind};
use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Source};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

mod environment;

use environment::{read_env_variable, EnvOverride, EnvVariable};

/// Environment variable that contains the Discord bot token.
pub const TOKEN_VAR: &str = "DISCORD_TOKEN";
/// Environment variable that contains the base64 encoding of the 32-byte key for API-key encryption.
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
    pub alerts: AlertsConfig,
    pub support: SupportConfig,
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

impl CommandScope {
    /// Returns the value as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandScope::Global => "global",
            CommandScope::Guild => "guild",
        }
    }
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

/// Support tickets. The four channel and role ids are all needed; while any is missing, the
/// `/support` commands tell users that support is not configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupportConfig {
    /// Text channel under which each ticket gets a private thread.
    pub channel_id: Option<u64>,
    /// Channel where staff are notified of new tickets, with the staff role mentioned.
    pub staff_channel_id: Option<u64>,
    /// Channel that receives the transcript of each closed ticket.
    pub staff_log_channel_id: Option<u64>,
    /// Role whose members are support staff: they see every ticket, claim and reopen.
    pub staff_role_id: Option<u64>,
    /// Text before the ticket number, as in `T-1042`.
    pub number_prefix: String,
    /// Number of the first ticket. Raising it later moves the sequence forward; numbers are
    /// never reused.
    pub number_start: u64,
    /// Open tickets one user may have at a time.
    pub max_open_per_user: u32,
}

impl Default for SupportConfig {
    fn default() -> Self {
        Self {
            channel_id: None,
            staff_channel_id: None,
            staff_log_channel_id: None,
            staff_role_id: None,
            number_prefix: "T-".to_owned(),
            number_start: 1,
            max_open_per_user: 3,
        }
    }
}

/// The support channel and role ids, present only when all of them are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportChannels {
    pub channel_id: u64,
    pub staff_channel_id: u64,
    pub staff_log_channel_id: u64,
    pub staff_role_id: u64,
}

/// Maximum digest window, because a storm held longer than a day would hide alerts for too long.
const MAX_DIGEST_WINDOW_SECS: u64 = 86_400;

/// Highest allowed `support.number_start`, so numbers stay far below SQLite's INTEGER maximum.
const MAX_TICKET_NUMBER_START: u64 = 1_000_000_000_000;

impl SupportConfig {
    pub fn channels(&self) -> Option<SupportChannels> {
        Some(SupportChannels {
            channel_id: self.channel_id?,
            staff_channel_id: self.staff_channel_id?,
            staff_log_channel_id: self.staff_log_channel_id?,
            staff_role_id: self.staff_role_id?,
        })
    }

    fn validate(&self, problem: &mut impl FnMut(String)) {
        let ids = [
            ("support.channel_id", self.channel_id),
            ("support.staff_channel_id", self.staff_channel_id),
            ("support.staff_log_channel_id", self.staff_log_channel_id),
            ("support.staff_role_id", self.staff_role_id),
        ];
        let missing: Vec<&str> = ids
            .iter()
            .filter(|(_, id)| id.is_none())
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() && missing.len() < ids.len() {
            problem(format!(
                "support tickets need all four ids, but {} is not set; set it or remove the other support ids",
                missing.join(", ")
            ));
        }
        for (name, id) in ids {
            if id == Some(0) {
                problem(format!("{name} is 0; use the channel or role id from Discord (Developer Mode, Copy ID)"));
            }
        }
        let prefix_valid = self.number_prefix.chars().count() <= 10
            && self
                .number_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '#');
        if !prefix_valid {
            problem(format!(
                "support.number_prefix {:?} must be at most 10 letters, digits, '-', '_' or '#'",
                self.number_prefix
            ));
        }
        if self.number_start == 0 || self.number_start > MAX_TICKET_NUMBER_START {
            problem(format!(
                "support.number_start ({}) must be between 1 and {MAX_TICKET_NUMBER_START}",
                self.number_start
            ));
        }
        if self.max_open_per_user == 0 || self.max_open_per_user > 50 {
            problem(format!(
                "support.max_open_per_user ({}) must be between 1 and 50",
                self.max_open_per_user
            ));
        }
    }
}

/// Real-time alerts: the feed poller, the digest and the dispatcher's pacing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Whether the poller and the dispatcher run. `/alerts` commands work either way.
    pub enabled: bool,
    /// Time between the starts of two poll runs, in milliseconds.
    pub poll_interval_ms: u64,
    /// Events requested per `GET /events` page (1 to 500).
    pub page_size: u32,
    /// Accounts polled at the same time.
    pub max_concurrent_accounts: usize,
    /// Limit for one poll run over all accounts, in milliseconds.
    pub poll_timeout_ms: u64,
    /// Alerts one recipient gets individually within a digest window; the rest of the window
    /// goes out as one digest. Critical alerts are never held.
    pub digest_threshold: u32,
    pub digest_window_secs: u64,
    /// Internal channel that gets every critical alert of every account.
    pub all_alerts_channel_id: Option<u64>,
    /// Internal channel that gets payment failures and spam complaints.
    pub billing_alerts_channel_id: Option<u64>,
    /// Messages the dispatcher sends per second over all channels (Discord allows 50).
    pub global_messages_per_sec: u32,
    /// Messages per channel within 5 seconds (Discord allows about 5).
    pub channel_messages_per_5s: u32,
    /// How long shutdown waits for in-flight sends, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: 5_000,
            page_size: 100,
            max_concurrent_accounts: 4,
            poll_timeout_ms: 30_000,
            digest_threshold: 5,
            digest_window_secs: 60,
            all_alerts_channel_id: None,
            billing_alerts_channel_id: None,
            global_messages_per_sec: 40,
            channel_messages_per_5s: 4,
            shutdown_grace_ms: 5_000,
        }
    }
}

impl AlertsConfig {
    fn validate(&self, problem: &mut impl FnMut(String)) {
        if !(1..=500).contains(&self.page_size) {
            problem(format!(
                "alerts.page_size ({}) must be between 1 and 500, the limits of Trackly's GET /events",
                self.page_size
            ));
        }
        if self.poll_interval_ms < 100 {
            problem(format!(
                "alerts.poll_interval_ms ({}) must be at least 100",
                self.poll_interval_ms
            ));
        }
        if self.poll_timeout_ms == 0 {
            problem("alerts.poll_timeout_ms must be above 0".to_owned());
        }
        if self.max_concurrent_accounts == 0 {
            problem("alerts.max_concurrent_accounts must be at least 1".to_owned());
        }
        if self.digest_threshold == 0 {
            problem("alerts.digest_threshold must be above 0".to_owned());
        }
        if !(1..=MAX_DIGEST_WINDOW_SECS).contains(&self.digest_window_secs) {
            problem(format!(
                "alerts.digest_window_secs ({}) must be between 1 and {MAX_DIGEST_WINDOW_SECS} (one day)",
                self.digest_window_secs
            ));
        }
        if !(1..=50).contains(&self.global_messages_per_sec) {
            problem(format!(
                "alerts.global_messages_per_sec ({}) must be between 1 and 50, Discord's global limit",
                self.global_messages_per_sec
            ));
        }
        if !(1..=5).contains(&self.channel_messages_per_5s) {
            problem(format!(
                "alerts.channel_messages_per_5s ({}) must be between 1 and 5, Discord's limit per channel",
                self.channel_messages_per_5s
            ));
        }
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn poll_timeout(&self) -> Duration {
        Duration::from_millis(self.poll_timeout_ms)
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
        let count = self.0.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        writeln!(f, "the configuration has {count} {noun}:")?;
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
        Self::load_file(path, false)
    }

    /// Like [`Config::load`], but with `must_exist` a missing file is an error, for a path the
    /// operator named explicitly.
    pub fn load_file(path: &Path, must_exist: bool) -> Result<Config, ConfigErrors> {
        let variables = std::env::vars_os().map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        });
        Self::load_with_env(path, must_exist, variables)
    }

    /// Like [`Config::load_file`], with `variables` (name and value pairs) in place of the
    /// process environment.
    pub fn load_with_env(
        path: &Path,
        must_exist: bool,
        variables: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        if path.exists() {
            // The file is not parsed at all then, because parse errors quote the offending line.
            reject_secrets_in_file(path).map_err(|problem| ConfigErrors(vec![problem]))?;
        } else if must_exist {
            return Err(ConfigErrors(vec![ConfigProblem(format!(
                "the configuration file {} does not exist; create it from config.toml.example or leave out --config",
                path.display()
            ))]));
        }

        let sections = config_sections();
        let string_keys = string_setting_keys();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if path.exists() {
            // `Toml::file` would also search the parent directories for a relative path, and
            // so read a file that the secret check above never saw.
            figment = figment.merge(Toml::file_exact(path));
        }
        for (name, value) in variables {
            match read_env_variable(&name, &sections) {
                EnvVariable::Override(key) => {
                    figment = figment.merge(EnvOverride {
                        variable: name.trim().to_owned(),
                        keep_string: string_keys.contains(&key),
                        key,
                        value,
                    });
                }
                EnvVariable::Misnamed(problem) => problems.push(ConfigProblem(problem)),
                EnvVariable::Ignored => {}
            }
        }
        let config = match figment.extract::<Config>() {
            Ok(config) => Some(config),
            Err(error) => {
                for error in error {
                    problems.push(ConfigProblem(describe_figment_error(&error)));
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

    /// Returns settings that work but deserve a second look, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Ok(url) = reqwest::Url::parse(&self.discord.rest_base_url) {
            if url.scheme() == "http" && !is_loopback_host(&url) {
                warnings.push(format!(
                    "discord.rest_base_url sends the bot token over plain http to {}; use https \
                     unless that proxy is on a private network",
                    url.host_str().unwrap_or("another host")
                ));
            }
        }
        warnings
    }

    /// Checks the relations between settings that types alone cannot express.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |text: String| problems.push(ConfigProblem(text));

        if let Err(text) = check_url(
            "trackly.base_url",
            &self.trackly.base_url,
            "https://app.tracklysms.com/api/v2",
            false,
        ) {
            problem(text);
        }
        if !self.discord.rest_base_url.is_empty() {
            match check_url(
                "discord.rest_base_url",
                &self.discord.rest_base_url,
                "http://127.0.0.1:8080",
                true,
            ) {
                Err(text) => problem(text),
                Ok(url) if url.path() != "/" || url.query().is_some() => problem(format!(
                    "discord.rest_base_url {:?} must be a bare origin such as http://127.0.0.1:8080, without a path",
                    self.discord.rest_base_url
                )),
                Ok(_) => {}
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
        self.support.validate(&mut problem);
        self.alerts.validate(&mut problem);
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

fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Parses `value` of the URL setting `setting`, accepting https anywhere and plain http to this
/// machine, because requests carry API keys or the bot token in a header. With `any_http`,
/// plain http to other hosts passes too, for a proxy on a private network; [`Config::warnings`]
/// then reports it.
fn check_url(
    setting: &str,
    value: &str,
    example: &str,
    any_http: bool,
) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|error| {
        format!("{setting} {value:?} is not a valid URL ({error}); use e.g. {example}")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{setting} contains a user name or password, which would be logged and sent with \
             every request; remove it (the proxy or server must not need it in the URL)"
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if any_http || is_loopback_host(&url) => Ok(url),
        "http" => Err(format!(
            "{setting} {value:?} must use https; plain http is accepted only for 127.0.0.1, ::1 or localhost"
        )),
        scheme => Err(format!(
            "{setting} {value:?} uses the scheme {scheme}, but only https (or http for 127.0.0.1, ::1 or localhost) is supported"
        )),
    }
}

/// Returns the names of the top-level sections, such as `database` and `trackly`.
fn config_sections() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Returns the dotted keys of the settings that are strings, such as `database.path`.
fn string_setting_keys() -> Vec<String> {
    let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(Config::default()) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for (section, settings) in &sections {
        let serde_json::Value::Object(settings) = settings else {
            continue;
        };
        for (name, value) in settings {
            if value.is_string() {
                keys.push(format!("{section}.{name}"));
            }
        }
    }
    keys
}

/// Source of the value that a figment error is about.
enum ValueOrigin<'a> {
    File(&'a Path),
    Environment(&'a str),
    Unknown,
}

/// Rewrites a figment error as one line that names the setting (without figment's `default.`
/// profile prefix) and the file or environment variable that set it, and states what is wrong
/// and what to do. A value from the environment is never quoted, because it could be a secret.
fn describe_figment_error(error: &figment::Error) -> String {
    let origin = match error
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.source.as_ref())
    {
        Some(Source::File(path)) => ValueOrigin::File(path),
        Some(Source::Custom(variable)) => ValueOrigin::Environment(variable),
        _ => ValueOrigin::Unknown,
    };
    let key = error.path.join(".");
    let subject = match &origin {
        ValueOrigin::File(path) if key.is_empty() => path.display().to_string(),
        ValueOrigin::File(path) => format!("`{key}` in {}", path.display()),
        ValueOrigin::Environment(variable) => format!("environment variable {variable} (`{key}`)"),
        ValueOrigin::Unknown if key.is_empty() => "the configuration".to_owned(),
        ValueOrigin::Unknown => format!("`{key}`"),
    };
    let fix = match origin {
        ValueOrigin::Environment(_) => "fix or unset the variable",
        _ => "fix the value",
    };
    let show_value = !matches!(origin, ValueOrigin::Environment(_));

    match &error.kind {
        Kind::UnknownField(_, expected) => {
            let (what, remedy) = match (&origin, error.path.len()) {
                (_, 0 | 1) => ("section", "fix the name or remove it"),
                (ValueOrigin::Environment(_), _) => {
                    ("setting", "fix the name or unset the variable")
                }
                _ => ("setting", "fix the name or remove it"),
            };
            format!(
                "{subject} is not a known {what}; {remedy} (known: {})",
                expected.join(", ")
            )
        }
        Kind::UnknownVariant(found, expected) if show_value => format!(
            "{subject} is {found:?}, which is not one of {}; {fix}",
            quoted_list(expected)
        ),
        Kind::UnknownVariant(_, expected) => {
            format!("{subject} must be one of {}; {fix}", quoted_list(expected))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            match plain_actual(actual, show_value) {
                Some(found) => format!(
                    "{subject} must be {}, but it is {found}; {fix}",
                    plain_expected(expected)
                ),
                None => format!("{subject} must be {}; {fix}", plain_expected(expected)),
            }
        }
        Kind::Message(message) => match origin {
            ValueOrigin::File(path) => describe_file_message(path, message),
            _ => format!("{subject}: {}", first_line(message)),
        },
        other => format!("{subject}: {other}; {fix}"),
    }
}

fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|value| format!("\"{value}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

/// Condenses a multi-line TOML parse error to one line with its position and reason. The
/// quoted source line is left out, because it may contain a value that should not be echoed.
fn describe_file_message(path: &Path, message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    match lines.first() {
        Some(first) if first.starts_with("TOML parse error") => {
            let position = first.trim_start_matches("TOML parse error").trim();
            let reason = lines.last().copied().unwrap_or_default();
            format!(
                "{} is not valid TOML {position}: {reason}; fix the syntax",
                path.display()
            )
        }
        _ => format!("cannot read {}: {}", path.display(), lines.join(" ")),
    }
}

/// Turns serde's name for the expected type into words.
fn plain_expected(expected: &str) -> String {
    let unsigned_max = match expected {
        "u8" => Some(u128::from(u8::MAX)),
        "u16" => Some(u128::from(u16::MAX)),
        "u32" => Some(u128::from(u32::MAX)),
        "u64" => Some(u128::from(u64::MAX)),
        "usize" => Some(usize::MAX as u128),
        _ => None,
    };
    if let Some(max) = unsigned_max {
        return format!("a whole number from 0 to {max}");
    }
    match expected {
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "path string" => "a path".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other => other.to_owned(),
    }
}

/// Describes the value found: the number itself for a number, the kind of value with the value
/// for other scalars. Without `show_value`, only the kind of a non-number is described.
fn plain_actual(actual: &Actual, show_value: bool) -> Option<String> {
    let described = match actual {
        Actual::Unsigned(value) if show_value => value.to_string(),
        Actual::Signed(value) if show_value => value.to_string(),
        Actual::Float(value) if show_value => value.to_string(),
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => return None,
        Actual::Bool(value) if show_value => format!("the boolean {value}"),
        Actual::Char(value) if show_value => format!("the string {:?}", value.to_string()),
        Actual::Str(value) if show_value => format!("the string {value:?}"),
        Actual::Bool(_) => "a boolean".to_owned(),
        Actual::Char(_) | Actual::Str(_) => "a string".to_owned(),
        Actual::Map => "a table".to_owned(),
        Actual::Seq => "an array".to_owned(),
        other => other.to_string(),
    };
    Some(described)
}

/// Rejects a config file that carries a secret, because secrets are read only from the
/// environment and a file is easy to commit by mistake.
fn reject_secrets_in_file(path: &Path) -> Result<(), ConfigProblem> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| ConfigProblem(format!("cannot read {}: {error}", path.display())))?;
    let lowered = text.to_ascii_lowercase();
    for line in lowered.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        // Dotted keys such as `discord.token` name the same setting.
        let key = key
            .rsplit('.')
            .next()
            .unwrap_or(key)
            .trim()
            .trim_matches('"');
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
        match &token {
            None => problems.push(ConfigProblem(format!(
                "{TOKEN_VAR} is not set; export the bot token from the Discord developer portal (Bot tab, Reset Token) as {TOKEN_VAR}"
            ))),
            Some(token) if token.is_empty() => problems.push(ConfigProblem(format!(
                "{TOKEN_VAR} is empty; set it to the bot token from the Discord developer portal (Bot tab, Reset Token)"
            ))),
            Some(_) => {}
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
    fn validate_trackly_needs_https_off_loopback() {
        let mut config = Config::default();
        for (url, accepted) in [
            ("https://api.tracklysms.com/api/v2", true),
            ("http://127.0.0.1:8081/api/v2", true),
            ("http://localhost:8081/api/v2", true),
            ("http://[::1]:8081/api/v2", true),
            ("http://app.tracklysms.com/api/v2", false),
            ("http://10.0.0.5/api/v2", false),
        ] {
            config.trackly.base_url = url.to_owned();
            assert_eq!(config.validate().is_empty(), accepted, "{url}");
        }
    }

    #[test]
    fn load_ignores_unrelated_prefixed_variables() {
        // Only variables with a section and `__` are read; TRACKLY_BOT_PORT-like names are not.
        let sections = config_sections();
        assert!(sections.contains(&"database".to_owned()));
        assert!(sections.contains(&"trackly".to_owned()));
        assert!(!sections.contains(&"port".to_owned()));
    }

    #[test]
    fn load_required_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        assert!(Config::load(&path).is_ok());
        let errors = Config::load_file(&path, true).unwrap_err();
        assert!(errors.to_string().contains("does not exist"), "{errors}");
    }

    #[test]
    fn load_rejects_dotted_secret_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "discord.token = MTIzNDU2Nzg5.unquoted\n").unwrap();
        let errors = Config::load(&path).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert!(!errors.to_string().contains("MTIzNDU2Nzg5"), "{errors}");
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
    fn support_defaults_and_partial_ids() {
        let config = Config::default();
        assert!(config.validate().is_empty());
        assert_eq!(config.support.number_prefix, "T-");
        assert_eq!(config.support.max_open_per_user, 3);
        assert!(config.support.channels().is_none());

        let mut partial = Config::default();
        partial.support.channel_id = Some(10);
        partial.support.staff_role_id = Some(11);
        let problems = partial.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].0.contains("support.staff_channel_id"),
            "{problems:?}"
        );
        assert!(
            problems[0].0.contains("support.staff_log_channel_id"),
            "{problems:?}"
        );

        partial.support.staff_channel_id = Some(12);
        partial.support.staff_log_channel_id = Some(13);
        assert!(partial.validate().is_empty());
        assert_eq!(partial.support.channels().unwrap().staff_log_channel_id, 13);
    }

    #[test]
    fn support_rejects_bad_values() {
        let mut config = Config::default();
        config.support.number_prefix = "TICKET NUMBER".into();
        config.support.number_start = 0;
        config.support.max_open_per_user = 0;
        let problems = config.validate();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.0.contains("number_prefix")));
        assert!(problems.iter().any(|p| p.0.contains("number_start")));
        assert!(problems.iter().any(|p| p.0.contains("max_open_per_user")));
    }

    #[test]
    fn alerts_digest_limits() {
        let mut config = Config::default();
        config.alerts.digest_threshold = 0;
        config.alerts.digest_window_secs = u64::MAX;
        let problems = config.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].0.contains("digest_threshold"), "{problems:?}");
        assert!(
            problems[1].0.contains("between 1 and 86400"),
            "{problems:?}"
        );
        config.alerts.digest_threshold = 1;
        config.alerts.digest_window_secs = 86_400;
        assert!(config.validate().is_empty());
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

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    /// Loads `text` as the configuration file with the environment `vars` and returns the
    /// problems, or panics when there are none.
    fn problems_for(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.toml");
        std::fs::write(&path, text).unwrap();
        match Config::load_with_env(&path, true, env(vars)) {
            Ok(_) => panic!("{text:?} with {vars:?} was accepted"),
            Err(errors) => errors.0.into_iter().map(|problem| problem.0).collect(),
        }
    }

    #[test]
    fn file_errors_name_key_without_profile() {
        let problems = problems_for("[guild]\nidd = 42\n", &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = &problems[0];
        assert!(problem.starts_with("`guild.idd` in "), "{problem}");
        assert!(
            problem.contains("typo.toml is not a known setting"),
            "{problem}"
        );
        assert!(
            problem.contains("id, customer_category_id, linked_role_id"),
            "{problem}"
        );
        assert!(!problem.contains("default."), "{problem}");
        assert!(!problem.contains("``"), "{problem}");
        assert!(!problem.contains('\n'), "{problem}");
    }

    #[test]
    fn file_errors_say_expected_type() {
        // Deserialization stops at the first error, so each case has one.
        for (text, expected) in [
            ("[alerts]\nenabled = \"yes\"\n", "`alerts.enabled` in"),
            (
                "[alerts]\nenabled = \"yes\"\n",
                "must be a boolean, but it is the string \"yes\"",
            ),
            (
                "[guild]\nid = -5\n",
                "must be a whole number from 0 to 18446744073709551615, but it is -5",
            ),
            (
                "[discord]\ncommand_scope = \"both\"\n",
                "is \"both\", which is not one of \"global\", \"guild\"",
            ),
            ("[gild]\nid = 1\n", "`gild` in"),
            ("[gild]\nid = 1\n", "is not a known section"),
        ] {
            let problems = problems_for(text, &[]);
            assert_eq!(problems.len(), 1, "{text:?}: {problems:?}");
            assert!(problems[0].contains(expected), "{text:?}: {problems:?}");
        }
    }

    #[test]
    fn file_syntax_error_is_one_line() {
        let problems = problems_for("[guild\nid = \"MTIzNDU2Nzg5\"\n", &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = &problems[0];
        assert!(problem.contains("is not valid TOML at line 1"), "{problem}");
        assert!(!problem.contains('\n'), "{problem}");
        assert!(!problem.contains("MTIzNDU2Nzg5"), "{problem}");
    }

    #[test]
    fn env_errors_name_variable_not_value() {
        for (name, value, expected) in [
            (
                "TRACKLY_BOT_GUILD__ID",
                "secret-looking-value",
                "environment variable TRACKLY_BOT_GUILD__ID (`guild.id`) must be a whole number from 0 to 18446744073709551615, but it is a string; fix or unset the variable",
            ),
            (
                "TRACKLY_BOT_DATABASE__MAX_CONNECTIONS",
                "99999999999",
                "environment variable TRACKLY_BOT_DATABASE__MAX_CONNECTIONS (`database.max_connections`) must be a whole number from 0 to 4294967295; fix or unset the variable",
            ),
            (
                "TRACKLY_BOT_GUILD__IDD",
                "5",
                "environment variable TRACKLY_BOT_GUILD__IDD (`guild.idd`) is not a known setting; fix the name or unset the variable (known: id, customer_category_id, linked_role_id)",
            ),
        ] {
            let problems = problems_for("", &[(name, value)]);
            assert_eq!(problems, vec![expected.to_owned()], "{name}");
        }
    }

    #[test]
    fn env_overrides_file_and_keeps_strings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[guild]\nid = 1\n").unwrap();
        let config = Config::load_with_env(
            &path,
            true,
            env(&[
                ("TRACKLY_BOT_GUILD__ID", "42"),
                ("TRACKLY_BOT_SUPPORT__NUMBER_PREFIX", "2024"),
                ("TRACKLY_BOT_DATABASE__PATH", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(config.guild.id, Some(42));
        assert_eq!(config.support.number_prefix, "2024");
        assert_eq!(config.database.path, PathBuf::from("5"));
    }

    #[test]
    fn env_misnamed_variables_are_problems() {
        let problems = problems_for(
            "",
            &[
                ("TRACKLY_BOT_GILD__ID", "hidden-value-1"),
                ("TRACKLY_BOT_GUILD_ID", "hidden-value-2"),
                ("TRACKLY_BOT_PORT", "tcp://10.0.0.1:80"),
                ("TRACKLY_BOT_SERVICE_HOST", "10.0.0.1"),
                ("TRACKLY_BOT_ENCRYPTION_KEY_ID", "k2"),
            ],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        let joined = problems.join("\n");
        assert!(
            joined.contains("TRACKLY_BOT_GILD__ID names the unknown section `gild`"),
            "{joined}"
        );
        assert!(
            joined.contains("rename it to TRACKLY_BOT_GUILD__ID"),
            "{joined}"
        );
        assert!(!joined.contains("hidden-value"), "{joined}");
    }

    #[test]
    fn validate_url_schemes() {
        // (URL, accepted for Discord, accepted for Trackly, warned about for Discord)
        for (url, discord, trackly, warned) in [
            ("https://discord-proxy.internal", true, true, false),
            ("http://127.0.0.1:8080", true, true, false),
            ("http://[::1]:8080", true, true, false),
            ("http://localhost:8080", true, true, false),
            ("http://discord-proxy.internal", true, false, true),
            ("ftp://127.0.0.1", false, false, false),
            ("ws://127.0.0.1:8080", false, false, false),
        ] {
            let mut config = Config::default();
            config.discord.rest_base_url = url.to_owned();
            let problems = config.validate();
            assert_eq!(problems.is_empty(), discord, "rest {url}: {problems:?}");
            let warnings = config.warnings();
            assert_eq!(!warnings.is_empty(), warned, "rest {url}: {warnings:?}");

            let mut config = Config::default();
            config.trackly.base_url = format!("{url}/api/v2");
            let problems = config.validate();
            assert_eq!(problems.is_empty(), trackly, "trackly {url}: {problems:?}");
        }
        let mut config = Config::default();
        config.trackly.base_url = "ftp://127.0.0.1/api".to_owned();
        let problems = config.validate();
        assert!(problems[0].0.contains("scheme ftp"), "{problems:?}");

        let mut config = Config::default();
        config.discord.rest_base_url = "http://user:s3cret@proxy.internal:8080".to_owned();
        config.trackly.base_url = "https://user@app.tracklysms.com/api/v2".to_owned();
        let problems = config.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .all(|p| p.0.contains("user name or password") && !p.0.contains("s3cret")),
            "{problems:?}"
        );
    }

    #[test]
    fn errors_count_problems_in_words() {
        let one = ConfigErrors(vec![ConfigProblem("a".to_owned())]);
        assert!(
            one.to_string()
                .starts_with("the configuration has 1 problem:\n"),
            "{one}"
        );
        let two = ConfigErrors(vec![
            ConfigProblem("a".to_owned()),
            ConfigProblem("b".to_owned()),
        ]);
        assert!(
            two.to_string()
                .starts_with("the configuration has 2 problems:\n"),
            "{two}"
        );
    }

    #[test]
    fn example_file_sets_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
        let config = Config::load_with_env(&path, true, Vec::new()).unwrap();
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            serde_json::to_value(Config::default()).unwrap()
        );

        // Every setting appears, set or commented out, under its section.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut listed = Vec::new();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim_start_matches('#').trim();
            if let Some(name) = line
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            {
                section = name.to_owned();
            } else if let Some((key, _)) = line.split_once(" = ") {
                listed.push(format!("{section}.{key}"));
            }
        }
        let serde_json::Value::Object(sections) = serde_json::to_value(Config::default()).unwrap()
        else {
            panic!("the configuration does not serialize to a table");
        };
        for (section, settings) in sections {
            let serde_json::Value::Object(settings) = settings else {
                panic!("{section} does not serialize to a table");
            };
            for key in settings.keys() {
                let name = format!("{section}.{key}");
                assert!(listed.contains(&name), "config.toml.example lacks {name}");
            }
        }
    }
}
