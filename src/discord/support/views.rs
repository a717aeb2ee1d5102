//! Embeds, buttons and button custom ids of support tickets.

use poise::serenity_prelude as serenity;

use super::text::{code_span, escape_clip, LimitedEmbed, MAX_DESCRIPTION};
use crate::tickets::{Ticket, TicketPage, TicketStatus};

/// Prefix of every custom id that `handle_component` receives.
pub const CUSTOM_ID_PREFIX: &str = "support:";

const COLOUR_OPEN: u32 = 0x34_98_DB;
const COLOUR_CLOSED: u32 = 0x95_A5_A6;

/// Characters of a subject or account name shown in an embed field or a list line, after
/// escaping. Subjects are at most 100 characters, so most fit; account names from Trackly
/// have no documented maximum.
const SHOWN_SUBJECT_CHARS: usize = 220;
const SHOWN_ACCOUNT_NAME_CHARS: usize = 100;
/// List lines are shorter, so that ten of them always fit in a 4096-character description:
/// at most about 360 characters each with 20-digit ids.
const LIST_SUBJECT_CHARS: usize = 120;
const LIST_ACCOUNT_NAME_CHARS: usize = 60;
const SHOWN_ACCOUNT_ID_CHARS: usize = 64;

/// Status filter of `/support list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Open,
    Closed,
    All,
}

impl StatusFilter {
    pub fn status(self) -> Option<TicketStatus> {
        match self {
            StatusFilter::Open => Some(TicketStatus::Open),
            StatusFilter::Closed => Some(TicketStatus::Closed),
            StatusFilter::All => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Open => "open",
            StatusFilter::Closed => "closed",
            StatusFilter::All => "all",
        }
    }

    fn parse(text: &str) -> Option<StatusFilter> {
        match text {
            "open" => Some(StatusFilter::Open),
            "closed" => Some(StatusFilter::Closed),
            "all" => Some(StatusFilter::All),
            _ => None,
        }
    }
}

/// The action of a support button, decoded from its custom id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentAction {
    Close(u64),
    Claim(u64),
    /// Take over the ticket from `holder`, the claimant shown when the confirmation was offered.
    ClaimConfirm {
        number: u64,
        holder: u64,
    },
    ClaimCancel(u64),
    ListPage {
        status: StatusFilter,
        page: u32,
        account_id: Option<String>,
    },
}

impl ComponentAction {
    /// Encodes the action as a custom id. Discord allows at most 100 characters; the longest
    /// id, a confirmation with two 20-digit numbers, has 58.
    pub fn custom_id(&self) -> String {
        match self {
            ComponentAction::Close(number) => format!("{CUSTOM_ID_PREFIX}close:{number}"),
            ComponentAction::Claim(number) => format!("{CUSTOM_ID_PREFIX}claim:{number}"),
            ComponentAction::ClaimConfirm { number, holder } => {
                format!("{CUSTOM_ID_PREFIX}claim-confirm:{number}:{holder}")
            }
            ComponentAction::ClaimCancel(number) => {
                format!("{CUSTOM_ID_PREFIX}claim-cancel:{number}")
            }
            ComponentAction::ListPage {
                status,
                page,
                account_id,
            } => format!(
                "{CUSTOM_ID_PREFIX}list:{}:{page}:{}",
                status.as_str(),
                account_id.as_deref().unwrap_or("")
            ),
        }
    }

    pub fn parse(custom_id: &str) -> Option<ComponentAction> {
        let rest = custom_id.strip_prefix(CUSTOM_ID_PREFIX)?;
        let (kind, argument) = rest.split_once(':')?;
        let number = || argument.parse::<u64>().ok();
        match kind {
            "close" => number().map(ComponentAction::Close),
            "claim" => number().map(ComponentAction::Claim),
            "claim-confirm" => {
                let (number, holder) = argument.split_once(':')?;
                Some(ComponentAction::ClaimConfirm {
                    number: number.parse().ok()?,
                    holder: holder.parse().ok()?,
                })
            }
            "claim-cancel" => number().map(ComponentAction::ClaimCancel),
            "list" => {
                let mut parts = argument.splitn(3, ':');
                let status = StatusFilter::parse(parts.next()?)?;
                let page = parts.next()?.parse().ok()?;
                let account_id = parts.next().filter(|id| !id.is_empty()).map(str::to_owned);
                Some(ComponentAction::ListPage {
                    status,
                    page,
                    account_id,
                })
            }
            _ => None,
        }
    }
}

/// Returns the Discord URL of a channel or thread.
pub fn channel_link(guild_id: u64, channel_id: u64) -> String {
    format!("https://discord.com/channels/{guild_id}/{channel_id}")
}

fn claimant_text(ticket: &Ticket) -> String {
    ticket
        .claimant_id
        .map_or_else(|| "Unclaimed".to_owned(), |id| format!("<@{id}>"))
}

