//! `/support`: tickets as private threads under the support channel, a staff notification,
//! claim, close with a transcript, reopen, and the buttons on those messages.

mod create;
mod text;
mod views;

use chrono::Utc;
use poise::serenity_prelude as serenity;
use poise::CreateReply;

use super::errors::{discord_error_code, not_linked_message, BotError};
use super::notify::CANNOT_MESSAGE_USER;
use super::{Context, Data};
use crate::config::SupportChannels;
use crate::tickets::{
    format_transcript, parse_ticket_number, validate_subject, Action, Actor, Category, ClaimIntent,
    ClaimOutcome, Denied, NewTicketRequest, Priority, Ticket, TicketError, TicketLocator,
    TranscriptAttachment, TranscriptMessage,
};
pub use views::CUSTOM_ID_PREFIX;
use views::{ComponentAction, StatusFilter};

/// Discord's JSON error codes that ticket creation turns into advice for staff.
const MISSING_ACCESS: isize = 50001;
const MISSING_PERMISSIONS: isize = 50013;
const MAX_ACTIVE_THREADS: isize = 160006;
/// Discord's JSON error code for a channel or thread that does not exist (any more).
const UNKNOWN_CHANNEL: isize = 10003;

/// Messages a transcript reads at most. Discord returns 100 per request, so this is at most
/// 50 requests.
const MAX_TRANSCRIPT_MESSAGES: usize = 5_000;

/// Support tickets: ask staff for help in a private thread
#[poise::command(
    slash_command,
    guild_only,
    subcommands("new", "list", "view", "close", "reopen", "claim"),
    subcommand_required
)]
pub async fn support(_ctx: Context<'_>) -> Result<(), BotError> {
    Ok(())
}

#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
enum PriorityChoice {
    #[name = "low"]
    Low,
    #[name = "normal"]
    Normal,
    #[name = "high"]
    High,
    #[name = "urgent"]
    Urgent,
}

impl From<PriorityChoice> for Priority {
    fn from(choice: PriorityChoice) -> Self {
        match choice {
            PriorityChoice::Low => Priority::Low,
            PriorityChoice::Normal => Priority::Normal,
            PriorityChoice::High => Priority::High,
            PriorityChoice::Urgent => Priority::Urgent,
        }
    }
}

#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
enum CategoryChoice {
    #[name = "general"]
    General,
    #[name = "billing"]
    Billing,
    #[name = "technical"]
    Technical,
    #[name = "api"]
    Api,
}

impl From<CategoryChoice> for Category {
    fn from(choice: CategoryChoice) -> Self {
        match choice {
            CategoryChoice::General => Category::General,
            CategoryChoice::Billing => Category::Billing,
            CategoryChoice::Technical => Category::Technical,
            CategoryChoice::Api => Category::Api,
        }
    }
}

#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
enum StatusChoice {
    #[name = "open"]
    Open,
    #[name = "closed"]
    Closed,
    #[name = "all"]
    All,
}

impl From<StatusChoice> for StatusFilter {
    fn from(choice: StatusChoice) -> Self {
        match choice {
            StatusChoice::Open => StatusFilter::Open,
            StatusChoice::Closed => StatusFilter::Closed,
            StatusChoice::All => StatusFilter::All,
        }
    }
}

/// Returns the support ids, or the message that support is not configured.
fn support_channels(data: &Data) -> Result<SupportChannels, BotError> {
    data.config.support.channels().ok_or_else(|| {
        BotError::User(
            "Support tickets are not configured on this server yet. Ask a server admin to set \
             `channel_id`, `staff_channel_id`, `staff_log_channel_id` and `staff_role_id` in the \
             `[support]` section of the bot's configuration."
                .to_owned(),
        )
    })
}

fn is_staff(member: Option<&serenity::Member>, staff_role_id: u64) -> bool {
    member.is_some_and(|member| member.roles.iter().any(|role| role.get() == staff_role_id))
}

fn command_actor(ctx: Context<'_>, channels: &SupportChannels) -> Actor {
    let member = match ctx {
        poise::Context::Application(app) => app.interaction.member.as_deref(),
        poise::Context::Prefix(_) => None,
    };
    Actor {
        user_id: ctx.author().id.get(),
        is_staff: is_staff(member, channels.staff_role_id),
    }
}

fn guild_id_of(ctx: Context<'_>, data: &Data) -> u64 {
    ctx.guild_id()
        .map(|id| id.get())
        .or(data.config.guild.id)
        .unwrap_or_default()
}

fn ticket_error(error: TicketError) -> BotError {
    match error.user_message() {
        Some(text) => BotError::User(text),
        None => BotError::Internal(anyhow::Error::new(error).context("ticket storage")),
    }
}

