//! `/alerts`: per-user alert preferences, mutes, status and a test alert, and the "Mute 1 h"
//! button on alert DMs.

use chrono::{Duration, Utc};
use poise::serenity_prelude as serenity;
use poise::CreateReply;

use super::errors::{not_linked_message, BotError};
use super::{Context, Data};
use crate::alerts::render::parse_mute_button;
use crate::alerts::{
    parse_mute_duration, Event, EventKind, PreferenceChanges, Preferences, Severity, Target,
    TEST_TYPE_NAME,
};
use crate::storage::alerts::PollAccount;
use crate::storage::LinkStatus;

const COLOUR_INFO: u32 = 0x34_98_DB;

/// Real-time alerts by DM: preferences, mute and status
#[poise::command(
    slash_command,
    subcommands("configure", "mute", "unmute", "status", "test"),
    subcommand_required
)]
pub async fn alerts(_ctx: Context<'_>) -> Result<(), BotError> {
    Ok(())
}

#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
enum SeverityChoice {
    #[name = "low"]
    Low,
    #[name = "medium"]
    Medium,
    #[name = "high"]
    High,
    #[name = "critical"]
    Critical,
}

impl From<SeverityChoice> for Severity {
    fn from(choice: SeverityChoice) -> Self {
        match choice {
            SeverityChoice::Low => Severity::Low,
            SeverityChoice::Medium => Severity::Medium,
            SeverityChoice::High => Severity::High,
            SeverityChoice::Critical => Severity::Critical,
        }
    }
}

/// Choose which alerts you get by DM; only the options you give change
#[poise::command(slash_command)]
#[allow(clippy::too_many_arguments)]
async fn configure(
    ctx: Context<'_>,
    #[description = "Delivery failures (default: on)"] delivery_failures: Option<bool>,
    #[description = "Opt-outs (default: on)"] opt_outs: Option<bool>,
    #[description = "Inbound SMS (default: off)"] inbound_sms: Option<bool>,
    #[description = "Billing: payments and usage thresholds (default: on)"] billing: Option<bool>,
    #[description = "Spam complaints (default: on)"] spam_complaints: Option<bool>,
    #[description = "Service error rates and outages (default: on)"] service: Option<bool>,
    #[description = "Skip alerts below this severity (default: low)"] minimum_severity: Option<
        SeverityChoice,
    >,
) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let changes = PreferenceChanges {
        delivery_failures,
        opt_outs,
        inbound_sms,
        billing,
        spam_complaints,
        service,
        minimum_severity: minimum_severity.map(Severity::from),
    };
    let db = ctx.data().links.db();
    let user_id = ctx.author().id.get();
    let preferences = db
        .update_alert_preferences(user_id, &changes, Utc::now())
        .await?
        .ok_or_else(|| BotError::User(not_linked_message()))?;
    let heading = if changes.is_empty() {
        "Nothing changed because no option was given. Your alert preferences:"
    } else {
        "Alert preferences saved:"
    };
    let text = format!("{heading}\n{}", preference_lines(&preferences));
    ctx.send(CreateReply::default().content(text).ephemeral(true))
        .await?;
    Ok(())
}

/// Mute alerts except critical ones for a while, such as 30m, 2h or 1d (at most 30d)
#[poise::command(slash_command)]
async fn mute(
    ctx: Context<'_>,
    #[description = "How long: a number and m, h or d, such as 30m, 2h or 1d (at most 30d)"]
    #[max_length = 20]
    duration: String,
) -> Result<(), BotError> {
    let length =
        parse_mute_duration(&duration).map_err(|error| BotError::User(format!("{error}.")))?;
    ctx.defer_ephemeral().await?;
    let now = Utc::now();
    let until = now + length;
    let user_id = ctx.author().id.get();
    if !ctx
        .data()
        .links
        .db()
        .set_alert_mute(user_id, Some(until), now)
        .await?
    {
        return Err(BotError::User(not_linked_message()));
    }
    tracing::info!(user_id, until = %until, "alerts muted");
    let text = format!(
        "Alerts muted until <t:{0}:f> (<t:{0}:R>). Critical alerts still reach you. End the mute early with `/alerts unmute`.",
        until.timestamp()
    );
    ctx.send(CreateReply::default().content(text).ephemeral(true))
        .await?;
    Ok(())
}