fn status_text(ticket: &Ticket) -> &'static str {
    ticket.status.as_str()
}

/// Returns the account as staff see it: the escaped name and the id as inline code.
fn account_text(ticket: &Ticket, name_chars: usize) -> String {
    format!(
        "{} ({})",
        escape_clip(&ticket.account_name, name_chars),
        code_span(&ticket.account_id, SHOWN_ACCOUNT_ID_CHARS)
    )
}

/// The summary embed posted in the ticket thread.
pub fn summary_embed(ticket: &Ticket, label: &str) -> LimitedEmbed {
    let colour = if ticket.status == TicketStatus::Open {
        COLOUR_OPEN
    } else {
        COLOUR_CLOSED
    };
    LimitedEmbed::new(
        format!(
            "Ticket {label}: {}",
            escape_clip(&ticket.subject, SHOWN_SUBJECT_CHARS)
        ),
        colour,
    )
    .field("Requester", format!("<@{}>", ticket.requester_id), true)
    .field(
        "Account",
        account_text(ticket, SHOWN_ACCOUNT_NAME_CHARS),
        true,
    )
    .field("Priority", ticket.priority.as_str(), true)
    .field("Category", ticket.category.as_str(), true)
    .field("Status", status_text(ticket), true)
    .field("Claimed by", claimant_text(ticket), true)
}

/// The notification in the staff channel.
pub fn staff_embed(ticket: &Ticket, label: &str, guild_id: u64) -> serenity::CreateEmbed {
    summary_embed(ticket, label)
        .title(format!("New ticket {label}"))
        .description(escape_clip(&ticket.subject, SHOWN_SUBJECT_CHARS))
        .field("Thread", channel_link(guild_id, ticket.thread_id), false)
        .build()
}

/// The Close and Claim buttons of the summary message; disabled once the ticket is closed.
pub fn ticket_buttons(ticket: &Ticket) -> Vec<serenity::CreateActionRow> {
    let closed = ticket.status == TicketStatus::Closed;
    vec![serenity::CreateActionRow::Buttons(vec![
        serenity::CreateButton::new(ComponentAction::Close(ticket.number).custom_id())
            .label("Close")
            .style(serenity::ButtonStyle::Danger)
            .disabled(closed),
        serenity::CreateButton::new(ComponentAction::Claim(ticket.number).custom_id())
            .label("Claim")
            .style(serenity::ButtonStyle::Primary)
            .disabled(closed),
    ])]
}

/// The Take over and Cancel buttons asking to take a ticket over from `holder`.
pub fn claim_confirmation_buttons(number: u64, holder: u64) -> Vec<serenity::CreateActionRow> {
    vec![serenity::CreateActionRow::Buttons(vec![
        serenity::CreateButton::new(ComponentAction::ClaimConfirm { number, holder }.custom_id())
            .label("Take over")
            .style(serenity::ButtonStyle::Danger),
        serenity::CreateButton::new(ComponentAction::ClaimCancel(number).custom_id())
            .label("Cancel")
            .style(serenity::ButtonStyle::Secondary),
    ])]
}

/// Formats one line of `/support list`, at most about 360 characters.
pub fn list_line(ticket: &Ticket, label: &str, show_account: bool) -> String {
    let mut line = format!(
        "`{label}` · {} · {} · {} · opened <t:{}:R>",
        ticket.status.as_str(),
        ticket.priority.as_str(),
        escape_clip(&ticket.subject, LIST_SUBJECT_CHARS),
        ticket.created_at.timestamp()
    );
    if show_account {
        line.push_str(&format!(
            " · {} · <@{}>",
            account_text(ticket, LIST_ACCOUNT_NAME_CHARS),
            ticket.requester_id
        ));
    }
    line
}

/// Joins list lines into a description of at most 4096 characters, dropping whole lines
/// from the end with a note when they do not fit.
fn list_description(lines: &[String]) -> String {
    let mut description = String::new();
    for (index, line) in lines.iter().enumerate() {
        let remaining = lines.len() - index;
        let note =
            format!("\n… {remaining} more not shown; narrow the list with `status` or `account`.");
        let separator = usize::from(!description.is_empty());
        let needed = description.chars().count() + separator + line.chars().count();
        let room_for_note = if remaining > 1 {
            note.chars().count()
        } else {
            0
        };
        if needed + room_for_note > MAX_DESCRIPTION {
            description.push_str(&note);
            return description;
        }
        if separator == 1 {
            description.push('\n');
        }
        description.push_str(line);
    }
    description
}