fn locator(ctx: Context<'_>, data: &Data, number: Option<&str>) -> Result<TicketLocator, BotError> {
    match number {
        Some(text) => parse_ticket_number(text, &data.config.support.number_prefix)
            .map(TicketLocator::Number)
            .map_err(BotError::User),
        None => Ok(TicketLocator::Thread(ctx.channel_id().get())),
    }
}

async fn reply(ctx: Context<'_>, text: String) -> Result<(), BotError> {
    ctx.send(CreateReply::default().content(text).ephemeral(true))
        .await?;
    Ok(())
}

/// Open a support ticket: a private thread where staff reply to you
#[poise::command(slash_command, rename = "new")]
async fn new(
    ctx: Context<'_>,
    #[description = "What you need help with, 1 to 100 characters"]
    #[max_length = 200]
    subject: String,
    #[description = "How urgent it is (default: normal)"] priority: Option<PriorityChoice>,
    #[description = "What it is about (default: general)"] category: Option<CategoryChoice>,
) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let channels = support_channels(data)?;
    let subject = validate_subject(&subject).map_err(BotError::User)?;
    let user_id = ctx.author().id.get();
    let link = data
        .links
        .db()
        .link(user_id)
        .await?
        .ok_or_else(|| BotError::User(not_linked_message()))?;

    let request = NewTicketRequest {
        requester_id: user_id,
        account_id: link.account_id,
        account_name: link.account_name,
        subject,
        priority: priority.map_or(Priority::Normal, Priority::from),
        category: category.map_or(Category::General, Category::from),
    };
    let guild_id = guild_id_of(ctx, data);
    let text = create::open_ticket(ctx.http(), data, &channels, &request, guild_id).await?;
    reply(ctx, text).await
}

/// Posts a message without mentions; failures are logged, because it is a courtesy.
async fn post_plain(http: &serenity::Http, channel_id: u64, text: &str) {
    let message = serenity::CreateMessage::new()
        .content(text::clip(text, text::MAX_CONTENT))
        .allowed_mentions(serenity::CreateAllowedMentions::new());
    if let Err(error) = serenity::ChannelId::new(channel_id)
        .send_message(http, message)
        .await
    {
        tracing::error!(channel_id, %error, "failed to post a support message");
    }
}

/// List tickets: yours, or for staff all of them
#[poise::command(slash_command)]
async fn list(
    ctx: Context<'_>,
    #[description = "Which tickets to show (default: open)"] status: Option<StatusChoice>,
    #[description = "Staff only: show one Trackly account's tickets, such as acc_8f2k1q"]
    #[max_length = 64]
    account: Option<String>,
) -> Result<(), BotError> {
    let data = ctx.data();
    let channels = support_channels(data)?;
    let actor = command_actor(ctx, &channels);
    let status: StatusFilter = status.map_or(StatusFilter::Open, StatusFilter::from);
    let account = account
        .map(|account| account.trim().to_owned())
        .filter(|account| !account.is_empty());

    let (embed, components) = list_page(data, actor, status, account.as_deref(), 0).await?;
    ctx.send(
        CreateReply::default()
            .embed(embed)
            .components(components)
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

async fn list_page(
    data: &Data,
    actor: Actor,
    status: StatusFilter,
    account_id: Option<&str>,
    page: u32,
) -> Result<(serenity::CreateEmbed, Vec<serenity::CreateActionRow>), BotError> {
    let page = data
        .tickets
        .list(actor, status.status(), account_id, page)
        .await
        .map_err(ticket_error)?;
    Ok(views::list_view(
        &page,
        &data.config.support.number_prefix,
        status,
        account_id,
        actor.is_staff,
    ))
}

/// Show a ticket (inside its thread, or by number)
#[poise::command(slash_command)]
async fn view(
    ctx: Context<'_>,
    #[description = "Ticket number, such as T-1042; leave empty inside a ticket thread"]
    #[max_length = 32]
    number: Option<String>,
) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let channels = support_channels(data)?;
    let actor = command_actor(ctx, &channels);
    let locator = locator(ctx, data, number.as_deref())?;
    let ticket = data
        .tickets
        .find(actor, locator, Action::View)
        .await
        .map_err(ticket_error)?;
    // Viewing reads the database only, so an archived or deleted thread does not matter here.
    let label = data.tickets.label(ticket.number);
    let guild_id = guild_id_of(ctx, data);
    let mut embed = views::summary_embed(&ticket, &label)
        .field(
            "Thread",
            views::channel_link(guild_id, ticket.thread_id),
            false,
        )
        .field(
            "Opened",
            format!("<t:{}:f>", ticket.created_at.timestamp()),
            true,
        );
    if let Some(closed_at) = ticket.closed_at {
        embed = embed.field("Closed", format!("<t:{}:f>", closed_at.timestamp()), true);
    }
    if let Some(reason) = &ticket.close_reason {
        embed = embed.field("Close reason", text::escape_markdown(reason), false);
    }
    ctx.send(CreateReply::default().embed(embed.build()).ephemeral(true))
        .await?;
    Ok(())
}

/// Close a ticket: the transcript goes to staff and to the requester by DM
#[poise::command(slash_command)]
async fn close(
    ctx: Context<'_>,
    #[description = "Why the ticket is closed"]
    #[max_length = 500]
    reason: Option<String>,
    #[description = "Ticket number, such as T-1042; leave empty inside a ticket thread"]
    #[max_length = 32]
    number: Option<String>,
) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let channels = support_channels(data)?;
    let actor = command_actor(ctx, &channels);
    let locator = locator(ctx, data, number.as_deref())?;
    let reason = reason
        .map(|reason| reason.trim().to_owned())
        .filter(|reason| !reason.is_empty());
    let guild_id = guild_id_of(ctx, data);
    let text = close_ticket(
        ctx.http(),
        data,
        &channels,
        actor,
        locator,
        reason.as_deref(),
        guild_id,
    )
    .await?;
    reply(ctx, text).await
}

