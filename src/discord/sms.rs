//! `/sms`: health, account linking, usage, balance and identity.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use poise::serenity_prelude as serenity;
use poise::CreateReply;

use super::errors::{not_linked_message, BotError};
use super::{link_modal, notify, Context, Data};
use crate::linking::AccountCallError;
use crate::storage::{Link, LinkStatus};
use crate::trackly::{format_count, Account, ApiKey, TracklyClient, TracklyError, UsagePeriod};

const COLOUR_OK: u32 = 0x2E_CC_71;
const COLOUR_INFO: u32 = 0x34_98_DB;
const COLOUR_WARN: u32 = 0xE6_7E_22;

/// Trackly SMS account commands
#[poise::command(
    slash_command,
    subcommands("ping", "status", "link", "unlink", "usage", "balance", "whoami"),
    subcommand_required
)]
pub async fn sms(_ctx: Context<'_>) -> Result<(), BotError> {
    Ok(())
}

/// Check the bot: gateway latency, a database round trip and overall health
#[poise::command(slash_command)]
async fn ping(ctx: Context<'_>) -> Result<(), BotError> {
    let gateway = ctx.ping().await;
    let database = ctx.data().state.db.ping().await;

    let gateway_text = if gateway.is_zero() {
        "not measured yet".to_owned()
    } else {
        format_millis(gateway)
    };
    let (database_text, healthy) = match &database {
        Ok(elapsed) => (format_millis(*elapsed), true),
        Err(error) => {
            tracing::error!(%error, "database ping failed");
            ("failing".to_owned(), false)
        }
    };
    let health = if healthy && ctx.data().state.gateway_connected() {
        "all systems normal"
    } else {
        "degraded; see `/sms status`"
    };
    let text = format!(
        "Pong! Gateway latency: {gateway_text} · Database: {database_text} · Health: {health}"
    );
    ctx.send(CreateReply::default().content(text).ephemeral(true))
        .await?;
    Ok(())
}

/// Show the state of the database, the Discord connection and the Trackly API
#[poise::command(slash_command)]
async fn status(ctx: Context<'_>) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();

    let database = match data.state.db.ping().await {
        Ok(elapsed) => format!("OK ({})", format_millis(elapsed)),
        Err(error) => {
            tracing::error!(%error, "database ping failed");
            "failing: the database did not answer".to_owned()
        }
    };

    let mut shards = Vec::new();
    if let Some(manager) = data.state.shard_manager() {
        let runners = manager.runners.lock().await;
        let mut ids: Vec<_> = runners.keys().copied().collect();
        ids.sort_by_key(|id| id.0);
        for id in ids {
            let info = &runners[&id];
            let latency = info
                .latency
                .map(format_millis)
                .unwrap_or_else(|| "no heartbeat yet".to_owned());
            shards.push(format!("shard {}: {} ({latency})", id.0, info.stage));
        }
    }
    let discord = if shards.is_empty() {
        "no shard information".to_owned()
    } else {
        shards.join("\n")
    };

    let trackly = match data.links.trackly().probe().await {
        Ok((status, elapsed)) if status.is_server_error() => {
            format!(
                "answering with HTTP {} ({})",
                status.as_u16(),
                format_millis(elapsed)
            )
        }
        Ok((_, elapsed)) => format!("reachable ({})", format_millis(elapsed)),
        Err(error) => {
            tracing::warn!(%error, "trackly probe failed");
            // The error kind only: the full error names the configured URL.
            format!("unreachable ({})", error.kind().replace('_', " "))
        }
    };

    let uptime = data.state.started_at.elapsed().as_secs();
    let embed = serenity::CreateEmbed::new()
        .title("trackly-bot status")
        .colour(COLOUR_INFO)
        .field("Database", database, false)
        .field("Discord gateway", discord, false)
        .field("Trackly API", trackly, false)
        .field("Alert poller", alert_poller_text(data).await, false)
        .footer(serenity::CreateEmbedFooter::new(format!(
            "Version {} · up {}h {}m",
            env!("CARGO_PKG_VERSION"),
            uptime / 3600,
            uptime % 3600 / 60
        )));
    ctx.send(CreateReply::default().embed(embed).ephemeral(true))
        .await?;
    Ok(())
}

/// Link your Trackly account with an API key
#[poise::command(slash_command)]
async fn link(
    ctx: Context<'_>,
    #[description = "Your Trackly API key; leave empty to enter it in a private form"]
    #[max_length = 200]
    api_key: Option<String>,
) -> Result<(), BotError> {
    let Some(api_key) = api_key else {
        let poise::Context::Application(app_ctx) = ctx else {
            return Err(BotError::User(
                "Use the slash command `/sms link`.".to_owned(),
            ));
        };
        link_modal::open(ctx.serenity_context(), app_ctx.interaction).await?;
        return Ok(());
    };

    ctx.defer_ephemeral().await?;
    let text = perform_link(ctx.data(), ctx.author().id.get(), &api_key).await?;
    ctx.send(CreateReply::default().content(text).ephemeral(true))
        .await?;
    Ok(())
}

