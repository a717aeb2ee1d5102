//! End-to-end harness: the real `trackly-bot` binary against the fake Discord and the Trackly
//! simulator, all on 127.0.0.1, each test with its own servers, database and bot process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_discord::{
    FakeDiscord, FakeDiscordConfig, FakeUser, InteractionRecord, ModalSubmit, OptionValue,
    SlashCommand,
};
use tokio::process::{Child, Command};
use trackly_sim::{Seed, SimHandle, Simulator};

/// The bot token given to the bot; tests search the logs for it.
pub const DISCORD_TOKEN: &str = "MTE5ODc2NTQzMjEwOTg3NjU0Mw.FakeTk.trackly-e2e-secret-token-value";
const ENCRYPTION_KEY: &str = "dHJhY2tseS1ib3QtZTJlLWVuY3J5cHRpb24ta2V5ISE="; // 32 bytes

/// Time a command may take from dispatch to its final reply in these tests.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(40);

/// Returns a well-formed API key: `trk_`, `name` padded with zeros to 28 characters, and four
/// digits derived from `name`, so that keys of different names differ in their last four
/// characters (the simulator's fingerprint and the masked form).
pub fn test_key(name: &str) -> String {
    assert!(name.len() <= 28 && name.bytes().all(|b| b.is_ascii_alphanumeric()));
    format!("trk_{name:0<28}{:04}", key_suffix(name))
}

fn key_suffix(name: &str) -> u32 {
    name.bytes()
        .fold(17u32, |hash, byte| (hash * 31 + u32::from(byte)) % 10_000)
}

/// Returns the masked form of `test_key(name)`, as the bot shows it.
pub fn masked_key(name: &str) -> String {
    format!("trk_…{:04}", key_suffix(name))
}

/// Returns the simulator's fingerprint (last four characters) of `test_key(name)`.
pub fn key_fingerprint(name: &str) -> String {
    format!("{:04}", key_suffix(name))
}

pub fn user(id: u64) -> FakeUser {
    FakeUser {
        id,
        username: format!("user{id}"),
        bot: false,
    }
}

/// Account acc_8f2k1q "Acme Promotions" accepts every key named in `acme_keys`; account
/// acc_b3t4 "Beta Bulk SMS" accepts `test_key("Beta")`.
pub fn seed(acme_keys: &[&str]) -> Seed {
    let mut text = String::from(
        r#"
[[accounts]]
id = "acc_8f2k1q"
name = "Acme Promotions"
status = "active"
created_at = "2025-03-15T14:30:00Z"
"#,
    );
    for (index, name) in acme_keys.iter().enumerate() {
        let role = if index == 0 { "owner" } else { "member" };
        text.push_str(&format!(
            "[[accounts.keys]]\nkey = \"{}\"\nrole = \"{role}\"\n",
            test_key(name)
        ));
    }
    text.push_str(
        r#"
[accounts.usage.today]
outbound_messages = 512
inbound_messages = 9
segments = 601
estimated_cost = { amount = "2.70", currency = "USD" }
[accounts.usage.week]
outbound_messages = 4100
inbound_messages = 77
segments = 4870
estimated_cost = { amount = "21.92", currency = "USD" }
[accounts.usage.month]
outbound_messages = 12840
inbound_messages = 311
segments = 15022
estimated_cost = { amount = "67.60", currency = "USD" }
[accounts.usage.all]
outbound_messages = 1048576
inbound_messages = 20480
segments = 1234567
estimated_cost = { amount = "5555.555", currency = "USD" }
[accounts.balance]
unbilled_segments = 4210
estimated_amount = { amount = "18.95", currency = "USD" }
last_billed_at = "2026-11-28T09:12:00Z"
next_charge_at_segments = 10000

[[accounts]]
id = "acc_b3t4"
name = "Beta Bulk SMS"
status = "active"
created_at = "2026-01-02T03:04:05Z"
lists = []
[[accounts.keys]]
key = "{beta_key}"
role = "viewer"
[accounts.usage.today]
outbound_messages = 1
inbound_messages = 0
segments = 1
estimated_cost = { amount = "0.01", currency = "EUR" }
[accounts.usage.week]
outbound_messages = 1
inbound_messages = 0
segments = 1
estimated_cost = { amount = "0.01", currency = "EUR" }
[accounts.usage.month]
outbound_messages = 1
inbound_messages = 0
segments = 1
estimated_cost = { amount = "0.01", currency = "EUR" }
[accounts.usage.all]
outbound_messages = 1
inbound_messages = 0
segments = 1
estimated_cost = { amount = "0.01", currency = "EUR" }
[accounts.balance]
unbilled_segments = 1
estimated_amount = { amount = "0.01", currency = "EUR" }
next_charge_at_segments = 10000
"#,
    );
    // The first account's list table must come after its usage and balance tables in TOML.
    let text = text.replace("{beta_key}", &test_key("Beta"));
    Seed::from_toml_str(&text).expect("test seed parses")
}