/// Closes the ticket, posts the transcript to the staff log and the requester, then archives
/// and locks the thread. Returns the reply text.
///
/// The database is closed first and conditionally, so of two concurrent closes only one goes
/// on to the Discord steps. A thread that was deleted (Discord 10003) skips the thread steps.
async fn close_ticket(
    http: &serenity::Http,
    data: &Data,
    channels: &SupportChannels,
    actor: Actor,
    locator: TicketLocator,
    reason: Option<&str>,
    guild_id: u64,
) -> Result<String, BotError> {
    let tickets = &data.tickets;
    let ticket = tickets
        .find(actor, locator, Action::Close)
        .await
        .map_err(ticket_error)?;
    let ticket = tickets
        .close(actor, &ticket, reason, Utc::now())
        .await
        .map_err(ticket_error)?;
    let label = tickets.label(ticket.number);
    let thread = serenity::ChannelId::new(ticket.thread_id);
    tracing::info!(
        ticket = ticket.number,
        closed_by = actor.user_id,
        by_staff = ticket.closed_by_staff,
        "ticket closed"
    );

    let mut notes = Vec::new();
    // Messages in an archived thread cannot be edited, so unarchive before the close steps.
    match ensure_unarchived(http, ticket.thread_id).await {
        Ok(ThreadState::Gone) => {
            refresh_staff_message(http, data, &ticket, guild_id).await;
            return Ok(close_without_thread(http, data, channels, &ticket, actor).await);
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(ticket = ticket.number, thread_id = ticket.thread_id, %error, "failed to unarchive the ticket thread before closing");
        }
    }

    let closing = match reason {
        Some(reason) => format!(
            "Ticket closed by <@{}>: {}",
            actor.user_id,
            text::escape_markdown(reason)
        ),
        None => format!("Ticket closed by <@{}>.", actor.user_id),
    };
    post_plain(http, ticket.thread_id, &closing).await;
    refresh_summary(http, data, &ticket).await;
    refresh_staff_message(http, data, &ticket, guild_id).await;

    let transcript = match thread_history(http, thread).await {
        Ok(messages) => Some(format_transcript(
            &ticket,
            &data.config.support.number_prefix,
            &messages,
        )),
        Err(error) if discord_error_code(&error) == Some(UNKNOWN_CHANNEL) => {
            tracing::warn!(
                ticket = ticket.number,
                thread_id = ticket.thread_id,
                "ticket thread deleted while closing"
            );
            return Ok(close_without_thread(http, data, channels, &ticket, actor).await);
        }
        Err(error) => {
            tracing::error!(ticket = ticket.number, %error, "failed to read the thread for the transcript");
            notes.push(
                "The transcript could not be read from the thread, so none was sent.".to_owned(),
            );
            None
        }
    };

    if let Some(transcript) = transcript {
        let filename = format!("ticket-{label}.txt");
        let content = format!(
            "Transcript of ticket {label} ({}), account {}, closed by <@{}>.",
            text::escape_clip(&ticket.subject, 220),
            staff_account_text(&ticket),
            actor.user_id
        );
        let staff_post = serenity::ChannelId::new(channels.staff_log_channel_id)
            .send_message(
                http,
                serenity::CreateMessage::new()
                    .content(text::clip(&content, text::MAX_CONTENT))
                    .allowed_mentions(serenity::CreateAllowedMentions::new())
                    .add_file(serenity::CreateAttachment::bytes(
                        transcript.clone().into_bytes(),
                        filename.clone(),
                    )),
            )
            .await;
        match staff_post {
            Ok(_) => notes.push("The transcript was posted to the staff log.".to_owned()),
            Err(error) => {
                tracing::error!(ticket = ticket.number, channel_id = channels.staff_log_channel_id, %error, "failed to post the transcript to the staff log");
                notes.push("The transcript could not be posted to the staff log.".to_owned());
            }
        }
        notes.push(dm_transcript(http, &ticket, &label, transcript, filename).await);
    }

    let locked = thread
        .edit_thread(
            http,
            serenity::EditThread::new().archived(true).locked(true),
        )
        .await;
    if let Err(error) = locked {
        tracing::error!(ticket = ticket.number, thread_id = ticket.thread_id, %error, "failed to archive and lock the ticket thread");
        notes.push("The thread could not be archived; staff can archive it by hand.".to_owned());
    }
    Ok(format!("Ticket **{label}** is closed. {}", notes.join(" ")))
}

