//! Configuration of one fake Discord instance.

use std::path::PathBuf;

/// Environment variable that points at Discord's OpenAPI description when
/// [`FakeDiscordConfig::openapi_spec`] is `None`.
pub const OPENAPI_SPEC_ENV: &str = "DISCORD_OPENAPI_SPEC";

/// Identity of the fake application, bot user and guild.
///
/// The defaults use distinct snowflakes for the application and the bot user, so a bot that mixes
/// the two up fails against the fake.
#[derive(Clone, Debug)]
pub struct FakeDiscordConfig {
    pub application_id: u64,
    pub bot_user_id: u64,
    pub bot_username: String,
    pub guild_id: u64,
    /// Id of the guild's @everyone role, which Discord sets equal to the guild id.
    pub everyone_role_id: u64,
    /// Path of Discord's OpenAPI description. `None` tries the `DISCORD_OPENAPI_SPEC` environment
    /// variable, then `shared/reference/discord-openapi.json` beside the repository, then the
    /// copy in this crate's `openapi` folder.
    pub openapi_spec: Option<PathBuf>,
}

impl Default for FakeDiscordConfig {
    fn default() -> Self {
        let guild_id = 1_150_000_000_000_000_100;
        FakeDiscordConfig {
            application_id: 1_150_000_000_000_000_001,
            bot_user_id: 1_150_000_000_000_000_002,
            bot_username: "Trackly".to_string(),
            guild_id,
            everyone_role_id: guild_id,
            openapi_spec: None,
        }
    }
}

impl FakeDiscordConfig {
    /// Id of the guild's "Linked" role (`guild_id + 1`).
    pub fn linked_role_id(&self) -> u64 {
        self.guild_id + 1
    }

    /// Id of the guild's "Staff" role (`guild_id + 2`).
    pub fn staff_role_id(&self) -> u64 {
        self.guild_id + 2
    }

    /// Id of the guild's text channel "general" (`guild_id + 10`).
    pub fn general_channel_id(&self) -> u64 {
        self.guild_id + 10
    }

    /// Resolves where the OpenAPI description should be: the configured path, then the
    /// `DISCORD_OPENAPI_SPEC` environment variable, then the `shared` folder beside the
    /// repository, then the copy kept in this crate.
    pub(crate) fn resolve_openapi_spec(&self) -> PathBuf {
        if let Some(path) = &self.openapi_spec {
            return path.clone();
        }
        if let Some(path) = std::env::var_os(OPENAPI_SPEC_ENV).filter(|value| !value.is_empty()) {
            return PathBuf::from(path);
        }

        // This crate sits at <repository>/crates/fake-discord, and the repository may sit beside
        // a `shared` folder with a newer description.
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let beside_repository = crate_dir.join("../../../shared/reference/discord-openapi.json");
        if beside_repository.exists() {
            return beside_repository;
        }
        crate_dir.join("openapi/discord-openapi.json")
    }
}
