//! Command errors sorted by what happens to them: ignored, shown to the user, or reported.

use poise::serenity_prelude as serenity;

use super::Data;
use crate::linking::{AccountCallError, LinkError};
use crate::trackly::{KeyFormatError, TracklyError};

/// Discord's JSON error code for an interaction that expired or was already acknowledged.
const UNKNOWN_INTERACTION: isize = 10062;
const ALREADY_ACKNOWLEDGED: isize = 40060;

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// Something the user can act on; the text is shown to them as is.
    #[error("{0}")]
    User(String),
    /// Nothing to tell anyone, such as an interaction that expired before the reply.
    #[error("ignored: {0}")]
    Ignore(String),
    /// A fault on our side; logged with context, and the user gets a reference id.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<serenity::Error> for BotError {
    fn from(error: serenity::Error) -> Self {
        match discord_error_code(&error) {
            Some(UNKNOWN_INTERACTION | ALREADY_ACKNOWLEDGED) => BotError::Ignore(error.to_string()),
            _ => BotError::Internal(anyhow::Error::new(error).context("Discord request failed")),
        }
    }
}

impl From<sqlx::Error> for BotError {
    fn from(error: sqlx::Error) -> Self {
        BotError::Internal(anyhow::Error::new(error).context("database"))
    }
}

/// Returns Discord's JSON error code of a failed REST call, such as 50007.
pub fn discord_error_code(error: &serenity::Error) -> Option<isize> {
    match error {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => {
            Some(response.error.code)
        }
        _ => None,
    }
}

pub const LINK_HINT: &str =
    "Run `/sms link` and paste an API key from Trackly (Settings → API keys; only account owners can create keys).";

pub fn not_linked_message() -> String {
    format!("You have not linked a Trackly account yet. {LINK_HINT}")
}

pub fn key_rejected_message() -> String {
    "Trackly no longer accepts your linked API key: it was deleted or rotated. Link a new key with `/sms link`."
        .to_owned()
}

/// Returns the text a user sees for a Trackly failure; `doing` completes "Could not …".
pub fn trackly_error_message(error: &TracklyError, doing: &str) -> String {
    match error {
        TracklyError::InvalidKey { .. } => {
            "Trackly rejected that API key: it is wrong, deleted or rotated. Copy the key again from Trackly and retry."
                .to_owned()
        }
        TracklyError::Suspended => {
            "This Trackly account is suspended. Contact Trackly support to restore it.".to_owned()
        }
        TracklyError::ProductNotEnabled { product } => format!(
            "This Trackly account does not have the `{product}` product enabled. Ask Trackly support to enable it."
        ),
        TracklyError::Forbidden { message } => {
            format!("Could not {doing}: Trackly refused the request ({message}).")
        }
        TracklyError::NotFound => format!("Could not {doing}: Trackly reported that it does not exist."),
        TracklyError::RateLimited { retry_after } => {
            let wait = match retry_after {
                Some(wait) if wait.as_secs() >= 120 => format!("in about {} minutes", wait.as_secs().div_ceil(60)),
                Some(wait) => format!("in {} seconds", wait.as_secs().max(1)),
                None => "in a minute".to_owned(),
            };
            format!("Could not {doing}: Trackly is limiting requests right now. Try again {wait}.")
        }
        TracklyError::Unavailable { .. } => format!(
            "Could not {doing}: Trackly is unreachable right now. Nothing was changed; try again in a few minutes."
        ),
        TracklyError::TimedOut(_) => format!(
            "Could not {doing}: Trackly did not respond in time. Nothing was changed; try again in a few minutes."
        ),
        TracklyError::InvalidCursor | TracklyError::UnexpectedResponse { .. } => format!(
            "Could not {doing}: Trackly returned an unexpected response. Try again later; if it keeps happening, open a support ticket."
        ),
    }
}

fn key_format_message(error: &KeyFormatError) -> String {
    format!(
        "That is not a valid Trackly API key: {error}. Keys look like `trk_` followed by 32 letters or digits. \
         Nothing was sent to Trackly."
    )
}

impl BotError {
    pub fn from_link_error(error: LinkError) -> BotError {
        match error {
            LinkError::Malformed(error) => BotError::User(key_format_message(&error)),
            LinkError::TooManyAttempts { retry_at } => BotError::User(format!(
                "Too many failed link attempts. For your account's safety, try again <t:{}:R>.",
                retry_at.timestamp()
            )),
            LinkError::Trackly(TracklyError::Suspended) => BotError::User(
                "That key belongs to a suspended Trackly account, so it cannot be linked. Contact Trackly support to restore the account."
                    .to_owned(),
            ),
            LinkError::Trackly(error) => {
                log_trackly_failure(&error, "link");
                BotError::User(trackly_error_message(&error, "link the account"))
            }
            LinkError::Internal(error) => BotError::Internal(error),
        }
    }