/// Returns the account as the staff log shows it: escaped name and the id as inline code.
fn staff_account_text(ticket: &Ticket) -> String {
    format!(
        "{} ({})",
        text::escape_clip(&ticket.account_name, 100),
        text::code_span(&ticket.account_id, 64)
    )
}

/// Finishes closing a ticket whose thread was deleted: there is nothing to archive and no
/// history for a transcript, so staff get a note in the staff log instead. Returns the reply.
async fn close_without_thread(
    http: &serenity::Http,
    data: &Data,
    channels: &SupportChannels,
    ticket: &Ticket,
    actor: Actor,
) -> String {
    let label = data.tickets.label(ticket.number);
    tracing::warn!(
        ticket = ticket.number,
        thread_id = ticket.thread_id,
        "ticket closed without its thread, which was deleted"
    );
    let note = format!(
        "Ticket {label} ({}), account {}, was closed by <@{}>. Its thread had been deleted, so \
         there is no transcript.",
        text::escape_clip(&ticket.subject, 220),
        staff_account_text(ticket),
        actor.user_id
    );
    post_plain(http, channels.staff_log_channel_id, &note).await;
    format!(
        "Ticket **{label}** is closed. Its thread no longer exists on Discord (it was deleted), \
         so no transcript could be made."
    )
}

/// Sends the transcript to the requester by DM and returns a sentence for the reply.
async fn dm_transcript(
    http: &serenity::Http,
    ticket: &Ticket,
    label: &str,
    transcript: String,
    filename: String,
) -> String {
    let user = serenity::UserId::new(ticket.requester_id);
    let sent = async {
        let channel = user.create_dm_channel(http).await?;
        channel
            .id
            .send_message(
                http,
                serenity::CreateMessage::new()
                    .content(format!(
                        "Your support ticket {label} ({}) is closed. The transcript is attached.",
                        text::escape_clip(&ticket.subject, 220)
                    ))
                    .add_file(serenity::CreateAttachment::bytes(
                        transcript.into_bytes(),
                        filename,
                    )),
            )
            .await
    }
    .await;
    match sent {
        Ok(_) => "The requester received the transcript by DM.".to_owned(),
        Err(error) if discord_error_code(&error) == Some(CANNOT_MESSAGE_USER) => {
            tracing::warn!(
                ticket = ticket.number,
                user_id = ticket.requester_id,
                "transcript DM rejected: the user does not accept DMs from the bot"
            );
            "The requester does not accept DMs from the bot, so they did not receive the transcript.".to_owned()
        }
        Err(error) => {
            tracing::error!(ticket = ticket.number, user_id = ticket.requester_id, %error, "failed to send the transcript by DM");
            "The transcript could not be sent to the requester by DM.".to_owned()
        }
    }
}

/// Reads every message of a thread, oldest first, up to `MAX_TRANSCRIPT_MESSAGES`.
///
/// NOTE: Discord returns the content of other users' messages only when the application has
/// the Message Content intent enabled in the developer portal. Without it, transcripts show
/// authors, times and attachments, but empty text.
async fn thread_history(
    http: &serenity::Http,
    thread: serenity::ChannelId,
) -> Result<Vec<TranscriptMessage>, serenity::Error> {
    let mut messages: Vec<serenity::Message> = Vec::new();
    let mut before: Option<serenity::MessageId> = None;
    loop {
        let mut request = serenity::GetMessages::new().limit(100);
        if let Some(before) = before {
            request = request.before(before);
        }
        // Discord returns each page newest first.
        let page = thread.messages(http, request).await?;
        let full = page.len() == 100;
        before = page.last().map(|message| message.id);
        messages.extend(page);
        if !full || messages.len() >= MAX_TRANSCRIPT_MESSAGES {
            break;
        }
    }
    messages.reverse();
    Ok(messages.iter().map(transcript_message).collect())
}

