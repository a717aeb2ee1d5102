//! Linking Discord users to Trackly accounts, and calling Trackly with a linked user's key.
//! Plain values in and out: the Discord layer turns the results into replies.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::LinkingConfig;
use crate::crypto::KeyCipher;
use crate::storage::links::AttemptSlot;
use crate::storage::{AttemptOutcome, Db, Link, LinkStatus, NewLink};
use crate::trackly::{Account, ApiKey, KeyFormatError, TracklyClient, TracklyError};

/// The outcome of a successful link.
#[derive(Debug, Clone)]
pub struct Linked {
    pub account: Account,
    pub key_masked: String,
    /// The account of the link this one replaced, when the user was linked before.
    pub previous_account_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("malformed key: {0}")]
    Malformed(KeyFormatError),
    #[error("too many failed link attempts; next allowed at {retry_at}")]
    TooManyAttempts { retry_at: DateTime<Utc> },
    #[error("trackly: {0}")]
    Trackly(TracklyError),
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum AccountCallError {
    #[error("the user has no linked account")]
    NotLinked,
    /// The link was revoked earlier; the user must link a new key.
    #[error("the link was revoked")]
    Revoked,
    /// Trackly returned 401 just now. `newly_revoked` is true only for the call that moved the
    /// link to revoked, so the user gets exactly one DM.
    #[error("the key was rejected")]
    KeyRejected {
        newly_revoked: bool,
        account_id: String,
        account_name: String,
    },
    /// The stored key cannot be opened, as after a change of the encryption key.
    #[error("the stored key cannot be decrypted: {0}")]
    Undecryptable(crate::crypto::CryptoError),
    #[error("the account is suspended")]
    Suspended,
    #[error("trackly: {0}")]
    Trackly(TracklyError),
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for LinkError {
    fn from(error: sqlx::Error) -> Self {
        LinkError::Internal(anyhow::Error::new(error).context("database"))
    }
}

impl From<sqlx::Error> for AccountCallError {
    fn from(error: sqlx::Error) -> Self {
        AccountCallError::Internal(anyhow::Error::new(error).context("database"))
    }
}

#[derive(Clone)]
pub struct LinkService {
    db: Db,
    trackly: TracklyClient,
    cipher: Arc<KeyCipher>,
    limits: LinkingConfig,
}

impl LinkService {
    pub fn new(
        db: Db,
        trackly: TracklyClient,
        cipher: Arc<KeyCipher>,
        limits: LinkingConfig,
    ) -> Self {
        Self {
            db,
            trackly,
            cipher,
            limits,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn trackly(&self) -> &TracklyClient {
        &self.trackly
    }

    /// Validates `raw_key` and links it to `user_id`, replacing any earlier link.
    ///
    /// A malformed key is rejected before anything else and does not count as a failure,
    /// because it reaches no API and so cannot help guess a key. Then the attempt slot is
    /// taken, so that a user over the limit gets no API call at all. A 401 counts as a
    /// failure; an unreachable Trackly does not, because the user learned nothing from it.
    pub async fn link(
        &self,
        user_id: u64,
        raw_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Linked, LinkError> {
        let key = ApiKey::parse(raw_key).map_err(LinkError::Malformed)?;
        let window = chrono::Duration::seconds(self.limits.failed_attempt_window_secs as i64);
        let slot = self
            .db
            .reserve_link_attempt(user_id, now, window, self.limits.max_failed_attempts)
            .await?;
        let attempt_id = match slot {
            AttemptSlot::Granted { attempt_id } => attempt_id,
            AttemptSlot::Limited { retry_at } => {
                tracing::warn!(user_id, %retry_at, "link attempt rejected by the failure limit");
                return Err(LinkError::TooManyAttempts { retry_at });
            }
        };

        let result = self.validate_and_store(user_id, &key, now).await;
        let outcome = match &result {
            Ok(_) => AttemptOutcome::Succeeded,
            Err(LinkError::Trackly(TracklyError::InvalidKey { .. })) => AttemptOutcome::Failed,
            Err(_) => AttemptOutcome::Inconclusive,
        };
        if let Err(error) = self.db.finish_link_attempt(attempt_id, outcome).await {
            // The pending row still counts as a failure until the window passes: safe, not lost.
            tracing::error!(user_id, attempt_id, %error, "failed to record the link attempt outcome");
        }
        result
    }

    async fn validate_and_store(
        &self,
        user_id: u64,
        key: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<Linked, LinkError> {
        let account = self
            .trackly
            .account(key)
            .await
            .map_err(LinkError::Trackly)?;
        if account.status == "suspended" {
            return Err(LinkError::Trackly(TracklyError::Suspended));
        }

        let sealed = self.cipher.seal(key.expose(), user_id);
        let key_masked = key.masked();
        let previous = self
            .db
            .upsert_link(&NewLink {
                discord_user_id: user_id,
                account_id: &account.id,
                account_name: &account.name,
                role: &account.role,
                sealed_key: &sealed,
                key_masked: &key_masked,
                now,
            })
            .await?;
        tracing::info!(user_id, account_id = %account.id, key = %key_masked, "account linked");
        Ok(Linked {
            account,
            key_masked,
            previous_account_id: previous.map(|link| link.account_id),
        })
    }

    /// Removes the user's link and stored key, returning the removed link.
    pub async fn unlink(&self, user_id: u64) -> Result<Option<Link>, sqlx::Error> {
        let removed = self.db.delete_link(user_id).await?;
        if let Some(link) = &removed {
            tracing::info!(user_id, account_id = %link.account_id, "account unlinked");
        }
        Ok(removed)
    }

    /// Runs `call` with the user's decrypted key and keeps the link's status in step with
    /// Trackly's response: a 401 revokes the link, a 403 suspended marks it suspended, and a
    /// success refreshes it.
    pub async fn call<T, F, Fut>(
        &self,
        user_id: u64,
        call: F,
    ) -> Result<(Link, T), AccountCallError>
    where
        F: FnOnce(TracklyClient, ApiKey) -> Fut,
        Fut: Future<Output = Result<T, TracklyError>>,
    {
        let link = self
            .db
            .link(user_id)
            .await?
            .ok_or(AccountCallError::NotLinked)?;
        if link.status == LinkStatus::Revoked {
            return Err(AccountCallError::Revoked);
        }
        let plaintext = self
            .cipher
            .open(&link.sealed_key, user_id)
            .map_err(|error| {
                tracing::error!(user_id, account_id = %link.account_id, %error, "cannot decrypt the stored API key");
                AccountCallError::Undecryptable(error)
            })?;
        let key = ApiKey::parse(&plaintext).map_err(|error| {
            AccountCallError::Internal(anyhow::anyhow!("stored key has an invalid format: {error}"))
        })?;

        let now = Utc::now();
        match call(self.trackly.clone(), key).await {
            Ok(value) => {
                if link.status == LinkStatus::Suspended {
                    self.db
                        .set_link_status_for_key(user_id, &link.sealed_key, LinkStatus::Active, now)
                        .await?;
                    tracing::info!(user_id, account_id = %link.account_id, "account no longer suspended");
                }
                Ok((link, value))
            }
            Err(TracklyError::InvalidKey { code }) => {
                let newly_revoked = self
                    .db
                    .set_link_status_for_key(user_id, &link.sealed_key, LinkStatus::Revoked, now)
                    .await?;
                tracing::warn!(
                    user_id,
                    account_id = %link.account_id,
                    code = code.as_deref().unwrap_or("none"),
                    newly_revoked,
                    "trackly rejected the linked key; link revoked"
                );
                Err(AccountCallError::KeyRejected {
                    newly_revoked,
                    account_id: link.account_id,
                    account_name: link.account_name,
                })
            }
            Err(TracklyError::Suspended) => {
                if self
                    .db
                    .set_link_status_for_key(user_id, &link.sealed_key, LinkStatus::Suspended, now)
                    .await?
                {
                    tracing::warn!(user_id, account_id = %link.account_id, "account suspended");
                }
                Err(AccountCallError::Suspended)
            }
            Err(error) => Err(AccountCallError::Trackly(error)),
        }
    }

    /// Records fresh account details after a successful `GET /account` with `link`'s key.
    pub async fn refresh_account(&self, link: &Link, account: &Account) -> Result<(), sqlx::Error> {
        self.db
            .record_validation(
                link.discord_user_id,
                &link.sealed_key,
                &account.name,
                &account.role,
                Utc::now(),
            )
            .await
    }

    /// Checks that the configured encryption key opens a stored API key, so that a wrong key
    /// fails at start instead of on every user's next command.
    pub async fn check_encryption_key(&self) -> anyhow::Result<()> {
        let Some((user_id, sealed)) = self.db.any_sealed_key().await? else {
            return Ok(());
        };
        self.cipher.open(&sealed, user_id).map_err(|error| {
            anyhow::anyhow!(
                "{error}: TRACKLY_BOT_ENCRYPTION_KEY (key id {:?}) does not open the stored API keys; \
                 start with the key that sealed them",
                self.cipher.key_id()
            )
        })?;
        Ok(())
    }
}