#[derive(Clone)]
pub struct Options {
    /// Configure the customer category and linked role.
    pub guild_features: bool,
    pub rust_log: String,
    pub acme_keys: Vec<&'static str>,
    /// Appended to the bot's config.toml, for sections such as `[alerts]` or `[support]`.
    pub extra_config: String,
    /// Serve `/healthz` and `/metrics` on a free port of 127.0.0.1.
    pub health_server: bool,
    /// Wait at start until the bot registered its commands. Off for tests of a bot that
    /// cannot connect.
    pub wait_until_ready: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            guild_features: true,
            rust_log: "info,trackly_bot=trace".to_owned(),
            acme_keys: vec!["AcmeOwner", "AcmeMember"],
            extra_config: String::new(),
            health_server: false,
            wait_until_ready: true,
        }
    }
}

pub struct Harness {
    pub discord: FakeDiscord,
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub options: Options,
    /// The customer category, created in the fake before the bot starts.
    pub category_id: u64,
    /// The fake guild's "Linked" role.
    pub linked_role_id: u64,
    /// The text channel that slash commands are sent from.
    pub channel_id: u64,
    bot: Option<Child>,
    restarts: u32,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Harness {
        Self::start_with_setup(options, |_| String::new()).await
    }

    /// Starts like `start_with`, but first runs `setup` on the fake (to add channels, say)
    /// before the bot starts. The text `setup` returns is appended to the bot's config.toml.
    pub async fn start_with_setup(
        mut options: Options,
        setup: impl FnOnce(&FakeDiscord) -> String,
    ) -> Harness {
        let discord = FakeDiscord::start(FakeDiscordConfig::default())
            .await
            .expect("fake Discord starts");
        let extra = setup(&discord);
        options.extra_config.push('\n');
        options.extra_config.push_str(&extra);
        let sim = Simulator::start(seed(&options.acme_keys), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("temporary directory");
        let category_id = discord.add_channel("customers", 4, None);
        let linked_role_id = discord.config().linked_role_id();
        let channel_id = discord.config().general_channel_id();
        let mut harness = Harness {
            discord,
            sim,
            dir,
            options,
            category_id,
            linked_role_id,
            channel_id,
            bot: None,
            restarts: 0,
        };
        harness.write_config();
        harness.spawn_bot().await;
        harness
    }

    pub fn guild_id(&self) -> u64 {
        self.discord.config().guild_id
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("bot.db")
    }

    pub fn logs(&self) -> String {
        let mut text = String::new();
        for index in 0..=self.restarts {
            let path = self.dir.path().join(format!("bot-{index}.log"));
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        text
    }

    fn write_config(&self) {
        let guild = if self.options.guild_features {
            format!(
                "[guild]\nid = {}\ncustomer_category_id = {}\nlinked_role_id = {}\n",
                self.guild_id(),
                self.category_id,
                self.linked_role_id
            )
        } else {
            format!("[guild]\nid = {}\n", self.guild_id())
        };
        let config = format!(
            r#"[database]
path = "{db}"

[trackly]
base_url = "{trackly}"
connect_timeout_ms = 1000
request_timeout_ms = 5000
retry_budget_ms = 14000
max_retries = 2

[discord]
rest_base_url = "{rest}"
command_scope = "guild"

{guild}
[http]
listen = "{listen}"

{extra}
"#,
            extra = self.options.extra_config,
            listen = if self.options.health_server {
                "127.0.0.1:0"
            } else {
                ""
            },
            db = self.db_path().display(),
            trackly = self.sim.base_url(),
            rest = self.discord.rest_base(),
        );
        std::fs::write(self.dir.path().join("config.toml"), config).expect("config written");
    }

    async fn spawn_bot(&mut self) {
        let log_path = self.dir.path().join(format!("bot-{}.log", self.restarts));
        let log = std::fs::File::create(&log_path).expect("log file");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_trackly-bot"))
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DISCORD_TOKEN", DISCORD_TOKEN)
            .env("TRACKLY_BOT_ENCRYPTION_KEY", ENCRYPTION_KEY)
            .env("RUST_LOG", &self.options.rust_log)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("bot binary starts");
        self.bot = Some(child);
        if !self.options.wait_until_ready {
            return;
        }

        // The bot registers its commands once the gateway session is ready.
        let registered = self
            .discord
            .wait_for_request(Duration::from_secs(30), |request| {
                request.method == "PUT"
                    && request.path.ends_with("/commands")
                    && request.at >= started
            })
            .await;
        if let Err(error) = registered {
            panic!(
                "the bot did not register its commands: {error}\n--- bot log ---\n{}",
                self.logs()
            );
        }
    }

    /// Waits up to `timeout` for the bot to exit by itself and returns its exit status.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.bot.take().expect("the bot is running");
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status.expect("exit status"),
            Err(_) => panic!(
                "the bot did not exit within {timeout:?}\n{}",
                self.tail_logs()
            ),
        }
    }