    pub fn from_account_call(error: AccountCallError, doing: &str) -> BotError {
        match error {
            AccountCallError::NotLinked => BotError::User(not_linked_message()),
            AccountCallError::Revoked | AccountCallError::KeyRejected { .. } => {
                BotError::User(key_rejected_message())
            }
            AccountCallError::Undecryptable(_) => BotError::User(
                "Your stored API key can no longer be read by the bot (its encryption key changed). \
                 Link your key again with `/sms link`; the error has been logged for staff."
                    .to_owned(),
            ),
            AccountCallError::Suspended => BotError::User(
                "Your Trackly account is suspended, so its data is unavailable and its alerts are paused. \
                 Contact Trackly support to restore it."
                    .to_owned(),
            ),
            AccountCallError::Trackly(error) => {
                log_trackly_failure(&error, doing);
                BotError::User(trackly_error_message(&error, doing))
            }
            AccountCallError::Internal(error) => BotError::Internal(error),
        }
    }
}

fn log_trackly_failure(error: &TracklyError, doing: &str) {
    metrics::counter!("trackly_bot_trackly_failures_total", "kind" => error.kind()).increment(1);
    tracing::warn!(kind = error.kind(), %error, doing, "trackly call failed");
}

/// Sends `text` as an ephemeral reply, or as a followup when the command already deferred. A
/// failure here is logged and not raised, so error reporting itself can never fail a command.
pub async fn reply_ephemeral(ctx: super::Context<'_>, text: &str) {
    let reply = poise::CreateReply::default().content(text).ephemeral(true);
    if let Err(error) = ctx.send(reply).await {
        tracing::warn!(
            interaction_id = ctx.id(),
            user_id = ctx.author().id.get(),
            %error,
            "failed to send an error reply"
        );
    }
}

pub async fn on_error(error: poise::FrameworkError<'_, Data, BotError>) {
    match error {
        poise::FrameworkError::Command { error, ctx, .. } => {
            let command = ctx.command().qualified_name.clone();
            match error {
                BotError::User(text) => {
                    tracing::info!(%command, user_id = ctx.author().id.get(), "command rejected with a user message");
                    reply_ephemeral(ctx, &text).await;
                }
                BotError::Ignore(reason) => {
                    tracing::debug!(%command, interaction_id = ctx.id(), %reason, "command error ignored");
                }
                BotError::Internal(error) => {
                    metrics::counter!("trackly_bot_internal_errors_total").increment(1);
                    tracing::error!(
                        %command,
                        user_id = ctx.author().id.get(),
                        interaction_id = ctx.id(),
                        error = format!("{error:#}"),
                        "command failed"
                    );
                    let text = format!(
                        "Something went wrong on our side, and it has been logged (reference `{}`). \
                         Try again; if it keeps happening, open a support ticket with that reference.",
                        ctx.id()
                    );
                    reply_ephemeral(ctx, &text).await;
                }
            }
        }
        poise::FrameworkError::ArgumentParse {
            error, input, ctx, ..
        } => {
            // `input` may be an API key, so it is never logged.
            tracing::info!(
                command = %ctx.command().qualified_name,
                has_input = input.is_some(),
                "command arguments could not be parsed"
            );
            reply_ephemeral(
                ctx,
                &format!("Some options of this command were invalid: {error}"),
            )
            .await;
        }
        poise::FrameworkError::CommandPanic { payload, ctx, .. } => {
            tracing::error!(
                command = %ctx.command().qualified_name,
                interaction_id = ctx.id(),
                payload = payload.as_deref().unwrap_or("unknown"),
                "command panicked"
            );
            reply_ephemeral(
                ctx,
                &format!(
                    "Something went wrong on our side, and it has been logged (reference `{}`).",
                    ctx.id()
                ),
            )
            .await;
        }
        poise::FrameworkError::Setup { error, .. } => {
            tracing::error!(error = %error, "framework setup failed");
        }
        poise::FrameworkError::EventHandler { error, event, .. } => {
            tracing::error!(error = %error, event = event.snake_case_name(), "event handler failed");
        }
        other => {
            if let Err(error) = poise::builtins::on_error(other).await {
                tracing::error!(%error, "failed to report a framework error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_without_a_discord_code_are_reported() {
        let error = serenity::Error::Other("no response");
        assert_eq!(discord_error_code(&error), None);
        assert!(matches!(BotError::from(error), BotError::Internal(_)));
    }

    #[test]
    fn database_errors_are_reported() {
        let error = BotError::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(error, BotError::Internal(_)));
        assert!(format!("{error:#}").contains("database"), "{error:#}");
    }
}