fn transcript_message(message: &serenity::Message) -> TranscriptMessage {
    let embeds = message
        .embeds
        .iter()
        .map(|embed| {
            [embed.title.as_deref(), embed.description.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|text| !text.is_empty())
        .collect();
    TranscriptMessage {
        author_name: message.author.name.clone(),
        author_id: message.author.id.get(),
        sent_at: *message.timestamp,
        content: message.content.clone(),
        embeds,
        attachments: message
            .attachments
            .iter()
            .map(|attachment| TranscriptAttachment {
                filename: attachment.filename.clone(),
                url: attachment.url.clone(),
            })
            .collect(),
    }
}

/// Reopen a closed ticket
#[poise::command(slash_command)]
async fn reopen(
    ctx: Context<'_>,
    #[description = "Ticket number, such as T-1042; leave empty inside a ticket thread"]
    #[max_length = 32]
    number: Option<String>,
) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let channels = support_channels(data)?;
    let actor = command_actor(ctx, &channels);
    let locator = locator(ctx, data, number.as_deref())?;
    let guild_id = guild_id_of(ctx, data);
    let text = reopen_ticket(ctx.http(), data, actor, locator, guild_id).await?;
    reply(ctx, text).await
}

/// Reopens a ticket: unarchives and unlocks its thread first, then reopens it in the
/// database, so a Discord failure never leaves an open ticket with an archived thread. When
/// the database rejects the reopen after the thread was opened (a concurrent change), the
/// thread is archived and locked again. Returns the reply text.
async fn reopen_ticket(
    http: &serenity::Http,
    data: &Data,
    actor: Actor,
    locator: TicketLocator,
    guild_id: u64,
) -> Result<String, BotError> {
    let tickets = &data.tickets;
    let ticket = tickets
        .find(actor, locator, Action::Reopen)
        .await
        .map_err(ticket_error)?;
    tickets
        .check_reopen(actor, &ticket, Utc::now())
        .await
        .map_err(ticket_error)?;
    let label = tickets.label(ticket.number);

    let thread = serenity::ChannelId::new(ticket.thread_id);
    let opened = thread
        .edit_thread(
            http,
            serenity::EditThread::new().archived(false).locked(false),
        )
        .await;
    match opened {
        Ok(_) => {}
        Err(error) if discord_error_code(&error) == Some(UNKNOWN_CHANNEL) => {
            tracing::warn!(
                ticket = ticket.number,
                thread_id = ticket.thread_id,
                "cannot reopen a ticket whose thread was deleted"
            );
            return Err(BotError::User(format!(
                "Ticket {label} cannot be reopened because its thread was deleted on Discord. \
                 Open a new ticket with `/support new`."
            )));
        }
        Err(error)
            if matches!(
                discord_error_code(&error),
                Some(MISSING_ACCESS | MISSING_PERMISSIONS)
            ) =>
        {
            tracing::warn!(ticket = ticket.number, thread_id = ticket.thread_id, %error, "Discord rejected unarchiving the ticket thread");
            return Err(BotError::User(format!(
                "Ticket {label} stays closed: Discord did not let the bot unarchive its thread \
                 (missing access or permissions). Ask a server admin to give the bot View \
                 Channel and Manage Threads in the support channel, then try again."
            )));
        }
        Err(error) => {
            return Err(BotError::Internal(
                anyhow::Error::new(error).context("unarchiving the ticket thread to reopen it"),
            ))
        }
    }

    let reopened = match tickets.reopen(actor, &ticket, Utc::now()).await {
        Ok(reopened) => reopened,
        Err(error) => {
            // Only a ticket that is still closed gets its thread archived again; a concurrent
            // reopen that won keeps the thread open.
            let still_closed = !matches!(
                error,
                TicketError::Denied {
                    denied: Denied::AlreadyOpen,
                    ..
                }
            );
            if still_closed {
                let relocked = thread
                    .edit_thread(
                        http,
                        serenity::EditThread::new().archived(true).locked(true),
                    )
                    .await;
                if let Err(relock_error) = relocked {
                    tracing::error!(ticket = ticket.number, thread_id = ticket.thread_id, %relock_error, "failed to archive the thread again after a rejected reopen");
                }
            }
            return Err(ticket_error(error));
        }
    };
    let ticket = reopened.ticket;
    tracing::info!(
        ticket = ticket.number,
        reopened_by = actor.user_id,
        over_limit = reopened.over_limit,
        "ticket reopened"
    );

    post_plain(
        http,
        ticket.thread_id,
        &format!("Ticket reopened by <@{}>.", actor.user_id),
    )
    .await;
    refresh_summary(http, data, &ticket).await;
    refresh_staff_message(http, data, &ticket, guild_id).await;
    let mut text = format!(
        "Ticket **{label}** is open again: {}",
        views::channel_link(guild_id, ticket.thread_id)
    );
    if let Some(open) = reopened.over_limit {
        text.push_str(&format!(
            "\nThe requester now has {open} open tickets, more than the limit of {}. Staff may \
             reopen beyond the limit; the requester cannot open new tickets until some are closed.",
            data.config.support.max_open_per_user
        ));
    }
    Ok(text)
}

/// Staff only: take the ticket in this thread
#[poise::command(slash_command)]
async fn claim(ctx: Context<'_>) -> Result<(), BotError> {
    ctx.defer_ephemeral().await?;
    let data = ctx.data();
    let channels = support_channels(data)?;
    let actor = command_actor(ctx, &channels);
    let thread_id = ctx.channel_id().get();
    if data
        .tickets
        .db()
        .ticket_by_thread(thread_id)
        .await?
        .is_none()
    {
        return Err(BotError::User(
            "This channel is not a ticket thread. Run `/support claim` inside the thread of the \
             ticket you want to take."
                .to_owned(),
        ));
    }
    let locator = TicketLocator::Thread(thread_id);
    let guild_id = guild_id_of(ctx, data);
    let claimed = claim_ticket(data, actor, locator, ClaimIntent::Claim).await?;
    let reply = claimed.reply.clone();
    if let Some(ticket) = &claimed.changed {
        publish_claim(ctx.http(), data, ticket, actor, claimed.previous, guild_id).await;
    }
    ctx.send(reply.reply()).await?;
    Ok(())
}

/// The reply to a claim attempt.
#[derive(Debug, Clone)]
enum ClaimReply {
    Text(String),
    /// Another staff member has claimed the ticket, so ask before taking it over.
    Confirm {
        text: String,
        number: u64,
        holder: u64,
    },
}

impl ClaimReply {
    fn text(&self) -> &str {
        match self {
            ClaimReply::Text(text) | ClaimReply::Confirm { text, .. } => text,
        }
    }

    fn components(&self) -> Vec<serenity::CreateActionRow> {
        match self {
            ClaimReply::Text(_) => Vec::new(),
            ClaimReply::Confirm { number, holder, .. } => {
                views::claim_confirmation_buttons(*number, *holder)
            }
        }
    }

    fn reply(&self) -> CreateReply {
        CreateReply::default()
            .content(self.text())
            .components(self.components())
            .ephemeral(true)
    }

    fn followup(&self) -> serenity::CreateInteractionResponseFollowup {
        serenity::CreateInteractionResponseFollowup::new()
            .ephemeral(true)
            .content(self.text())
            .components(self.components())
    }
}

/// The result of a claim: the reply, and when the claimant changed, the stored ticket and the
/// previous claimant, whose embeds and thread still need updating.
struct Claimed {
    reply: ClaimReply,
    changed: Option<Ticket>,
    previous: Option<u64>,
}

/// Claims a ticket in the database; no Discord request is made, so this is quick enough to
/// run before an interaction's first response.
async fn claim_ticket(
    data: &Data,
    actor: Actor,
    locator: TicketLocator,
    intent: ClaimIntent,
) -> Result<Claimed, BotError> {
    let tickets = &data.tickets;
    let ticket = tickets
        .find(actor, locator, Action::Claim)
        .await
        .map_err(ticket_error)?;
    let label = tickets.label(ticket.number);
    let outcome = tickets
        .claim(actor, &ticket, intent, Utc::now())
        .await
        .map_err(ticket_error)?;
    let unchanged = |reply| Claimed {
        reply,
        changed: None,
        previous: None,
    };
    Ok(match outcome {
        ClaimOutcome::AlreadyYours => unchanged(ClaimReply::Text(format!(
            "You already hold ticket **{label}**."
        ))),
        ClaimOutcome::NeedsConfirmation { holder } => unchanged(ClaimReply::Confirm {
            text: format!("Ticket **{label}** is held by <@{holder}>. Take it over?"),
            number: ticket.number,
            holder,
        }),
        ClaimOutcome::HolderChanged { expected, holder } => {
            let now = match holder {
                Some(holder) => format!("it is now held by <@{holder}>"),
                None => "nobody holds it now".to_owned(),
            };
            unchanged(ClaimReply::Text(format!(
                "Ticket **{label}** was not changed: you confirmed taking it over from \
                 <@{expected}>, but {now}. Click Claim on the ticket again if you still want it."
            )))
        }
        ClaimOutcome::Claimed { ticket, previous } => {
            tracing::info!(
                ticket = ticket.number,
                claimant_id = actor.user_id,
                previous_claimant = previous,
                "ticket claimed"
            );
            Claimed {
                reply: ClaimReply::Text(format!("You now hold ticket **{label}**.")),
                changed: Some(*ticket),
                previous,
            }
        }
    })
}

/// Shows a new claimant: unarchives the thread if Discord auto-archived it, edits the summary
/// and the staff notification, and announces the claim in the thread. Failures are logged.
async fn publish_claim(
    http: &serenity::Http,
    data: &Data,
    ticket: &Ticket,
    actor: Actor,
    previous: Option<u64>,
    guild_id: u64,
) {
    refresh_staff_message(http, data, ticket, guild_id).await;
    match ensure_unarchived(http, ticket.thread_id).await {
        Ok(ThreadState::Gone) => {
            tracing::warn!(
                ticket = ticket.number,
                thread_id = ticket.thread_id,
                "claimed a ticket whose thread was deleted"
            );
            return;
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(ticket = ticket.number, thread_id = ticket.thread_id, %error, "failed to unarchive the ticket thread for a claim");
        }
    }
    refresh_summary(http, data, ticket).await;
    let announcement = match previous {
        Some(previous) => format!(
            "<@{}> took over this ticket from <@{previous}>.",
            actor.user_id
        ),
        None => format!("<@{}> has claimed this ticket.", actor.user_id),
    };
    post_plain(http, ticket.thread_id, &announcement).await;
}

/// Edits the summary embed and buttons in the thread to match the stored ticket.
async fn refresh_summary(http: &serenity::Http, data: &Data, ticket: &Ticket) {
    let label = data.tickets.label(ticket.number);
    let edit = serenity::EditMessage::new()
        .embed(views::summary_embed(ticket, &label).build())
        .components(views::ticket_buttons(ticket));
    if let Err(error) = serenity::ChannelId::new(ticket.thread_id)
        .edit_message(
            http,
            serenity::MessageId::new(ticket.summary_message_id),
            edit,
        )
        .await
    {
        tracing::error!(ticket = ticket.number, %error, "failed to update the ticket summary");
    }
}

/// Edits the staff notification to match the stored ticket.
async fn refresh_staff_message(http: &serenity::Http, data: &Data, ticket: &Ticket, guild_id: u64) {
    let (Some(channel_id), Some(message_id)) = (ticket.staff_channel_id, ticket.staff_message_id)
    else {
        return;
    };
    let label = data.tickets.label(ticket.number);
    let edit = serenity::EditMessage::new().embed(views::staff_embed(ticket, &label, guild_id));
    if let Err(error) = serenity::ChannelId::new(channel_id)
        .edit_message(http, serenity::MessageId::new(message_id), edit)
        .await
    {
        tracing::error!(ticket = ticket.number, %error, "failed to update the staff notification");
    }
}

/// A ticket thread as Discord reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThreadState {
    Active,
    /// The thread was archived and this call unarchived it.
    Unarchived,
    /// Discord returns 10003 Unknown Channel because someone deleted the thread.
    Gone,
}