/// The `/support list` embed and, past one page, Previous and Next buttons.
pub fn list_view(
    page: &TicketPage,
    prefix: &str,
    status: StatusFilter,
    account_id: Option<&str>,
    staff: bool,
) -> (serenity::CreateEmbed, Vec<serenity::CreateActionRow>) {
    let scope = match (staff, account_id) {
        (true, Some(account)) => format!("account {}", code_span(account, SHOWN_ACCOUNT_ID_CHARS)),
        (true, None) => "all users".to_owned(),
        (false, _) => "you".to_owned(),
    };
    let title = format!(
        "Tickets ({}) of {scope} · page {} of {} · {} tickets",
        status.as_str(),
        page.page + 1,
        page.pages,
        page.total
    );
    let description = if page.tickets.is_empty() {
        "No tickets match.".to_owned()
    } else {
        let lines: Vec<String> = page
            .tickets
            .iter()
            .map(|ticket| list_line(ticket, &format!("{prefix}{}", ticket.number), staff))
            .collect();
        list_description(&lines)
    };
    let embed = LimitedEmbed::new(title, COLOUR_OPEN)
        .description(description)
        .build();

    if page.pages <= 1 {
        return (embed, Vec::new());
    }
    let button = |label: &str, target: u32, disabled: bool| {
        serenity::CreateButton::new(
            ComponentAction::ListPage {
                status,
                page: target,
                account_id: account_id.map(str::to_owned),
            }
            .custom_id(),
        )
        .label(label)
        .style(serenity::ButtonStyle::Secondary)
        .disabled(disabled)
    };
    let buttons = vec![
        button("Previous", page.page.saturating_sub(1), page.page == 0),
        button("Next", page.page + 1, page.page + 1 >= page.pages),
    ];
    (embed, vec![serenity::CreateActionRow::Buttons(buttons)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_round_trip() {
        let actions = [
            ComponentAction::Close(1042),
            ComponentAction::Claim(7),
            ComponentAction::ClaimConfirm {
                number: u64::MAX,
                holder: u64::MAX,
            },
            ComponentAction::ClaimCancel(9),
            ComponentAction::ListPage {
                status: StatusFilter::All,
                page: 3,
                account_id: Some("acc_8f2k1q".into()),
            },
            ComponentAction::ListPage {
                status: StatusFilter::Open,
                page: 0,
                account_id: None,
            },
        ];
        for action in actions {
            let id = action.custom_id();
            assert!(id.len() <= 100, "{id}");
            assert_eq!(ComponentAction::parse(&id), Some(action), "{id}");
        }
    }

    fn worst_case_ticket(number: u64) -> Ticket {
        let now = chrono::Utc::now();
        Ticket {
            number,
            requester_id: u64::MAX,
            account_id: "a".repeat(200),
            account_name: "[x](y)".repeat(300),
            subject: "*".repeat(100),
            priority: crate::tickets::Priority::Urgent,
            category: crate::tickets::Category::Technical,
            status: TicketStatus::Closed,
            claimant_id: Some(u64::MAX),
            thread_id: u64::MAX,
            summary_message_id: u64::MAX,
            staff_channel_id: None,
            staff_message_id: None,
            close_reason: None,
            closed_by_id: None,
            closed_by_staff: false,
            created_at: now,
            updated_at: now,
            closed_at: None,
        }
    }

    #[test]
    fn staff_list_page_fits_description_limit() {
        let page = TicketPage {
            tickets: (0..10)
                .map(|index| worst_case_ticket(u64::MAX - index))
                .collect(),
            total: 25,
            page: 0,
            pages: 3,
        };
        let (embed, _) = list_view(&page, "TICKET-#_", StatusFilter::All, None, true);
        let json = serde_json::to_value(embed).unwrap();
        let description = json["description"].as_str().unwrap();
        assert!(description.chars().count() <= MAX_DESCRIPTION);
        assert_eq!(
            description.lines().count(),
            10,
            "every ticket of the page is shown"
        );
        assert!(!description.contains("more not shown"));
        for line in description.lines() {
            assert!(line.chars().count() <= 410, "{}", line.chars().count());
        }
    }

    #[test]
    fn list_description_drops_whole_lines_with_a_note() {
        let lines: Vec<String> = (0..20)
            .map(|index| format!("{index}:{}", "x".repeat(500)))
            .collect();
        let description = list_description(&lines);
        assert!(description.chars().count() <= MAX_DESCRIPTION);
        assert!(description.contains("more not shown"), "{description}");
        assert!(description
            .lines()
            .all(|line| line.len() > 500 || line.contains("more not shown")));
    }

    #[test]
    fn custom_id_rejects_foreign_and_malformed() {
        assert_eq!(ComponentAction::parse("alerts:mute:1"), None);
        assert_eq!(ComponentAction::parse("support:close:abc"), None);
        assert_eq!(ComponentAction::parse("support:list:pending:0:"), None);
        assert_eq!(ComponentAction::parse("support:unknown:1"), None);
        assert_eq!(ComponentAction::parse("support:"), None);
        assert_eq!(ComponentAction::parse("support:claim-confirm:8"), None);
        assert_eq!(ComponentAction::parse("support:claim-confirm:8:x"), None);
    }
}
