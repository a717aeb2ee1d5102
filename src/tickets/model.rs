//! The ticket and its fields.

use chrono::{DateTime, Utc};

/// Maximum length of a ticket subject, in characters. Thread names are limited to 100
/// characters by Discord, and the subject also appears in the thread name.
pub const MAX_SUBJECT_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(text: &str) -> Option<Priority> {
        match text {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            "urgent" => Some(Priority::Urgent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    General,
    Billing,
    Technical,
    Api,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::General => "general",
            Category::Billing => "billing",
            Category::Technical => "technical",
            Category::Api => "api",
        }
    }

    pub fn parse(text: &str) -> Option<Category> {
        match text {
            "general" => Some(Category::General),
            "billing" => Some(Category::Billing),
            "technical" => Some(Category::Technical),
            "api" => Some(Category::Api),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStatus {
    Open,
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<TicketStatus> {
        match text {
            "open" => Some(TicketStatus::Open),
            "closed" => Some(TicketStatus::Closed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub number: u64,
    pub requester_id: u64,
    pub account_id: String,
    pub account_name: String,
    pub subject: String,
    pub priority: Priority,
    pub category: Category,
    pub status: TicketStatus,
    pub claimant_id: Option<u64>,
    pub thread_id: u64,
    /// The summary embed with the Close and Claim buttons, posted in the thread.
    pub summary_message_id: u64,
    pub staff_channel_id: Option<u64>,
    /// The notification in the staff channel; `None` when posting it failed.
    pub staff_message_id: Option<u64>,
    pub close_reason: Option<String>,
    pub closed_by_id: Option<u64>,
    pub closed_by_staff: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Ticket {
    /// Returns the number as users see it, such as `T-1042`.
    pub fn label(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.number)
    }
}

/// Trims `subject` and checks its length; returns the trimmed subject or a message for the user.
pub fn validate_subject(subject: &str) -> Result<String, String> {
    let trimmed = subject.trim();
    let length = trimmed.chars().count();
    if length == 0 {
        return Err(
            "The subject is empty. Describe your problem in 1 to 100 characters.".to_owned(),
        );
    }
    if length > MAX_SUBJECT_CHARS {
        return Err(format!(
            "The subject is {length} characters long, but the maximum is {MAX_SUBJECT_CHARS}. \
             Shorten it and put the details in the ticket thread."
        ));
    }
    Ok(trimmed.to_owned())
}

/// Parses a ticket number as users type it: `1042`, `#1042` or with the configured prefix,
/// such as `T-1042` (prefix compared case-insensitively).
pub fn parse_ticket_number(text: &str, prefix: &str) -> Result<u64, String> {
    let trimmed = text.trim().trim_start_matches('#');
    let without_prefix = match trimmed.get(..prefix.len()) {
        Some(head) if !prefix.is_empty() && head.eq_ignore_ascii_case(prefix) => {
            &trimmed[prefix.len()..]
        }
        _ => trimmed,
    };
    without_prefix.parse::<u64>().map_err(|_| {
        format!(
            "{text:?} is not a ticket number. Use the number from `/support list`, such as `{prefix}1042`."
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_length_limits() {
        assert_eq!(validate_subject("  Stuck SMS  ").unwrap(), "Stuck SMS");
        assert!(validate_subject("   ").unwrap_err().contains("empty"));
        assert!(validate_subject("").unwrap_err().contains("1 to 100"));
        assert!(validate_subject(&"a".repeat(100)).is_ok());
        let error = validate_subject(&"a".repeat(101)).unwrap_err();
        assert!(error.contains("101 characters"), "{error}");
        // Characters, not bytes: 100 multi-byte characters are accepted.
        assert!(validate_subject(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn ticket_number_forms() {
        assert_eq!(parse_ticket_number("1042", "T-"), Ok(1042));
        assert_eq!(parse_ticket_number("#1042", "T-"), Ok(1042));
        assert_eq!(parse_ticket_number("t-1042", "T-"), Ok(1042));
        assert_eq!(parse_ticket_number(" T-7 ", "T-"), Ok(7));
        assert_eq!(parse_ticket_number("42", ""), Ok(42));
        let error = parse_ticket_number("T-abc", "T-").unwrap_err();
        assert!(error.contains("not a ticket number"), "{error}");
        assert!(parse_ticket_number("-5", "T-").is_err());
    }

    #[test]
    fn enums_round_trip() {
        for priority in [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ] {
            assert_eq!(Priority::parse(priority.as_str()), Some(priority));
        }
        for category in [
            Category::General,
            Category::Billing,
            Category::Technical,
            Category::Api,
        ] {
            assert_eq!(Category::parse(category.as_str()), Some(category));
        }
        for status in [TicketStatus::Open, TicketStatus::Closed] {
            assert_eq!(TicketStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(Priority::parse("URGENT"), None);
    }
}