/// Unarchives a thread that Discord auto-archived, so messages in it can be sent and edited.
async fn ensure_unarchived(
    http: &serenity::Http,
    thread_id: u64,
) -> Result<ThreadState, serenity::Error> {
    let thread = serenity::ChannelId::new(thread_id);
    let channel = match thread.to_channel(http).await {
        Ok(channel) => channel,
        Err(error) if discord_error_code(&error) == Some(UNKNOWN_CHANNEL) => {
            return Ok(ThreadState::Gone)
        }
        Err(error) => return Err(error),
    };
    let archived = match channel {
        serenity::Channel::Guild(channel) => channel
            .thread_metadata
            .is_some_and(|metadata| metadata.archived),
        _ => false,
    };
    if !archived {
        return Ok(ThreadState::Active);
    }
    match thread
        .edit_thread(http, serenity::EditThread::new().archived(false))
        .await
    {
        Ok(_) => {
            tracing::info!(thread_id, "ticket thread unarchived");
            Ok(ThreadState::Unarchived)
        }
        Err(error) if discord_error_code(&error) == Some(UNKNOWN_CHANNEL) => Ok(ThreadState::Gone),
        Err(error) => Err(error),
    }
}

/// Handles a click on a support button: Close and Claim on the summary, the claim
/// confirmation, and list pagination. Errors are shown to the user and logged; none is raised.
pub async fn handle_component(
    ctx: &serenity::Context,
    data: &Data,
    component: &serenity::ComponentInteraction,
) {
    let Some(action) = ComponentAction::parse(&component.data.custom_id) else {
        tracing::warn!(custom_id = %component.data.custom_id, "unknown support button");
        return;
    };
    let http = ctx.http.as_ref();
    tracing::info!(custom_id = %component.data.custom_id, user_id = component.user.id.get(), interaction_id = component.id.get(), "support button clicked");
    let Some(channels) = data.config.support.channels() else {
        let text = "Support tickets are not configured on this server.".to_owned();
        respond_message(http, component, text).await;
        return;
    };
    let actor = Actor {
        user_id: component.user.id.get(),
        is_staff: is_staff(component.member.as_ref(), channels.staff_role_id),
    };
    let guild_id = component
        .guild_id
        .map(|id| id.get())
        .or(data.config.guild.id)
        .unwrap_or_default();

    match action {
        ComponentAction::ListPage {
            status,
            page,
            account_id,
        } => match list_page(data, actor, status, account_id.as_deref(), page).await {
            Ok((embed, components)) => {
                let update = serenity::CreateInteractionResponse::UpdateMessage(
                    serenity::CreateInteractionResponseMessage::new()
                        .embed(embed)
                        .components(components),
                );
                if let Err(error) = component.create_response(http, update).await {
                    tracing::warn!(interaction_id = component.id.get(), %error, "failed to show a ticket list page");
                }
            }
            Err(error) => {
                if let Some(text) = error_text(error, component.id.get()) {
                    respond_message(http, component, text).await;
                }
            }
        },
        ComponentAction::ClaimCancel(number) => {
            let text = format!(
                "Ticket {} was left with its current holder.",
                data.tickets.label(number)
            );
            let update = serenity::CreateInteractionResponse::UpdateMessage(
                serenity::CreateInteractionResponseMessage::new()
                    .content(text)
                    .components(Vec::new()),
            );
            if let Err(error) = component.create_response(http, update).await {
                tracing::warn!(interaction_id = component.id.get(), %error, "failed to respond to a claim cancellation");
            }
        }
        ComponentAction::Close(number) => {
            if !defer(http, component).await {
                return;
            }
            let result = close_ticket(
                http,
                data,
                &channels,
                actor,
                TicketLocator::Number(number),
                None,
                guild_id,
            )
            .await;
            let followup = match result {
                Ok(text) => Some(serenity::CreateInteractionResponseFollowup::new().content(text)),
                Err(error) => error_text(error, component.id.get())
                    .map(|text| serenity::CreateInteractionResponseFollowup::new().content(text)),
            };
            send_followup(http, component, followup).await;
        }
        ComponentAction::Claim(number) => {
            if !defer(http, component).await {
                return;
            }
            let locator = TicketLocator::Number(number);
            let followup = match claim_ticket(data, actor, locator, ClaimIntent::Claim).await {
                Ok(claimed) => {
                    if let Some(ticket) = &claimed.changed {
                        publish_claim(http, data, ticket, actor, claimed.previous, guild_id).await;
                    }
                    Some(claimed.reply.followup())
                }
                Err(error) => error_text(error, component.id.get())
                    .map(|text| serenity::CreateInteractionResponseFollowup::new().content(text)),
            };
            send_followup(http, component, followup).await;
        }
        ComponentAction::ClaimConfirm { number, holder } => {
            // The database decides quickly, so the confirmation message itself is updated
            // (without its buttons) within Discord's 3 seconds; the embeds follow afterwards.
            let locator = TicketLocator::Number(number);
            let intent = ClaimIntent::TakeOverFrom(holder);
            let (text, changed) = match claim_ticket(data, actor, locator, intent).await {
                Ok(claimed) => (
                    Some(claimed.reply.text().to_owned()),
                    claimed.changed.map(|ticket| (ticket, claimed.previous)),
                ),
                Err(error) => (error_text(error, component.id.get()), None),
            };
            if let Some(text) = text {
                let update = serenity::CreateInteractionResponse::UpdateMessage(
                    serenity::CreateInteractionResponseMessage::new()
                        .content(text)
                        .components(Vec::new()),
                );
                if let Err(error) = component.create_response(http, update).await {
                    tracing::warn!(interaction_id = component.id.get(), %error, "failed to respond to a claim confirmation");
                }
            }
            if let Some((ticket, previous)) = changed {
                publish_claim(http, data, &ticket, actor, previous, guild_id).await;
            }
        }
    }
}

