//! The Discord side of alert delivery: turns an [`AlertMessage`] into a message request and
//! sorts Discord's response into a [`SendError`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use poise::serenity_prelude as serenity;
use serenity::http::{LightMethod, Request, Route};

use super::{guild, notify};
use crate::alerts::{AlertMessage, AlertSender, SendError, Target};
use crate::config::GuildConfig;
use crate::storage::Db;

const UNKNOWN_CHANNEL: isize = 10003;
const MISSING_ACCESS: isize = 50001;
const MISSING_PERMISSIONS: isize = 50013;
const CANNOT_MESSAGE_USER: isize = 50007;

/// Sends alerts with serenity's `Http`.
///
/// With serenity's rate limiter off (the `discord.rest_base_url` proxy mode), serenity drops a
/// 429's `retry_after` when it turns the response into an error, so messages are then sent with
/// serenity's request builder and the response is read here. With the rate limiter on, serenity
/// waits out 429s itself and `send_message` is used.
pub struct DiscordAlertSender {
    http: Arc<serenity::Http>,
    db: Db,
    guild: GuildConfig,
    client: reqwest::Client,
    dm_channels: tokio::sync::Mutex<HashMap<u64, serenity::ChannelId>>,
}

impl DiscordAlertSender {
    pub fn new(
        http: Arc<serenity::Http>,
        db: Db,
        guild: GuildConfig,
        request_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(request_timeout)
            .build()?;
        Ok(Self {
            http,
            db,
            guild,
            client,
            dm_channels: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    async fn channel_for(&self, target: Target) -> Result<serenity::ChannelId, SendError> {
        let Target::Dm { user_id } = target else {
            return Ok(serenity::ChannelId::new(target.id()));
        };
        if let Some(channel) = self.dm_channels.lock().await.get(&user_id) {
            return Ok(*channel);
        }
        let channel = serenity::UserId::new(user_id)
            .create_dm_channel(&self.http)
            .await
            .map_err(|error| classify_serenity_error(&error))?;
        self.dm_channels.lock().await.insert(user_id, channel.id);
        Ok(channel.id)
    }

    async fn send_raw(
        &self,
        channel_id: serenity::ChannelId,
        builder: &serenity::CreateMessage,
    ) -> Result<u64, SendError> {
        let body = serde_json::to_vec(builder)
            .map_err(|error| SendError::Permanent(format!("cannot encode the message: {error}")))?;
        let request = Request::new(Route::ChannelMessages { channel_id }, LightMethod::Post)
            .body(Some(body))
            .build(&self.client, self.http.token(), self.http.proxy.as_deref())
            .map_err(|error| SendError::Permanent(format!("cannot build the request: {error}")))?;
        let response = request
            .send()
            .await
            .map_err(|error| SendError::Transient(format!("request failed: {error}")))?;
        let status = response.status();
        let header_retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<f64>().ok());
        let bytes = response.bytes().await.map_err(|error| {
            SendError::Transient(format!("reading the response failed: {error}"))
        })?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();

        if status.is_success() {
            return json["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| {
                    SendError::Permanent("Discord's response carries no message id".to_owned())
                });
        }
        if status.as_u16() == 429 {
            let seconds = json["retry_after"].as_f64().or(header_retry_after);
            return Err(SendError::RateLimited {
                retry_after: seconds
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(3600.0))),
                global: json["global"].as_bool().unwrap_or(false),
            });
        }
        let code = json["code"].as_i64().map(|code| code as isize);
        let message = json["message"].as_str().unwrap_or("no message").to_owned();
        Err(classify(status.as_u16(), code, message))
    }
}

impl AlertSender for DiscordAlertSender {
    async fn send(
        &self,
        target: Target,
        message: &AlertMessage,
        nonce: &str,
    ) -> Result<u64, SendError> {
        let channel_id = self.channel_for(target).await?;
        let builder = build_message(message, nonce);
        if self.http.ratelimiter.is_none() {
            self.send_raw(channel_id, &builder).await
        } else {
            channel_id
                .send_message(&self.http, builder)
                .await
                .map(|sent| sent.id.get())
                .map_err(|error| classify_serenity_error(&error))
        }
    }

    async fn key_revoked(&self, user_id: u64, account_id: &str, account_name: &str) {
        // A revoked key must not keep the account channel or the linked role.
        let report =
            guild::revoke_access(&self.http, &self.db, &self.guild, user_id, account_id).await;
        tracing::info!(user_id, account_id, lines = ?report.lines(false), "access revoked with the key");
        notify::notify_key_revoked(&self.http, user_id, account_name).await;
    }
}

