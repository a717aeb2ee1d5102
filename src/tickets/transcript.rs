//! Plain-text transcripts of ticket threads.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::Ticket;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptAttachment {
    pub filename: String,
    pub url: String,
}

/// One thread message, as the transcript shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptMessage {
    pub author_name: String,
    pub author_id: u64,
    pub sent_at: DateTime<Utc>,
    pub content: String,
    /// Title and description of each embed, for messages such as the bot's summary.
    pub embeds: Vec<String>,
    pub attachments: Vec<TranscriptAttachment>,
}

fn format_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Formats the transcript: a header with the ticket's details, then every message oldest
/// first with author, time and content, and attachments as links. `messages` must be oldest
/// first. Continuation lines of a message are indented so each message starts at column 0.
pub fn format_transcript(ticket: &Ticket, prefix: &str, messages: &[TranscriptMessage]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "Ticket {}: {}", ticket.label(prefix), ticket.subject);
    let _ = writeln!(
        text,
        "Account: {} ({})",
        ticket.account_name, ticket.account_id
    );
    let _ = writeln!(text, "Requester: user id {}", ticket.requester_id);
    let _ = writeln!(
        text,
        "Priority: {} · Category: {}",
        ticket.priority.as_str(),
        ticket.category.as_str()
    );
    let _ = writeln!(text, "Opened: {}", format_time(ticket.created_at));
    if let Some(closed_at) = ticket.closed_at {
        let closer = ticket
            .closed_by_id
            .map_or_else(|| "unknown".to_owned(), |id| format!("user id {id}"));
        let _ = writeln!(text, "Closed: {} by {closer}", format_time(closed_at));
    }
    if let Some(reason) = &ticket.close_reason {
        let _ = writeln!(text, "Close reason: {reason}");
    }
    let _ = writeln!(text, "Messages: {}", messages.len());
    text.push('\n');

    for message in messages {
        let _ = write!(
            text,
            "[{}] {} ({}):",
            format_time(message.sent_at),
            message.author_name,
            message.author_id
        );
        let mut lines = message.content.lines();
        match lines.next() {
            Some(first) => {
                let _ = writeln!(text, " {first}");
            }
            None => text.push('\n'),
        }
        for line in lines {
            let _ = writeln!(text, "    {line}");
        }
        for embed in &message.embeds {
            for (index, line) in embed.lines().enumerate() {
                let marker = if index == 0 { "[embed] " } else { "        " };
                let _ = writeln!(text, "    {marker}{line}");
            }
        }
        for attachment in &message.attachments {
            let _ = writeln!(
                text,
                "    [attachment] {} {}",
                attachment.filename, attachment.url
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::tickets::{Category, Priority, TicketStatus};

    fn ticket() -> Ticket {
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 20, 0, 0).unwrap();
        Ticket {
            number: 1042,
            requester_id: 10,
            account_id: "acc_8f2k1q".into(),
            account_name: "Acme Promotions".into(),
            subject: "Messages stuck".into(),
            priority: Priority::High,
            category: Category::Technical,
            status: TicketStatus::Closed,
            claimant_id: None,
            thread_id: 5,
            summary_message_id: 6,
            staff_channel_id: None,
            staff_message_id: None,
            close_reason: Some("solved".into()),
            closed_by_id: Some(10),
            closed_by_staff: false,
            created_at: at,
            updated_at: at,
            closed_at: Some(at + chrono::Duration::minutes(30)),
        }
    }

    #[test]
    fn transcript_lists_every_message_with_author_time_and_links() {
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 20, 5, 9).unwrap();
        let messages = vec![
            TranscriptMessage {
                author_name: "Trackly".into(),
                author_id: 2,
                sent_at: at,
                content: String::new(),
                embeds: vec!["Ticket T-1042\nMessages stuck".into()],
                attachments: vec![],
            },
            TranscriptMessage {
                author_name: "alice".into(),
                author_id: 10,
                sent_at: at + chrono::Duration::seconds(61),
                content: "first line\nsecond line".into(),
                embeds: vec![],
                attachments: vec![TranscriptAttachment {
                    filename: "log.txt".into(),
                    url: "https://cdn.example/log.txt".into(),
                }],
            },
        ];
        let text = format_transcript(&ticket(), "T-", &messages);

        assert!(
            text.starts_with("Ticket T-1042: Messages stuck\n"),
            "{text}"
        );
        assert!(
            text.contains("Account: Acme Promotions (acc_8f2k1q)"),
            "{text}"
        );
        assert!(text.contains("Close reason: solved"), "{text}");
        assert!(text.contains("Messages: 2"), "{text}");
        assert!(text.contains("[2026-12-04 20:05:09 UTC] Trackly (2):\n    [embed] Ticket T-1042\n            Messages stuck"), "{text}");
        assert!(
            text.contains("[2026-12-04 20:06:10 UTC] alice (10): first line\n    second line\n"),
            "{text}"
        );
        assert!(
            text.contains("    [attachment] log.txt https://cdn.example/log.txt"),
            "{text}"
        );
    }

    #[test]
    fn transcript_without_messages_has_header_only() {
        let text = format_transcript(&ticket(), "T-", &[]);
        assert!(text.contains("Messages: 0"), "{text}");
        assert!(!text.contains('['), "{text}");
    }
}
