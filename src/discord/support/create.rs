//! Ticket creation: the thread, its member, the summary and the staff notification, and the
//! clean-up when Discord rejects one of those steps.

use chrono::Utc;
use poise::serenity_prelude as serenity;

use super::{post_plain, views, Data, MAX_ACTIVE_THREADS, MISSING_ACCESS, MISSING_PERMISSIONS};
use crate::config::SupportChannels;
use crate::discord::errors::{discord_error_code, BotError};
use crate::tickets::{NewTicketRequest, Ticket, TicketStatus};

/// A Discord step of ticket creation. Each names the channel whose permissions it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreationStep {
    CreateThread,
    AddRequester,
    PostSummary,
    NotifyStaff,
}

impl CreationStep {
    fn doing(self) -> &'static str {
        match self {
            CreationStep::CreateThread => "creating the ticket thread",
            CreationStep::AddRequester => "adding the requester to the ticket thread",
            CreationStep::PostSummary => "posting the ticket summary in the thread",
            CreationStep::NotifyStaff => "notifying staff of the ticket",
        }
    }

    /// Returns the permissions the bot needs for this step, as Discord names them.
    fn permissions(self) -> &'static str {
        match self {
            CreationStep::CreateThread | CreationStep::AddRequester => {
                "Create Private Threads, Send Messages in Threads and Manage Threads"
            }
            CreationStep::PostSummary => "Send Messages in Threads and Embed Links",
            CreationStep::NotifyStaff => "Send Messages and Embed Links",
        }
    }
}

/// The part of a creation failure that the user and staff see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CreationRefusal {
    pub user: String,
    pub staff: String,
}

/// Explains Discord's refusal of a creation step, for the error codes staff can fix.
/// `channel_id` is the channel the step needs: the support channel, or the staff channel for
/// the notification.
pub(super) fn creation_refusal(
    code: Option<isize>,
    step: CreationStep,
    channel_id: u64,
) -> Option<CreationRefusal> {
    let user_setup = "Support is not set up correctly on this server, so the ticket could not be \
                      opened. Staff have been told what to fix; try again later."
        .to_owned();
    let doing = step.doing();
    match code? {
        MAX_ACTIVE_THREADS => Some(CreationRefusal {
            user: "The support channel has reached Discord's limit of active threads, so the \
                   ticket could not be opened. Staff have been told; try again later."
                .to_owned(),
            staff: format!(
                "<#{channel_id}> has reached Discord's maximum number of active threads (error \
                 160006). Close or archive old ticket threads there."
            ),
        }),
        MISSING_ACCESS => Some(CreationRefusal {
            user: user_setup,
            staff: format!(
                "The bot cannot access <#{channel_id}> (error 50001, Missing Access) when \
                 {doing}. Give the bot View Channel there."
            ),
        }),
        MISSING_PERMISSIONS => Some(CreationRefusal {
            user: user_setup,
            staff: format!(
                "The bot lacks permissions in <#{channel_id}> (error 50013, Missing Permissions) \
                 when {doing}. Give it {} there.",
                step.permissions()
            ),
        }),
        _ => None,
    }
}

/// A failed creation step with Discord's error.
struct StepFailure {
    step: CreationStep,
    error: serenity::Error,
}

/// Discord objects that creation made so far, deleted when a later step fails.
#[derive(Default)]
struct Leftovers {
    thread_id: Option<serenity::ChannelId>,
    staff_message: Option<(serenity::ChannelId, serenity::MessageId)>,
}

