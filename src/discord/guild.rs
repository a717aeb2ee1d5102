//! Access to each account's private channel and the linked role, granted on link and revoked
//! on unlink.

use std::sync::Arc;

use chrono::Utc;
use poise::serenity_prelude as serenity;
use serenity::{
    ChannelId, ChannelType, GuildId, PermissionOverwrite, PermissionOverwriteType, Permissions,
    RoleId, UserId,
};

use super::errors::discord_error_code;
use crate::config::GuildConfig;
use crate::storage::{AccountChannel, Db};

const UNKNOWN_CHANNEL: isize = 10003;
const MISSING_ACCESS: isize = 50001;
const MISSING_PERMISSIONS: isize = 50013;
const UNKNOWN_MEMBER: isize = 10007;

/// Outcome of a grant or revoke for each part. `None` means the part is not configured.
#[derive(Debug, Default)]
pub struct AccessReport {
    pub channel: Option<Result<u64, String>>,
    pub role: Option<Result<(), String>>,
    /// Removal of access to the channel of the account a relinking user left.
    pub previous_channel: Option<Result<u64, String>>,
}

impl AccessReport {
    /// Returns one line for each part that was configured, for the user's reply.
    pub fn lines(&self, granting: bool) -> Vec<String> {
        let mut lines = Vec::new();
        match (&self.channel, granting) {
            (Some(Ok(channel_id)), true) => {
                lines.push(format!("Your account channel: <#{channel_id}>."))
            }
            (Some(Ok(_)), false) => {
                lines.push("Your access to the account channel was removed.".to_owned())
            }
            (Some(Err(reason)), true) => lines.push(format!(
                "I could not give you access to the account channel: {reason}."
            )),
            (Some(Err(reason)), false) => lines.push(format!(
                "I could not remove your access to the account channel: {reason}."
            )),
            (None, _) => {}
        }
        match (&self.role, granting) {
            (Some(Ok(())), true) => lines.push("You now have the linked-customer role.".to_owned()),
            (Some(Ok(())), false) => lines.push("The linked-customer role was removed.".to_owned()),
            (Some(Err(reason)), true) => lines.push(format!(
                "I could not give you the linked-customer role: {reason}."
            )),
            (Some(Err(reason)), false) => lines.push(format!(
                "I could not remove the linked-customer role: {reason}."
            )),
            (None, _) => {}
        }
        if let Some(Err(reason)) = &self.previous_channel {
            lines.push(format!(
                "I could not remove your access to your previous account's channel: {reason}."
            ));
        }
        let failed = [&self.channel, &self.previous_channel]
            .iter()
            .any(|part| matches!(part, Some(Err(_))))
            || matches!(self.role, Some(Err(_)));
        if failed && granting {
            lines.push("Server staff can fix this; the link itself is saved.".to_owned());
        } else if failed {
            lines.push(
                "The link and the stored key are gone; server staff can remove the remaining access."
                    .to_owned(),
            );
        }
        lines
    }
}

pub struct GuildAccess {
    http: Arc<serenity::Http>,
    bot_user_id: UserId,
    config: GuildConfig,
    /// Serializes channel creation so that two users of one account linking at once cannot
    /// create two channels.
    channel_lock: tokio::sync::Mutex<()>,
}

fn failure_reason(error: &serenity::Error) -> String {
    match discord_error_code(error) {
        Some(MISSING_PERMISSIONS) => "the bot is missing a permission (Manage Channels or Manage Roles, or its role is below the linked role)".to_owned(),
        Some(MISSING_ACCESS) => "the bot cannot see the customer category".to_owned(),
        Some(UNKNOWN_CHANNEL) => "the channel or category no longer exists".to_owned(),
        Some(UNKNOWN_MEMBER) => {
            "you are not a member of the Trackly server; join it and run the command again".to_owned()
        }
        _ => "Discord returned an error".to_owned(),
    }
}

/// Returns a channel name for an account: lower-case letters, digits and dashes from its name,
/// then the account id, which keeps names unique. Discord allows 1 to 100 characters.
pub fn account_channel_name(account_name: &str, account_id: &str) -> String {
    let mut slug = String::new();
    for c in account_name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let id: String = account_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .flat_map(char::to_lowercase)
        .take(40)
        .collect();
    let slug: String = slug
        .trim_end_matches('-')
        .chars()
        .take(100 - id.len() - 1)
        .collect();
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        id
    } else {
        format!("{slug}-{id}")
    }
}