/// End a mute now
#[poise::command(slash_command)]
async fn unmute(ctx: Context<'_>) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let user_id = ctx.author().id.get();
    if !ctx
        .data()
        .links
        .db()
        .set_alert_mute(user_id, None, Utc::now())
        .await?
    {
        return Err(BotError::User(not_linked_message()));
    }
    tracing::info!(user_id, "alerts unmuted");
    ctx.send(
        CreateReply::default()
            .content("Alerts are no longer muted.")
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

/// Show your alert preferences, mute and where your alerts go
#[poise::command(slash_command)]
async fn status(ctx: Context<'_>) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let db = data.links.db();
    let user_id = ctx.author().id.get();
    let link = db
        .link(user_id)
        .await?
        .ok_or_else(|| BotError::User(not_linked_message()))?;
    let preferences = db.alert_preferences(user_id).await?.unwrap_or_default();

    let now = Utc::now();
    let mute = match preferences.muted_until {
        Some(until) if until > now => format!(
            "muted until <t:{0}:f> (<t:{0}:R>); critical alerts still reach you",
            until.timestamp()
        ),
        _ => "not muted".to_owned(),
    };
    let mut targets = vec![if preferences.dm_closed {
        "DM: paused, because Discord did not accept a DM from the bot; allow DMs from server members, then run any command".to_owned()
    } else {
        "DM: yes".to_owned()
    }];
    match db.account_channel(&link.account_id).await? {
        Some(channel) => targets.push(format!(
            "Account channel: <#{}> (alerts of every severity your account's defaults pass)",
            channel.channel_id
        )),
        None => targets.push("Account channel: none".to_owned()),
    }
    if data.config.alerts.all_alerts_channel_id.is_some() {
        targets.push(
            "Staff: critical alerts are also posted to the internal all-alerts channel".to_owned(),
        );
    }
    let poller = if data.alerts.is_running() {
        "running"
    } else {
        "not running"
    };

    let mut description = format!("**{}** (`{}`)", link.account_name, link.account_id);
    let retry = crate::alerts::poller::suspended_retry_interval(&data.config.alerts);
    if let Some(paused) = link_status_notice(link.status, retry) {
        description.push('\n');
        description.push_str(&paused);
    }
    let embed = serenity::CreateEmbed::new()
        .title("Your alerts")
        .description(description)
        .colour(COLOUR_INFO)
        .field("Preferences", preference_lines(&preferences), false)
        .field("Mute", mute, false)
        .field("Targets", targets.join("\n"), false)
        .field("Alert poller", poller, false);
    ctx.send(CreateReply::default().embed(embed).ephemeral(true))
        .await?;
    Ok(())
}

/// Returns the line `/alerts status` adds when alerts of the user's account are paused.
fn link_status_notice(status: LinkStatus, suspended_retry: std::time::Duration) -> Option<String> {
    match status {
        LinkStatus::Active => None,
        LinkStatus::Suspended => Some(format!(
            "**Alerts are paused:** Trackly reports this account as suspended. The bot checks \
             again every {} and alerts resume by themselves once the account is active.",
            retry_text(suspended_retry)
        )),
        LinkStatus::Revoked => Some(
            "**Alerts are stopped:** Trackly no longer accepts your linked API key. Link a valid \
             key with `/sms link` to receive alerts again."
                .to_owned(),
        ),
    }
}

fn retry_text(interval: std::time::Duration) -> String {
    let seconds = interval.as_secs().max(1);
    if seconds >= 60 && seconds.is_multiple_of(60) {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

/// Send yourself a sample alert through the real outbox and dispatcher
#[poise::command(slash_command)]
async fn test(ctx: Context<'_>) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let db = data.links.db();
    let user_id = ctx.author().id.get();
    let link = db
        .link(user_id)
        .await?
        .ok_or_else(|| BotError::User(not_linked_message()))?;

    let now = Utc::now();
    let event = Event {
        id: format!("test_{}", ctx.id()),
        type_name: TEST_TYPE_NAME.to_owned(),
        kind: EventKind::Test,
        severity: Severity::Low,
        occurred_at: now,
        data: serde_json::json!({}),
    };
    let account = PollAccount {
        account_id: link.account_id.clone(),
        account_name: link.account_name.clone(),
    };
    db.store_single_alert(&account, &event, Target::Dm { user_id }, now)
        .await?;
    data.alerts.wake_dispatcher();
    let text = if data.alerts.is_running() {
        "A test alert is queued and should reach your DMs within a few seconds."
    } else {
        "A test alert is queued, but alert delivery is not running (`alerts.enabled` is off), so it stays queued."
    };
    ctx.send(CreateReply::default().content(text).ephemeral(true))
        .await?;
    Ok(())
}

fn preference_lines(preferences: &Preferences) -> String {
    let on_off = |value: bool| if value { "on" } else { "off" };
    [
        format!(
            "Delivery failures: {}",
            on_off(preferences.delivery_failures)
        ),
        format!("Opt-outs: {}", on_off(preferences.opt_outs)),
        format!("Inbound SMS: {}", on_off(preferences.inbound_sms)),
        format!("Billing: {}", on_off(preferences.billing)),
        format!("Spam complaints: {}", on_off(preferences.spam_complaints)),
        format!("Service: {}", on_off(preferences.service)),
        format!("Minimum severity: {}", preferences.minimum_severity),
    ]
    .join("\n")
}

/// Clears the DMs-closed mark of a user who runs a command, so alert DMs to them start again.
pub async fn clear_dm_closed(data: &Data, user_id: u64) {
    match data.links.db().set_dm_closed(user_id, false).await {
        Ok(true) => tracing::info!(user_id, "alert DMs resume after the user ran a command"),
        Ok(false) => {}
        Err(error) => tracing::warn!(user_id, %error, "cannot clear the DMs-closed mark"),
    }
}

/// Returns whether a component's custom id is the alert DM's mute button.
pub fn is_mute_button(custom_id: &str) -> bool {
    custom_id.starts_with(crate::alerts::render::MUTE_BUTTON_PREFIX)
}

/// Handles a click on "Mute 1 h": only the alert's recipient may use it. The response is an
/// ephemeral reply. Failures are logged because there is no command to report them to.
pub async fn handle_mute_button(
    ctx: &serenity::Context,
    data: &Data,
    component: &serenity::ComponentInteraction,
) {
    let clicker = component.user.id.get();
    let text = match parse_mute_button(&component.data.custom_id) {
        Some(recipient) if recipient == clicker => {
            let now = Utc::now();
            let until = now + Duration::hours(1);
            match data
                .links
                .db()
                .set_alert_mute(clicker, Some(until), now)
                .await
            {
                Ok(true) => {
                    tracing::info!(user_id = clicker, until = %until, "alerts muted from the DM button");
                    format!(
                        "Alerts muted until <t:{0}:t> (<t:{0}:R>). Critical alerts still reach you; `/alerts unmute` ends the mute early.",
                        until.timestamp()
                    )
                }
                Ok(false) => not_linked_message(),
                Err(error) => {
                    tracing::error!(user_id = clicker, %error, "cannot save the mute from the DM button");
                    "Could not save the mute because of an error on our side. Try `/alerts mute 1h`.".to_owned()
                }
            }
        }
        Some(recipient) => {
            tracing::info!(
                user_id = clicker,
                recipient,
                "mute button used by someone other than the recipient"
            );
            "Only the recipient of this alert can use its mute button.".to_owned()
        }
        None => "This button is no longer valid.".to_owned(),
    };
    let response = serenity::CreateInteractionResponse::Message(
        serenity::CreateInteractionResponseMessage::new()
            .content(text)
            .ephemeral(true),
    );
    if let Err(error) = component.create_response(&ctx.http, response).await {
        tracing::warn!(user_id = clicker, %error, "failed to respond to the mute button");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_notice_per_link_status() {
        let retry = std::time::Duration::from_secs(50);
        assert_eq!(link_status_notice(LinkStatus::Active, retry), None);
        let suspended = link_status_notice(LinkStatus::Suspended, retry).unwrap();
        assert!(suspended.contains("Alerts are paused"), "{suspended}");
        assert!(suspended.contains("every 50 s"), "{suspended}");
        let revoked = link_status_notice(LinkStatus::Revoked, retry).unwrap();
        assert!(revoked.contains("/sms link"), "{revoked}");
    }

    #[test]
    fn retry_text_units() {
        assert_eq!(retry_text(std::time::Duration::from_secs(300)), "5 min");
        assert_eq!(retry_text(std::time::Duration::from_secs(50)), "50 s");
        assert_eq!(retry_text(std::time::Duration::from_millis(200)), "1 s");
    }
}