/// Creates the ticket: reserves a number, creates the thread, adds the requester, posts the
/// summary, notifies staff and stores the ticket. Returns the reply text.
///
/// The ticket row is written last, so when Discord rejects any step the reservation is
/// marked failed, the thread and notification are deleted, and no ticket row exists. A
/// staff notification that fails for another reason than missing access or permissions
/// leaves the ticket open, and the reply tells the user that staff were not notified.
pub(super) async fn open_ticket(
    http: &serenity::Http,
    data: &Data,
    channels: &SupportChannels,
    request: &NewTicketRequest,
    guild_id: u64,
) -> Result<String, BotError> {
    let tickets = &data.tickets;
    let number = tickets
        .reserve(request.requester_id, Utc::now())
        .await
        .map_err(super::ticket_error)?;
    let label = tickets.label(number);

    let mut leftovers = Leftovers::default();
    let created = create_on_discord(
        http,
        data,
        channels,
        request,
        number,
        guild_id,
        &mut leftovers,
    )
    .await;
    let (preview, notified) = match created {
        Ok(created) => created,
        Err(failure) => {
            return Err(
                fail_creation(http, data, channels, request, number, leftovers, failure).await,
            )
        }
    };

    let staff_message = leftovers.staff_message;
    let stored = tickets
        .record_created(
            request,
            number,
            preview.thread_id,
            preview.summary_message_id,
            staff_message.map(|(channel, message)| (channel.get(), message.get())),
            preview.created_at,
        )
        .await;
    let ticket = match stored {
        Ok(ticket) => ticket,
        Err(error) => {
            tracing::error!(ticket = number, %error, "failed to store a new ticket; deleting its thread");
            record_failure(data, number, &format!("storing the ticket failed: {error}")).await;
            delete_leftovers(http, number, leftovers).await;
            return Err(super::ticket_error(error));
        }
    };
    tracing::info!(
        ticket = number,
        thread_id = ticket.thread_id,
        requester_id = ticket.requester_id,
        staff_notified = notified,
        "ticket opened"
    );

    let mut text = format!(
        "Ticket **{label}** is open: {}\nDescribe your problem there; staff will answer in the thread.",
        views::channel_link(guild_id, ticket.thread_id)
    );
    if !notified {
        text.push_str(
            "\nStaff could not be notified automatically, so it may take longer until someone answers.",
        );
    }
    Ok(text)
}

/// Runs the Discord steps of creation and returns the ticket as it will be stored and whether
/// staff were notified. `leftovers` collects what to delete if a step fails.
async fn create_on_discord(
    http: &serenity::Http,
    data: &Data,
    channels: &SupportChannels,
    request: &NewTicketRequest,
    number: u64,
    guild_id: u64,
    leftovers: &mut Leftovers,
) -> Result<(Ticket, bool), StepFailure> {
    let label = data.tickets.label(number);
    let name: String = format!("{label} {}", request.subject)
        .chars()
        .take(100)
        .collect();
    let builder = serenity::CreateThread::new(name)
        .kind(serenity::ChannelType::PrivateThread)
        .invitable(false);
    let thread = serenity::ChannelId::new(channels.channel_id)
        .create_thread(http, builder)
        .await
        .map_err(|error| StepFailure {
            step: CreationStep::CreateThread,
            error,
        })?;
    leftovers.thread_id = Some(thread.id);

    thread
        .id
        .add_thread_member(http, serenity::UserId::new(request.requester_id))
        .await
        .map_err(|error| StepFailure {
            step: CreationStep::AddRequester,
            error,
        })?;

    let now = Utc::now();
    let mut preview = Ticket {
        number,
        requester_id: request.requester_id,
        account_id: request.account_id.clone(),
        account_name: request.account_name.clone(),
        subject: request.subject.clone(),
        priority: request.priority,
        category: request.category,
        status: TicketStatus::Open,
        claimant_id: None,
        thread_id: thread.id.get(),
        summary_message_id: 0,
        staff_channel_id: None,
        staff_message_id: None,
        close_reason: None,
        closed_by_id: None,
        closed_by_staff: false,
        created_at: now,
        updated_at: now,
        closed_at: None,
    };
    let summary = thread
        .id
        .send_message(
            http,
            serenity::CreateMessage::new()
                .content(format!(
                    "<@{}>, describe your problem here. Staff will answer in this thread.",
                    request.requester_id
                ))
                .embed(views::summary_embed(&preview, &label).build())
                .components(views::ticket_buttons(&preview))
                .allowed_mentions(
                    serenity::CreateAllowedMentions::new()
                        .users([serenity::UserId::new(request.requester_id)]),
                ),
        )
        .await
        .map_err(|error| StepFailure {
            step: CreationStep::PostSummary,
            error,
        })?;
    preview.summary_message_id = summary.id.get();

    let role = serenity::RoleId::new(channels.staff_role_id);
    let staff_channel = serenity::ChannelId::new(channels.staff_channel_id);
    let notification = serenity::CreateMessage::new()
        .content(format!("<@&{}> New ticket {label}", channels.staff_role_id))
        .embed(views::staff_embed(&preview, &label, guild_id))
        .allowed_mentions(serenity::CreateAllowedMentions::new().roles([role]));
    match staff_channel.send_message(http, notification).await {
        Ok(message) => {
            leftovers.staff_message = Some((staff_channel, message.id));
            preview.staff_channel_id = Some(staff_channel.get());
            preview.staff_message_id = Some(message.id.get());
            Ok((preview, true))
        }
        Err(error) => {
            let code = discord_error_code(&error);
            if creation_refusal(code, CreationStep::NotifyStaff, staff_channel.get()).is_some() {
                return Err(StepFailure {
                    step: CreationStep::NotifyStaff,
                    error,
                });
            }
            tracing::error!(ticket = number, channel_id = channels.staff_channel_id, %error, "failed to notify staff of a new ticket");
            Ok((preview, false))
        }
    }
}