/// Acknowledges a click with a private "thinking" reply; returns whether that worked.
async fn defer(http: &serenity::Http, component: &serenity::ComponentInteraction) -> bool {
    match component.defer_ephemeral(http).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(interaction_id = component.id.get(), %error, "failed to acknowledge a support button");
            false
        }
    }
}

async fn send_followup(
    http: &serenity::Http,
    component: &serenity::ComponentInteraction,
    followup: Option<serenity::CreateInteractionResponseFollowup>,
) {
    let Some(followup) = followup else {
        return;
    };
    if let Err(error) = component
        .create_followup(http, followup.ephemeral(true))
        .await
    {
        tracing::warn!(interaction_id = component.id.get(), %error, "failed to respond to a support button");
    }
}

async fn respond_message(
    http: &serenity::Http,
    component: &serenity::ComponentInteraction,
    text: String,
) {
    let response = serenity::CreateInteractionResponse::Message(
        serenity::CreateInteractionResponseMessage::new()
            .content(text)
            .ephemeral(true),
    );
    if let Err(error) = component.create_response(http, response).await {
        tracing::warn!(interaction_id = component.id.get(), %error, "failed to respond to a support button");
    }
}

/// Returns what the user sees for an error of a button action, logging internal failures.
fn error_text(error: BotError, interaction_id: u64) -> Option<String> {
    match error {
        BotError::User(text) => Some(text),
        BotError::Ignore(reason) => {
            tracing::debug!(interaction_id, %reason, "support button error ignored");
            None
        }
        BotError::Internal(error) => {
            metrics::counter!("trackly_bot_internal_errors_total").increment(1);
            tracing::error!(
                interaction_id,
                error = format!("{error:#}"),
                "support button failed"
            );
            Some(format!(
                "Something went wrong on our side, and it has been logged (reference `{interaction_id}`). Try again."
            ))
        }
    }
}
