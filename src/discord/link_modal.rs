//! The modal that asks for an API key, so the key never appears in a channel or in the
//! command's options.
//!
//! The submission is handled from the gateway event by its custom id instead of by a collector,
//! so a form submitted after a bot restart is still linked.

use poise::serenity_prelude as serenity;

use super::errors::BotError;
use super::{sms, Data};

pub const CUSTOM_ID: &str = "trackly-link-modal";
const KEY_FIELD_ID: &str = "api_key";

/// Responds to `interaction` with the API-key modal.
pub async fn open(
    ctx: &serenity::Context,
    interaction: &serenity::CommandInteraction,
) -> Result<(), BotError> {
    let input = serenity::CreateInputText::new(
        serenity::InputTextStyle::Short,
        "Trackly API key",
        KEY_FIELD_ID,
    )
    .placeholder("trk_ followed by 32 letters or digits")
    .min_length(1)
    .max_length(200)
    .required(true);
    let modal = serenity::CreateModal::new(CUSTOM_ID, "Link your Trackly account")
        .components(vec![serenity::CreateActionRow::InputText(input)]);
    interaction
        .create_response(ctx, serenity::CreateInteractionResponse::Modal(modal))
        .await?;
    Ok(())
}

/// Returns the value of the text input `custom_id` in a modal submission.
fn field_value<'a>(modal: &'a serenity::ModalInteraction, custom_id: &str) -> Option<&'a str> {
    modal
        .data
        .components
        .iter()
        .flat_map(|row| row.components.iter())
        .find_map(|component| match component {
            serenity::ActionRowComponent::InputText(input) if input.custom_id == custom_id => {
                input.value.as_deref()
            }
            _ => None,
        })
}

/// Links the key from a submitted modal. Defers ephemerally first, because validating the key
/// calls Trackly and Discord expects a response within 3 seconds.
pub async fn handle_submit(
    ctx: &serenity::Context,
    data: &Data,
    modal: &serenity::ModalInteraction,
) {
    let user_id = modal.user.id.get();
    let interaction_id = modal.id.get();
    tracing::info!(user_id, interaction_id, "link form submitted");

    let defer = serenity::CreateInteractionResponse::Defer(
        serenity::CreateInteractionResponseMessage::new().ephemeral(true),
    );
    if let Err(error) = modal.create_response(ctx, defer).await {
        tracing::warn!(user_id, interaction_id, %error, "failed to acknowledge the link form");
        return;
    }

    let result = match field_value(modal, KEY_FIELD_ID) {
        Some(raw_key) => sms::perform_link(data, user_id, raw_key).await,
        None => Err(BotError::User(
            "The form arrived without an API key. Run `/sms link` again and paste the key."
                .to_owned(),
        )),
    };
    let text = match result {
        Ok(text) => text,
        Err(BotError::User(text)) => text,
        Err(BotError::Ignore(reason)) => {
            tracing::debug!(user_id, interaction_id, %reason, "link form error ignored");
            return;
        }
        Err(BotError::Internal(error)) => {
            tracing::error!(
                user_id,
                interaction_id,
                error = format!("{error:#}"),
                "link from the form failed"
            );
            format!(
                "Something went wrong on our side, and it has been logged (reference `{interaction_id}`). \
                 Try again; if it keeps happening, open a support ticket with that reference."
            )
        }
    };

    let followup = serenity::CreateInteractionResponseFollowup::new()
        .content(text)
        .ephemeral(true);
    if let Err(error) = modal.create_followup(ctx, followup).await {
        tracing::warn!(user_id, interaction_id, %error, "failed to send the link form result");
    }
}