/// Builds the request body: embeds, the mute button on DMs, and a nonce that Discord enforces,
/// so a message repeated after a crash within a few minutes is not posted twice.
pub fn build_message(message: &AlertMessage, nonce: &str) -> serenity::CreateMessage {
    let embeds: Vec<serenity::CreateEmbed> = message
        .embeds
        .iter()
        .map(|embed| {
            let mut built = serenity::CreateEmbed::new()
                .title(&embed.title)
                .description(&embed.description)
                .colour(embed.colour)
                .footer(serenity::CreateEmbedFooter::new(&embed.footer));
            for field in &embed.fields {
                built = built.field(&field.name, &field.value, field.inline);
            }
            if let Some(time) = embed.timestamp {
                if let Ok(timestamp) = serenity::Timestamp::from_unix_timestamp(time.timestamp()) {
                    built = built.timestamp(timestamp);
                }
            }
            built
        })
        .collect();
    let mut builder = serenity::CreateMessage::new()
        .embeds(embeds)
        .nonce(serenity::Nonce::String(nonce.chars().take(25).collect()))
        .enforce_nonce(true)
        .allowed_mentions(serenity::CreateAllowedMentions::new());
    if !message.content.is_empty() {
        builder = builder.content(&message.content);
    }
    if let Some(custom_id) = &message.mute_button {
        let button = serenity::CreateButton::new(custom_id)
            .label("Mute 1 h")
            .style(serenity::ButtonStyle::Secondary);
        builder = builder.components(vec![serenity::CreateActionRow::Buttons(vec![button])]);
    }
    builder
}

fn classify(status: u16, code: Option<isize>, message: String) -> SendError {
    match code {
        Some(CANNOT_MESSAGE_USER) => return SendError::DmClosed,
        Some(code @ (MISSING_ACCESS | UNKNOWN_CHANNEL | MISSING_PERMISSIONS)) => {
            return SendError::ChannelUnavailable {
                code,
                detail: message,
            }
        }
        _ => {}
    }
    match status {
        429 => SendError::RateLimited {
            retry_after: None,
            global: false,
        },
        500..=599 => SendError::Transient(format!("HTTP {status}: {message}")),
        // The channel codes are handled above, so a 401 or 403 here is about the bot itself.
        401 | 403 => SendError::Unauthorized(format!(
            "HTTP {status}, code {}: {message}",
            code.map_or("none".to_owned(), |code| code.to_string())
        )),
        _ => SendError::Permanent(format!(
            "HTTP {status}, code {}: {message}",
            code.map_or("none".to_owned(), |code| code.to_string())
        )),
    }
}

fn classify_serenity_error(error: &serenity::Error) -> SendError {
    match error {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => classify(
            response.status_code.as_u16(),
            Some(response.error.code),
            response.error.message.clone(),
        ),
        serenity::Error::Http(serenity::HttpError::Request(error)) => {
            SendError::Transient(format!("request failed: {error}"))
        }
        other => SendError::Permanent(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::render;
    use serde_json::json;

    #[test]
    fn discord_codes_classified() {
        assert_eq!(classify(403, Some(50007), "x".into()), SendError::DmClosed);
        assert!(matches!(
            classify(403, Some(50001), "x".into()),
            SendError::ChannelUnavailable { code: 50001, .. }
        ));
        assert!(matches!(
            classify(404, Some(10003), "x".into()),
            SendError::ChannelUnavailable { code: 10003, .. }
        ));
        assert!(matches!(
            classify(502, None, "x".into()),
            SendError::Transient(_)
        ));
        assert!(matches!(
            classify(401, Some(0), "401: Unauthorized".into()),
            SendError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(403, Some(20001), "bots cannot use this endpoint".into()),
            SendError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(403, None, "Forbidden".into()),
            SendError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(429, Some(-1), "x".into()),
            SendError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(400, Some(50035), "x".into()),
            SendError::Permanent(_)
        ));
    }

    #[test]
    fn message_body_has_button_and_nonce() {
        let event = crate::alerts::Event::from_feed(
            &json!({"id": "evt_1", "type": "opt_out", "data": {"phone_number": "+14155551234"}}),
            chrono::Utc::now(),
        )
        .unwrap();
        let account = render::AccountLabel {
            id: "acc_1".into(),
            name: "Acme".into(),
        };
        let message = render::alert_message(&event, &account, Some(42));
        let body = serde_json::to_value(build_message(&message, "a1-1")).unwrap();
        assert_eq!(body["nonce"], "a1-1");
        assert_eq!(body["enforce_nonce"], true);
        assert_eq!(
            body["components"][0]["components"][0]["custom_id"],
            "alerts:mute1h:42"
        );
        assert_eq!(body["embeds"][0]["title"], "Opt-out");
        assert!(!body.to_string().contains("+14155551234"));
    }
}