/// Cleans up after a failed step and returns the error for the user: a refusal staff can fix
/// gets a clear message and a staff notice, anything else is an internal error.
async fn fail_creation(
    http: &serenity::Http,
    data: &Data,
    channels: &SupportChannels,
    request: &NewTicketRequest,
    number: u64,
    leftovers: Leftovers,
    failure: StepFailure,
) -> BotError {
    let StepFailure { step, error } = failure;
    let code = discord_error_code(&error);
    tracing::warn!(ticket = number, ?step, ?code, %error, "ticket creation failed");
    record_failure(data, number, &format!("{} failed: {error}", step.doing())).await;
    delete_leftovers(http, number, leftovers).await;

    let needed_channel = match step {
        CreationStep::NotifyStaff => channels.staff_channel_id,
        _ => channels.channel_id,
    };
    let Some(refusal) = creation_refusal(code, step, needed_channel) else {
        return BotError::Internal(anyhow::Error::new(error).context(step.doing()));
    };
    let label = data.tickets.label(number);
    let staff_text = format!(
        "Ticket {label} for <@{}> could not be opened. {}",
        request.requester_id, refusal.staff
    );
    // The staff channel itself rejected the notification, so the notice goes to the staff log.
    let notice_channel = match step {
        CreationStep::NotifyStaff => channels.staff_log_channel_id,
        _ => channels.staff_channel_id,
    };
    post_plain(http, notice_channel, &staff_text).await;
    BotError::User(refusal.user)
}

async fn delete_leftovers(http: &serenity::Http, number: u64, leftovers: Leftovers) {
    if let Some((channel_id, message_id)) = leftovers.staff_message {
        if let Err(error) = channel_id.delete_message(http, message_id).await {
            tracing::error!(ticket = number, message_id = message_id.get(), %error, "failed to delete the staff notification of a failed ticket");
        }
    }
    if let Some(thread_id) = leftovers.thread_id {
        if let Err(error) = thread_id.delete(http).await {
            tracing::error!(ticket = number, thread_id = thread_id.get(), %error, "failed to delete the thread of a failed ticket");
        }
    }
}

async fn record_failure(data: &Data, number: u64, reason: &str) {
    if let Err(error) = data
        .tickets
        .record_failure(number, reason, Utc::now())
        .await
    {
        tracing::error!(ticket = number, %error, "failed to record a failed ticket creation");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_refusal_explains_known_codes() {
        let full =
            creation_refusal(Some(MAX_ACTIVE_THREADS), CreationStep::CreateThread, 42).unwrap();
        assert!(
            full.user.contains("limit of active threads"),
            "{}",
            full.user
        );
        assert!(full.staff.contains("<#42>"), "{}", full.staff);
        assert!(full.staff.contains("160006"), "{}", full.staff);

        let access =
            creation_refusal(Some(MISSING_ACCESS), CreationStep::AddRequester, 42).unwrap();
        assert!(access.staff.contains("View Channel"), "{}", access.staff);
        assert!(
            access.staff.contains("adding the requester"),
            "{}",
            access.staff
        );
        let permissions =
            creation_refusal(Some(MISSING_PERMISSIONS), CreationStep::CreateThread, 42).unwrap();
        assert!(
            permissions.staff.contains("Create Private Threads"),
            "{}",
            permissions.staff
        );
        assert_eq!(access.user, permissions.user);
        let staff =
            creation_refusal(Some(MISSING_PERMISSIONS), CreationStep::NotifyStaff, 7).unwrap();
        assert!(staff.staff.contains("<#7>"), "{}", staff.staff);
        assert!(staff.staff.contains("Embed Links"), "{}", staff.staff);

        assert_eq!(
            creation_refusal(Some(50035), CreationStep::PostSummary, 42),
            None
        );
        assert_eq!(creation_refusal(None, CreationStep::CreateThread, 42), None);
    }
}
