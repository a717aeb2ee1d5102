//! Reaching Discord before the gateway starts: the token is checked and the gateway address is
//! fetched through the configured REST base, with retries while Discord cannot be reached.
//!
//! serenity fetches the gateway address once when the client is built and falls back to
//! Discord's public gateway when that request fails, even with a REST base of its own; the
//! address found here replaces whatever serenity found.

use std::time::Duration;

use poise::serenity_prelude as serenity;
use rand::Rng;
use tokio_util::sync::CancellationToken;

/// Wait before the first retry; it doubles up to [`LONGEST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// A setup problem that keeps the bot from using Discord at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "Discord rejected DISCORD_TOKEN: reset the token in the developer portal (Bot tab) \
         and set DISCORD_TOKEN to the new value"
    )]
    TokenRejected,
    #[error(
        "Discord refused the gateway intents the bot asks for: enable them for the \
         application in the developer portal (Bot tab, Privileged Gateway Intents)"
    )]
    IntentsRefused,
}

/// The result of one attempt to reach Discord.
enum Attempt {
    Ready(String),
    Rejected,
    Unreachable(String),
}

async fn attempt(http: &serenity::Http) -> Attempt {
    // GET /users/@me needs a valid token; GET /gateway does not.
    if let Err(error) = http.get_current_user().await {
        return if status_of(&error) == Some(401) {
            Attempt::Rejected
        } else {
            Attempt::Unreachable(error.to_string())
        };
    }
    match http.get_gateway().await {
        Ok(gateway) => Attempt::Ready(gateway.url),
        Err(error) => Attempt::Unreachable(error.to_string()),
    }
}

fn status_of(error: &serenity::Error) -> Option<u16> {
    match error {
        serenity::Error::Http(http) => http.status_code().map(|status| status.as_u16()),
        _ => None,
    }
}

/// Checks the token and returns the gateway address, retrying with backoff while Discord
/// cannot be reached. Returns `None` when shutdown is requested first. `rest_base` names
/// where requests go, for the log.
pub async fn reach_discord(
    http: &serenity::Http,
    rest_base: &str,
    shutdown: &CancellationToken,
) -> Result<Option<String>, ConnectError> {
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            result = attempt(http) => result,
            () = shutdown.cancelled() => return Ok(None),
        };
        match result {
            Attempt::Ready(url) => {
                if failures > 0 {
                    tracing::info!(rest_base, failures, "Discord can be reached again");
                }
                return Ok(Some(url));
            }
            Attempt::Rejected => return Err(ConnectError::TokenRejected),
            Attempt::Unreachable(error) => {
                failures += 1;
                let wait = retry_delay(failures, rand::thread_rng().gen_range(0.0..0.2));
                tracing::error!(
                    rest_base,
                    attempt = failures,
                    retry_in_ms = wait.as_millis() as u64,
                    %error,
                    "cannot reach Discord; check discord.rest_base_url and the network; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Returns the wait after `failures` failed attempts (at least 1), with `jitter` (0 to 1)
/// added as a share of the wait.
fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let base = FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(LONGEST_RETRY);
    base + base.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Returns the setup problem behind a gateway error that no retry can fix.
pub fn fatal_gateway_error(error: &serenity::Error) -> Option<ConnectError> {
    match error {
        serenity::Error::Gateway(serenity::GatewayError::InvalidAuthentication) => {
            Some(ConnectError::TokenRejected)
        }
        serenity::Error::Gateway(
            serenity::GatewayError::DisallowedGatewayIntents
            | serenity::GatewayError::InvalidGatewayIntents,
        ) => Some(ConnectError::IntentsRefused),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_a_minute() {
        assert_eq!(retry_delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(retry_delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(retry_delay(4, 0.0), Duration::from_secs(8));
        assert_eq!(retry_delay(7, 0.0), Duration::from_secs(60));
        assert_eq!(retry_delay(u32::MAX, 0.0), Duration::from_secs(60));
        assert_eq!(retry_delay(1, 0.2), Duration::from_millis(1200));
        assert_eq!(retry_delay(7, 5.0), Duration::from_secs(120));
    }

    #[test]
    fn gateway_setup_errors_are_fatal() {
        let token = serenity::Error::Gateway(serenity::GatewayError::InvalidAuthentication);
        assert_eq!(
            fatal_gateway_error(&token),
            Some(ConnectError::TokenRejected)
        );
        let intents = serenity::Error::Gateway(serenity::GatewayError::DisallowedGatewayIntents);
        assert_eq!(
            fatal_gateway_error(&intents),
            Some(ConnectError::IntentsRefused)
        );
        let other = serenity::Error::Gateway(serenity::GatewayError::ReconnectFailure);
        assert_eq!(fatal_gateway_error(&other), None);
        assert!(ConnectError::TokenRejected
            .to_string()
            .contains("DISCORD_TOKEN"));
    }
}