    /// Waits up to 25 s until the number that `sql` reads from the bot's database satisfies
    /// `done`, and fails with `failure` and the bot's log otherwise.
    pub async fn wait_for_db(&self, failure: &str, sql: &str, done: impl Fn(i64) -> bool) {
        let started = Instant::now();
        loop {
            let value = query_i64(&self.db_path(), sql).await;
            if done(value) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(25),
                "{failure} (last value {value})\n--- bot log ---\n{}",
                self.tail_logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to 20 s until the bot's log contains `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let started = Instant::now();
        while !self.logs().contains(text) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the bot never logged {text:?}\n{}\n--- requests ---\n{}",
                self.tail_logs(),
                self.discord.request_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM to the bot and waits until it exits.
    pub async fn terminate_bot(&mut self) -> std::process::ExitStatus {
        self.signal_bot("TERM").await
    }

    /// Sends the bot the signal `name` (such as `TERM` or `INT`) and waits up to 20 s for it
    /// to exit.
    pub async fn signal_bot(&mut self, name: &str) -> std::process::ExitStatus {
        let mut child = self.bot.take().expect("the bot is running");
        let pid = child.id().expect("the bot has a process id");
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
        match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
            Ok(status) => status.expect("exit status"),
            Err(_) => panic!(
                "the bot did not stop within 20 s of SIG{name}\n{}",
                self.tail_logs()
            ),
        }
    }

    /// Returns the address the health server reported in the log.
    pub fn health_addr(&self) -> String {
        let logs = self.logs();
        let line = logs
            .lines()
            .find(|line| line.contains("health server listening"))
            .unwrap_or_else(|| panic!("no health server in the log:\n{}", self.tail_logs()));
        let start = line.find("addr=").expect("addr field") + "addr=".len();
        line[start..]
            .split_whitespace()
            .next()
            .expect("address")
            .to_owned()
    }

    /// Kills the bot (SIGKILL) and starts it again on the same database.
    pub async fn restart_bot(&mut self) {
        if let Some(mut child) = self.bot.take() {
            child.kill().await.expect("bot killed");
        }
        self.restarts += 1;
        self.spawn_bot().await;
    }

    pub fn sms(
        &self,
        user_id: u64,
        subcommand: &str,
        options: Vec<(&str, OptionValue)>,
    ) -> SlashCommand {
        SlashCommand {
            user: user(user_id),
            guild_id: Some(self.guild_id()),
            channel_id: self.channel_id,
            name: "sms".to_owned(),
            subcommand: Some(subcommand.to_owned()),
            options: options
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            member_roles: Vec::new(),
        }
    }

    /// Sends `/sms <subcommand>` and returns the interaction once its final reply arrived.
    /// Fails the test when the first response took 3 seconds or more.
    pub async fn run_sms(
        &self,
        user_id: u64,
        subcommand: &str,
        options: Vec<(&str, OptionValue)>,
    ) -> InteractionRecord {
        let command = self.sms(user_id, subcommand, options);
        let reference = self
            .discord
            .send_command(command)
            .await
            .expect("interaction sent");
        self.wait_final(&reference).await
    }

    pub async fn wait_final(&self, reference: &fake_discord::InteractionRef) -> InteractionRecord {
        let record = self
            .discord
            .wait_for_interaction(reference, REPLY_TIMEOUT, has_final_reply)
            .await;
        let record = match record {
            Ok(record) => record,
            Err(error) => panic!(
                "no final reply: {error}\n--- requests ---\n{}\n--- bot log ---\n{}",
                self.discord.request_log(),
                self.tail_logs()
            ),
        };
        let delay = record.first_response_delay().expect("a first response");
        assert!(
            delay < Duration::from_secs(3),
            "first response after {delay:?}, over Discord's 3-second limit"
        );
        record
    }

    /// Sends `/sms link` without an option, checks the modal, submits `key` in it, and returns
    /// the submission's interaction with its final reply.
    pub async fn link_with_modal(&self, user_id: u64, key: &str) -> InteractionRecord {
        let opened = self
            .discord
            .send_command(self.sms(user_id, "link", vec![]))
            .await
            .expect("interaction sent");
        let record = self
            .discord
            .wait_for_interaction(&opened, REPLY_TIMEOUT, |_| true)
            .await
            .expect("modal response");
        assert_eq!(
            record.first_callback_type(),
            Some(9),
            "expected a modal: {:?}",
            record.callbacks
        );
        let modal = record.modal().expect("modal data");
        let custom_id = modal["custom_id"]
            .as_str()
            .expect("modal custom_id")
            .to_owned();
        let field_id = modal["components"][0]["components"][0]["custom_id"]
            .as_str()
            .expect("text input custom_id")
            .to_owned();

        let submitted = self
            .discord
            .send_modal_submit(ModalSubmit {
                user: user(user_id),
                guild_id: Some(self.guild_id()),
                channel_id: self.channel_id,
                custom_id,
                fields: vec![(field_id, key.to_owned())],
            })
            .await
            .expect("modal submission sent");
        self.wait_final(&submitted).await
    }

    pub async fn link(&self, user_id: u64, key: &str) -> InteractionRecord {
        let record = self
            .run_sms(
                user_id,
                "link",
                vec![("api_key", OptionValue::String(key.to_owned()))],
            )
            .await;
        let text = final_text(&record);
        assert!(text.contains("Linked to"), "link failed: {text}");
        record
    }

    pub fn tail_logs(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// Checks what every test must hold at its end: every REST call matched Discord's OpenAPI
    /// description, and no secret reached the bot's log.
    pub async fn finish(mut self) {
        let violations = self.discord.openapi_violations();
        assert!(
            violations.is_empty(),
            "requests not valid against Discord's OpenAPI description:\n{}\n--- requests ---\n{}",
            violations.join("\n"),
            self.discord.request_log()
        );
        let logs = self.logs();
        assert!(
            !logs.contains(DISCORD_TOKEN),
            "the bot token appears in the log"
        );
        if let Some(line) = logs.lines().find(|line| contains_api_key(line)) {
            panic!("an API key appears in the bot's log: {line}");
        }
        if let Some(mut child) = self.bot.take() {
            let _ = child.kill().await;
        }
        self.discord.shutdown().await;
    }
}

pub fn has_final_reply(record: &InteractionRecord) -> bool {
    match record.first_callback_type() {
        // A deferred reply is final once a followup or an edit carries content.
        Some(5) => !record.followups.is_empty() || !record.edits.is_empty(),
        Some(_) => true,
        None => false,
    }
}

/// Returns all reply texts of the interaction joined, for `contains` checks.
pub fn final_text(record: &InteractionRecord) -> String {
    record.texts().join("\n")
}

/// Reads one number from the bot's database with a connection of its own, closed afterwards
/// so that the bot's last connection can remove the WAL file when it exits.
pub async fn query_i64(path: &Path, sql: &str) -> i64 {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(5));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("test opens the bot database");
    let value: Option<i64> = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    pool.close().await;
    value.unwrap_or(0)
}

/// Returns whether `needle` occurs in the file at `path` or its WAL and shared-memory files.
pub fn database_contains(path: &Path, needle: &[u8]) -> bool {
    let mut candidates = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        candidates.push(PathBuf::from(name));
    }
    candidates
        .iter()
        .any(|candidate| match std::fs::read(candidate) {
            Ok(bytes) => bytes.windows(needle.len()).any(|window| window == needle),
            Err(_) => false,
        })
}

/// Returns whether `text` contains `trk_` followed by 32 letters or digits: any well-formed key.
pub fn contains_api_key(text: &str) -> bool {
    text.match_indices("trk_").any(|(position, _)| {
        let body = &text.as_bytes()[position + 4..];
        body.len() >= 32 && body[..32].iter().all(u8::is_ascii_alphanumeric)
    })
}