impl GuildAccess {
    pub fn new(http: Arc<serenity::Http>, bot_user_id: u64, config: GuildConfig) -> Self {
        Self {
            http,
            bot_user_id: UserId::new(bot_user_id),
            config,
            channel_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn http(&self) -> &Arc<serenity::Http> {
        &self.http
    }

    /// Gives `user_id` the account channel (creating it when missing) and the linked role,
    /// after removing access to `previous_account_id`'s channel when the user switched accounts.
    pub async fn grant(
        &self,
        db: &Db,
        user_id: u64,
        account_id: &str,
        account_name: &str,
        previous_account_id: Option<&str>,
    ) -> AccessReport {
        let mut report = AccessReport::default();
        let Some(guild_id) = self.config.id else {
            return report;
        };
        if let Some(previous) = previous_account_id.filter(|previous| *previous != account_id) {
            // A failure is logged inside and reported, but must not block the new grant.
            report.previous_channel =
                remove_channel_access(&self.http, db, user_id, previous).await;
        }
        if let Some(category_id) = self.config.customer_category_id {
            report.channel = Some(
                self.grant_channel(db, guild_id, category_id, user_id, account_id, account_name)
                    .await,
            );
        }
        if let Some(role_id) = self.config.linked_role_id {
            let result = self
                .http
                .add_member_role(
                    GuildId::new(guild_id),
                    UserId::new(user_id),
                    RoleId::new(role_id),
                    Some("Linked a Trackly account"),
                )
                .await;
            report.role = Some(result.map_err(|error| {
                tracing::error!(user_id, guild_id, role_id, %error, "failed to add the linked role");
                failure_reason(&error)
            }));
        }
        report
    }

    /// Removes the user's access to the account channel and the linked role.
    pub async fn revoke(&self, db: &Db, user_id: u64, account_id: &str) -> AccessReport {
        revoke_access(&self.http, db, &self.config, user_id, account_id).await
    }

    async fn grant_channel(
        &self,
        db: &Db,
        guild_id: u64,
        category_id: u64,
        user_id: u64,
        account_id: &str,
        account_name: &str,
    ) -> Result<u64, String> {
        let _guard = self.channel_lock.lock().await;
        let existing = db.account_channel(account_id).await.map_err(|error| {
            tracing::error!(account_id, %error, "failed to read the account channel");
            "the bot's database failed".to_owned()
        })?;

        let member_overwrite = PermissionOverwrite {
            allow: Permissions::VIEW_CHANNEL
                | Permissions::READ_MESSAGE_HISTORY
                | Permissions::SEND_MESSAGES,
            deny: Permissions::empty(),
            kind: PermissionOverwriteType::Member(UserId::new(user_id)),
        };
        if let Some(channel) = existing {
            match ChannelId::new(channel.channel_id)
                .create_permission(&*self.http, member_overwrite.clone())
                .await
            {
                Ok(()) => return Ok(channel.channel_id),
                // Someone deleted the channel; make a new one below.
                Err(error) if discord_error_code(&error) == Some(UNKNOWN_CHANNEL) => {
                    tracing::warn!(
                        account_id,
                        channel_id = channel.channel_id,
                        "account channel is gone; creating it again"
                    );
                }
                Err(error) => {
                    tracing::error!(account_id, user_id, channel_id = channel.channel_id, %error, "failed to grant channel access");
                    return Err(failure_reason(&error));
                }
            }
        }

        let name = account_channel_name(account_name, account_id);
        let hidden_from_everyone = PermissionOverwrite {
            allow: Permissions::empty(),
            deny: Permissions::VIEW_CHANNEL,
            // The @everyone role has the guild's id.
            kind: PermissionOverwriteType::Role(RoleId::new(guild_id)),
        };
        let bot = PermissionOverwrite {
            allow: Permissions::VIEW_CHANNEL
                | Permissions::SEND_MESSAGES
                | Permissions::EMBED_LINKS
                | Permissions::READ_MESSAGE_HISTORY,
            deny: Permissions::empty(),
            kind: PermissionOverwriteType::Member(self.bot_user_id),
        };
        // Every user linked to the account gets access, which matters when a deleted channel
        // is made again for the next user who links.
        let mut overwrites = vec![hidden_from_everyone, bot, member_overwrite.clone()];
        match db.account_user_ids(account_id).await {
            Ok(user_ids) => {
                for other in user_ids.into_iter().filter(|other| *other != user_id) {
                    overwrites.push(PermissionOverwrite {
                        kind: PermissionOverwriteType::Member(UserId::new(other)),
                        ..member_overwrite.clone()
                    });
                }
            }
            Err(error) => {
                tracing::error!(account_id, %error, "failed to list the account's linked users");
            }
        }
        let builder = serenity::CreateChannel::new(name)
            .kind(ChannelType::Text)
            .category(ChannelId::new(category_id))
            .topic(format!(
                "Private channel of the Trackly account {account_name} ({account_id})"
            ))
            .permissions(overwrites);
        let channel = GuildId::new(guild_id)
            .create_channel(&*self.http, builder)
            .await
            .map_err(|error| {
                tracing::error!(account_id, guild_id, category_id, %error, "failed to create the account channel");
                failure_reason(&error)
            })?;
        let saved = db
            .save_account_channel(
                &AccountChannel {
                    account_id: account_id.to_owned(),
                    guild_id,
                    channel_id: channel.id.get(),
                },
                Utc::now(),
            )
            .await;
        if let Err(error) = saved {
            // The channel exists but is not recorded; the next link creates another one.
            tracing::error!(account_id, channel_id = channel.id.get(), %error, "failed to record the account channel");
        }
        tracing::info!(
            account_id,
            channel_id = channel.id.get(),
            "account channel created"
        );
        Ok(channel.id.get())
    }
}

/// Removes `user_id`'s access to the account channel and the linked role. Needs no bot user id,
/// so background tasks can call it as well as commands.
pub async fn revoke_access(
    http: &serenity::Http,
    db: &Db,
    config: &GuildConfig,
    user_id: u64,
    account_id: &str,
) -> AccessReport {
    let mut report = AccessReport::default();
    let Some(guild_id) = config.id else {
        return report;
    };
    if config.customer_category_id.is_some() {
        report.channel = remove_channel_access(http, db, user_id, account_id).await;
    }
    if let Some(role_id) = config.linked_role_id {
        let result = http
            .remove_member_role(
                GuildId::new(guild_id),
                UserId::new(user_id),
                RoleId::new(role_id),
                Some("Unlinked a Trackly account"),
            )
            .await;
        report.role = Some(result.map_err(|error| {
            tracing::error!(user_id, guild_id, role_id, %error, "failed to remove the linked role");
            failure_reason(&error)
        }));
    }
    report
}

async fn remove_channel_access(
    http: &serenity::Http,
    db: &Db,
    user_id: u64,
    account_id: &str,
) -> Option<Result<u64, String>> {
    let channel = match db.account_channel(account_id).await {
        Ok(Some(channel)) => channel,
        Ok(None) => return None,
        Err(error) => {
            tracing::error!(account_id, %error, "failed to read the account channel");
            return Some(Err("the bot's database failed".to_owned()));
        }
    };
    let result = ChannelId::new(channel.channel_id)
        .delete_permission(http, PermissionOverwriteType::Member(UserId::new(user_id)))
        .await;
    match result {
        Ok(()) => Some(Ok(channel.channel_id)),
        // A deleted channel grants nothing any more, which is the goal.
        Err(error) if discord_error_code(&error) == Some(UNKNOWN_CHANNEL) => {
            if let Err(error) = db.delete_account_channel(account_id).await {
                tracing::error!(account_id, %error, "failed to forget a deleted account channel");
            }
            Some(Ok(channel.channel_id))
        }
        Err(error) => {
            tracing::error!(account_id, user_id, channel_id = channel.channel_id, %error, "failed to remove channel access");
            Some(Err(failure_reason(&error)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_name_is_slug_and_id() {
        assert_eq!(
            account_channel_name("Acme Promotions", "acc_8f2k1q"),
            "acme-promotions-acc_8f2k1q"
        );
        assert_eq!(
            account_channel_name("  Ünïcode & Co. ", "acc_1"),
            "n-code-co-acc_1"
        );
        assert_eq!(account_channel_name("!!!", "acc_1"), "acc_1");
    }

    #[test]
    fn channel_name_fits_discord_limit() {
        let name = account_channel_name(&"x".repeat(300), "acc_8f2k1q");
        assert!(name.len() <= 100, "{} characters", name.len());
        assert!(name.ends_with("-acc_8f2k1q"));
    }

    #[test]
    fn report_lines_explain_failures() {
        let report = AccessReport {
            channel: Some(Err("the bot cannot see the customer category".into())),
            role: Some(Ok(())),
            previous_channel: None,
        };
        let lines = report.lines(true);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("could not give you access"));
        assert!(lines[2].contains("link itself is saved"));
        assert!(AccessReport::default().lines(true).is_empty());

        let lines = report.lines(false);
        assert!(
            lines
                .last()
                .unwrap()
                .contains("link and the stored key are gone"),
            "{lines:?}"
        );
        assert!(!lines
            .iter()
            .any(|line| line.contains("link itself is saved")));

        let relinked = AccessReport {
            previous_channel: Some(Err("Discord returned an error".into())),
            ..AccessReport::default()
        };
        let lines = relinked.lines(true);
        assert!(lines[0].contains("previous account's channel"), "{lines:?}");
    }
}