/// Links `raw_key` for `user_id` and grants guild access; returns the reply text.
pub(super) async fn perform_link(
    data: &Data,
    user_id: u64,
    raw_key: &str,
) -> Result<String, BotError> {
    let linked = data
        .links
        .link(user_id, raw_key, Utc::now())
        .await
        .map_err(BotError::from_link_error)?;
    let account = &linked.account;
    let report = data
        .guild
        .grant(
            data.links.db(),
            user_id,
            &account.id,
            &account.name,
            linked.previous_account_id.as_deref(),
        )
        .await;

    let mut lines = vec![format!(
        "Linked to **{}** (`{}`) with key `{}`. Your role: {}.",
        account.name,
        account.id,
        linked.key_masked,
        Account::display_role(&account.role)
    )];
    if let Some(previous) = &linked.previous_account_id {
        if previous != &account.id {
            lines.push(format!("This replaces your earlier link to `{previous}`."));
        } else {
            lines.push("This replaces the key you linked before.".to_owned());
        }
    }
    lines.extend(report.lines(true));
    lines.push("See your account with `/sms usage`, `/sms balance` and `/sms whoami`.".to_owned());
    Ok(lines.join("\n"))
}

/// Unlink your Trackly account and delete the stored key
#[poise::command(slash_command)]
async fn unlink(ctx: Context<'_>) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let user_id = ctx.author().id.get();

    let Some(removed) = data.links.unlink(user_id).await? else {
        return Err(BotError::User(
            "You have no linked Trackly account, so there is nothing to unlink.".to_owned(),
        ));
    };
    let report = data
        .guild
        .revoke(data.links.db(), user_id, &removed.account_id)
        .await;

    let mut lines = vec![format!(
        "Unlinked from **{}** (`{}`). The stored API key was deleted; your Trackly account itself is unchanged.",
        removed.account_name, removed.account_id
    )];
    lines.extend(report.lines(false));
    ctx.send(
        CreateReply::default()
            .content(lines.join("\n"))
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
enum PeriodChoice {
    #[name = "today"]
    Today,
    #[name = "week"]
    Week,
    #[name = "month"]
    Month,
    #[name = "all"]
    All,
}

impl From<PeriodChoice> for UsagePeriod {
    fn from(choice: PeriodChoice) -> Self {
        match choice {
            PeriodChoice::Today => UsagePeriod::Today,
            PeriodChoice::Week => UsagePeriod::Week,
            PeriodChoice::Month => UsagePeriod::Month,
            PeriodChoice::All => UsagePeriod::All,
        }
    }
}

/// Show messages, segments and estimated cost for a period
#[poise::command(slash_command)]
async fn usage(
    ctx: Context<'_>,
    #[description = "Calendar period in UTC (default: month)"] period: Option<PeriodChoice>,
) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let period: UsagePeriod = period.unwrap_or(PeriodChoice::Month).into();
    let (link, usage) = call_trackly(ctx, move |client, key| async move {
        client.usage(&key, period).await
    })
    .await
    .map_err(|error| BotError::from_account_call(error, "load your usage"))?;

    let range = match usage.start {
        Some(start) => format!("{} to {}", format_time(start), format_time(usage.end)),
        None => format!("up to {}", format_time(usage.end)),
    };
    let embed = serenity::CreateEmbed::new()
        .title(format!("Usage: {}", period.label()))
        .description(format!(
            "**{}** (`{}`)\n{range}",
            link.account_name, link.account_id
        ))
        .colour(COLOUR_INFO)
        .field(
            "Outbound messages",
            format_count(usage.outbound_messages),
            true,
        )
        .field(
            "Inbound messages",
            format_count(usage.inbound_messages),
            true,
        )
        .field("Segments", format_count(usage.segments), true)
        .field("Estimated cost", usage.estimated_cost.to_string(), true);
    ctx.send(CreateReply::default().embed(embed).ephemeral(true))
        .await?;
    Ok(())
}

/// Show unbilled segments, the estimated amount and the last billing date
#[poise::command(slash_command)]
async fn balance(ctx: Context<'_>) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let (link, balance) =
        call_trackly(ctx, |client, key| async move { client.balance(&key).await })
            .await
            .map_err(|error| BotError::from_account_call(error, "load your balance"))?;

    let last_billed = balance
        .last_billed_at
        .map(format_time)
        .unwrap_or_else(|| "not billed yet".to_owned());
    let mut embed = serenity::CreateEmbed::new()
        .title("Balance")
        .description(format!("**{}** (`{}`)", link.account_name, link.account_id))
        .colour(COLOUR_INFO)
        .field(
            "Unbilled segments",
            format_count(balance.unbilled_segments),
            true,
        )
        .field(
            "Estimated amount",
            balance.estimated_amount.to_string(),
            true,
        )
        .field("Last billed", last_billed, true);
    if let Some(threshold) = balance.next_charge_at_segments {
        let to_go = threshold.saturating_sub(balance.unbilled_segments);
        embed = embed.field(
            "Next charge",
            format!(
                "at {} unbilled segments ({} to go), or at the monthly billing",
                format_count(threshold),
                format_count(to_go)
            ),
            false,
        );
    }
    ctx.send(CreateReply::default().embed(embed).ephemeral(true))
        .await?;
    Ok(())
}

/// Show the linked account, your role and the masked key
#[poise::command(slash_command)]
async fn whoami(ctx: Context<'_>) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let user_id = ctx.author().id.get();

    let result = call_trackly(ctx, |client, key| async move { client.account(&key).await }).await;
    let (link, note) = match result {
        Ok((link, account)) => {
            data.links.refresh_account(&link, &account).await?;
            let refreshed = Link {
                account_name: account.name,
                role: account.role,
                status: LinkStatus::Active,
                ..link
            };
            (refreshed, None)
        }
        // Trackly being down should not hide the details the bot already stored.
        Err(AccountCallError::Trackly(error)) if error.is_transient() => {
            tracing::warn!(user_id, %error, "showing stored account details because trackly is unreachable");
            let link = data
                .links
                .db()
                .link(user_id)
                .await?
                .ok_or_else(|| BotError::User(not_linked_message()))?;
            (link, Some("Trackly could not be reached, so this is what the bot stored at the last check."))
        }
        Err(error) => return Err(BotError::from_account_call(error, "refresh your account")),
    };

    let mut embed = serenity::CreateEmbed::new()
        .title("Your linked Trackly account")
        .colour(if link.status == LinkStatus::Active {
            COLOUR_OK
        } else {
            COLOUR_WARN
        })
        .field("Account", link.account_name.clone(), true)
        .field("Account id", format!("`{}`", link.account_id), true)
        .field("Role", Account::display_role(&link.role).to_owned(), true)
        .field(
            "Linked since",
            format!("<t:{}:f>", link.linked_at.timestamp()),
            true,
        )
        .field("API key", format!("`{}`", link.key_masked), true)
        .field("Status", link.status.as_str(), true);
    if let Some(note) = note {
        embed = embed.footer(serenity::CreateEmbedFooter::new(note));
    }
    ctx.send(CreateReply::default().embed(embed).ephemeral(true))
        .await?;
    Ok(())
}

/// Calls Trackly with the author's key. On the call that first finds the key rejected, the user
/// also gets one DM, because alerts for the account stop until they relink.
async fn call_trackly<T, F, Fut>(ctx: Context<'_>, call: F) -> Result<(Link, T), AccountCallError>
where
    F: FnOnce(TracklyClient, ApiKey) -> Fut,
    Fut: Future<Output = Result<T, TracklyError>>,
{
    let user_id = ctx.author().id.get();
    let result = ctx.data().links.call(user_id, call).await;
    if let Err(AccountCallError::KeyRejected {
        newly_revoked: true,
        account_id,
        account_name,
    }) = &result
    {
        // A revoked key must not keep the account channel or the linked role. The row stays,
        // so that the user sees why and can relink.
        let data = ctx.data();
        let report = data
            .guild
            .revoke(data.links.db(), user_id, account_id)
            .await;
        tracing::info!(user_id, %account_id, lines = ?report.lines(false), "access revoked with the key");
        notify::notify_key_revoked(ctx.http(), user_id, account_name).await;
    }
    result
}

/// Describes the poller's last run, the accounts it polled and the outbox backlog.
async fn alert_poller_text(data: &Data) -> String {
    let backlog = match data.links.db().pending_delivery_count().await {
        Ok(count) => format!("{count} pending"),
        Err(error) => {
            tracing::error!(%error, "cannot count pending alert deliveries");
            "unknown (the database did not answer)".to_owned()
        }
    };
    if !data.alerts.is_running() {
        return format!("not running (alerts.enabled is off) · outbox backlog: {backlog}");
    }
    let status = data.alerts.status();
    let last_run = match status.last_run_at {
        Some(at) => format!("<t:{}:R> in {} ms", at.timestamp(), status.last_run_ms),
        None => "no run yet".to_owned(),
    };
    format!(
        "running · last run: {last_run} · accounts polled: {}{} · outbox backlog: {backlog}",
        status.accounts_polled,
        if status.accounts_failed > 0 {
            format!(" ({} failed)", status.accounts_failed)
        } else {
            String::new()
        }
    )
}

fn format_millis(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

fn format_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}
