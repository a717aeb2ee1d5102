//! Direct messages to users.

use poise::serenity_prelude as serenity;

use super::errors::discord_error_code;

/// Discord's JSON error code when a user does not accept DMs from the bot.
pub const CANNOT_MESSAGE_USER: isize = 50007;

/// Sends `content` to `user_id` by DM. Failures are logged with the user id and returned, so a
/// caller can fall back to another channel; none of them is retried here.
pub async fn send_dm(
    http: &serenity::Http,
    user_id: u64,
    content: &str,
) -> Result<(), serenity::Error> {
    let user = serenity::UserId::new(user_id);
    let result = async {
        let channel = user.create_dm_channel(http).await?;
        channel
            .id
            .send_message(http, serenity::CreateMessage::new().content(content))
            .await
    }
    .await;
    match &result {
        Ok(_) => tracing::info!(user_id, "direct message sent"),
        Err(error) if discord_error_code(error) == Some(CANNOT_MESSAGE_USER) => {
            tracing::warn!(
                user_id,
                "direct message rejected: the user does not accept DMs from the bot"
            )
        }
        Err(error) => tracing::error!(user_id, %error, "failed to send a direct message"),
    }
    result.map(|_| ())
}

/// Tells a user once, by DM, that Trackly rejected their linked key.
pub async fn notify_key_revoked(http: &serenity::Http, user_id: u64, account_name: &str) {
    let content = format!(
        "Trackly no longer accepts the API key linked for **{account_name}**: it was deleted or rotated. \
         Alerts, account commands and your access to the account channel stop until you link a new key with `/sms link`."
    );
    // Logged inside; the DM is a courtesy and the command reply already contains the same text.
    let _ = send_dm(http, user_id, &content).await;
}
