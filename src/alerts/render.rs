//! Alert messages as plain values: embeds per alert type and the digest, within Discord's
//! limits, with recipient phone numbers masked.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::event::{Event, EventKind, Severity};
use super::mask::{mask_json, mask_phone_numbers};

use crate::text_limits::clip;
pub use crate::text_limits::{
    MAX_CONTENT, MAX_DESCRIPTION, MAX_EMBEDS, MAX_EMBED_TOTAL, MAX_FIELDS, MAX_FIELD_NAME,
    MAX_FIELD_VALUE, MAX_FOOTER, MAX_TITLE,
};

/// Custom id prefix of the "Mute 1 h" button; the recipient's user id follows it.
pub const MUTE_BUTTON_PREFIX: &str = "alerts:mute1h:";

/// Examples a digest lists, besides the counts by type.
const DIGEST_EXAMPLES: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedField {
    pub name: String,
    pub value: String,
    pub inline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embed {
    pub title: String,
    pub description: String,
    pub colour: u32,
    pub fields: Vec<EmbedField>,
    pub footer: String,
    pub timestamp: Option<DateTime<Utc>>,
}

impl Embed {
    /// Counts the characters Discord adds up for its 6000 limit.
    pub fn total_chars(&self) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .map(|field| field.name.chars().count() + field.value.chars().count())
            .sum();
        self.title.chars().count()
            + self.description.chars().count()
            + self.footer.chars().count()
            + fields
    }
}

/// A message ready to send: optional text, embeds, and a mute button for a DM recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertMessage {
    pub content: String,
    pub embeds: Vec<Embed>,
    /// The custom id of the "Mute 1 h" button, set on DMs only.
    pub mute_button: Option<String>,
}

/// The account an alert belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLabel {
    pub id: String,
    pub name: String,
}

/// Masks a phone number except its last 4 digits, keeping a leading `+`: `+14155551234`
/// becomes `+•••••••1234`. Text with 4 digits or fewer is masked completely.
pub fn mask_phone(number: &str) -> String {
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let keep_from = digits.saturating_sub(4);
    let mut seen = 0;
    let mut masked = String::with_capacity(number.len());
    for c in number.trim().chars() {
        if c.is_ascii_digit() {
            masked.push(if seen >= keep_from && digits > 4 {
                c
            } else {
                '•'
            });
            seen += 1;
        } else if c == '+' && masked.is_empty() {
            masked.push(c);
        } else if !c.is_whitespace() {
            masked.push('•');
        }
    }
    masked
}

/// Placeholder for an empty field name or value, which Discord rejects.
const EMPTY_PLACEHOLDER: &str = "—";

fn field(name: &str, value: String, inline: bool) -> EmbedField {
    let value = if value.trim().is_empty() {
        EMPTY_PLACEHOLDER.to_owned()
    } else {
        value
    };
    let name = if name.trim().is_empty() {
        EMPTY_PLACEHOLDER
    } else {
        name
    };
    EmbedField {
        name: clip(name, MAX_FIELD_NAME),
        value: clip(&value, MAX_FIELD_VALUE),
        inline,
    }
}

fn account_line(account: &AccountLabel) -> String {
    format!("**{}** (`{}`)", account.name, account.id)
}

fn money_text(event: &Event, key: &str) -> Option<String> {
    let money = event.data.get(key)?;
    let amount = money
        .get("amount")
        .and_then(|v| v.as_str().map(str::to_owned))?;
    let currency = money.get("currency").and_then(|v| v.as_str()).unwrap_or("");
    Some(format!("{amount} {currency}").trim().to_owned())
}

/// Returns the embed fields of one event by type; unknown types show their data fields.
fn event_fields(event: &Event) -> Vec<EmbedField> {
    let text = |key: &str| event.data_text(key);
    let phone = |key: &str| text(key).map(|number| mask_phone(&number));
    // Free text written by people or carriers can quote phone numbers.
    let free_text = |key: &str| text(key).map(|value| mask_phone_numbers(&value));
    let mut fields = Vec::new();
    let mut push = |name: &str, value: Option<String>, inline: bool| {
        if let Some(value) = value {
            fields.push(field(name, value, inline));
        }
    };
    match &event.kind {
        EventKind::DeliveryFailure | EventKind::SpamComplaint => {
            push("List", text("list_name"), true);
            push("List number", text("list_number"), true);
            push("Recipient", phone("to"), true);
            push("Status", text("status"), true);
            push("Provider", text("provider"), true);
            push(
                "Message id",
                text("message_id").map(|id| format!("`{id}`")),
                true,
            );
            push("Status detail", free_text("status_detail"), false);
        }
        EventKind::OptOut => {
            push("List number", text("list_number"), true);
            push("Phone number", phone("phone_number"), true);
            push("Keyword", free_text("keyword"), true);
        }
        EventKind::InboundSms => {
            push("List number", text("list_number"), true);
            push("From", phone("phone_number"), true);
            push("Message", free_text("body"), false);
        }
        EventKind::PaymentSucceeded => {
            push("Amount", money_text(event, "amount"), true);
            push("Invoice", text("invoice_id"), true);
        }
        EventKind::PaymentFailed => {
            push("Amount", money_text(event, "amount"), true);
            push("Next retry", text("next_retry_at"), true);
            push("Reason", free_text("reason"), false);
        }
        EventKind::UsageThreshold => {
            push("Segments", text("segments"), true);
            push("Threshold", text("threshold"), true);
        }
        EventKind::HighErrorRate => {
            push("List number", text("list_number"), true);
            push("Error rate", text("error_rate"), true);
            push(
                "Window",
                text("window_minutes").map(|m| format!("{m} min")),
                true,
            );
        }
        EventKind::Outage => {
            push("Component", text("component"), true);
            push("Summary", free_text("summary"), false);
        }
        EventKind::Test => {
            push(
                "What this is",
                Some(
                    "A sample alert sent by `/alerts test` through the outbox and the dispatcher."
                        .to_owned(),
                ),
                false,
            );
        }
        EventKind::Unknown(_) => {
            // Unknown data may hold phone numbers anywhere, nested values and keys included.
            if let Some(object) = mask_json(&event.data).as_object() {
                for (key, value) in object.iter().take(10) {
                    let shown = match value {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    push(key, Some(shown), true);
                }
            }
        }
    }
    fields
}

/// Builds the embed of one alert.
pub fn alert_embed(event: &Event, account: &AccountLabel) -> Embed {
    let embed = Embed {
        title: clip(&event.kind.title(), MAX_TITLE),
        description: clip(&account_line(account), MAX_DESCRIPTION),
        colour: event.severity.colour(),
        fields: event_fields(event).into_iter().take(MAX_FIELDS).collect(),
        footer: clip(
            &format!("Severity: {} · event {}", event.severity, event.id),
            MAX_FOOTER,
        ),
        timestamp: Some(event.occurred_at),
    };
    fit_total(embed)
}

/// Shortens the longest text of the embed (a field value, the description or the footer) until
/// the embed is within Discord's total of 6000 characters.
fn fit_total(mut embed: Embed) -> Embed {
    while embed.total_chars() > MAX_EMBED_TOTAL {
        let excess = embed.total_chars() - MAX_EMBED_TOTAL;
        let longest = embed
            .fields
            .iter_mut()
            .map(|field| &mut field.value)
            .chain([&mut embed.description, &mut embed.footer])
            .max_by_key(|text| text.chars().count());
        let Some(longest) = longest else { break };
        let length = longest.chars().count();
        if length <= 1 {
            break;
        }
        *longest = clip(longest, length.saturating_sub(excess).max(1));
    }
    embed
}

/// Builds the message of one alert; `dm_user` adds the mute button for that recipient.
pub fn alert_message(event: &Event, account: &AccountLabel, dm_user: Option<u64>) -> AlertMessage {
    AlertMessage {
        content: String::new(),
        embeds: vec![alert_embed(event, account)],
        mute_button: dm_user.map(mute_button_id),
    }
}

pub fn mute_button_id(user_id: u64) -> String {
    format!("{MUTE_BUTTON_PREFIX}{user_id}")
}

/// Reads the recipient's user id from a mute button's custom id.
pub fn parse_mute_button(custom_id: &str) -> Option<u64> {
    custom_id.strip_prefix(MUTE_BUTTON_PREFIX)?.parse().ok()
}

/// Builds one digest for `items`: counts by type, the highest severity as colour, and the first
/// few alerts as examples.
pub fn digest_message(
    items: &[(Event, AccountLabel)],
    window_secs: u64,
    dm_user: Option<u64>,
) -> AlertMessage {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut accounts: BTreeMap<String, String> = BTreeMap::new();
    let mut highest = Severity::Low;
    for (event, account) in items {
        *counts.entry(event.kind.title()).or_default() += 1;
        accounts.insert(account.id.clone(), account.name.clone());
        highest = highest.max(event.severity);
    }

    let counts_text = counts
        .iter()
        .map(|(title, count)| format!("{title}: **{count}**"))
        .collect::<Vec<_>>()
        .join("\n");
    let accounts_text = accounts
        .iter()
        .map(|(id, name)| format!("**{name}** (`{id}`)"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut fields = vec![field("Alerts by type", counts_text, false)];
    for (event, account) in items.iter().take(DIGEST_EXAMPLES) {
        let summary = example_line(event, account);
        fields.push(field(&event.kind.title(), summary, false));
    }

    let embed = Embed {
        title: clip(
            &format!(
                "{} alerts in the last {}",
                items.len(),
                window_text(window_secs)
            ),
            MAX_TITLE,
        ),
        description: clip(
            &format!(
                "Many alerts arrived at once, so they are summarised here. Account: {accounts_text}"
            ),
            MAX_DESCRIPTION,
        ),
        colour: highest.colour(),
        fields,
        footer: clip(
            &format!(
                "Digest of {} alerts · highest severity: {highest}",
                items.len()
            ),
            MAX_FOOTER,
        ),
        timestamp: items.last().map(|(event, _)| event.occurred_at),
    };
    AlertMessage {
        content: String::new(),
        embeds: vec![fit_total(embed)],
        mute_button: dm_user.map(mute_button_id),
    }
}

fn example_line(event: &Event, account: &AccountLabel) -> String {
    let detail = event_fields(event)
        .into_iter()
        .take(3)
        .map(|field| format!("{}: {}", field.name, clip(&field.value, 120)))
        .collect::<Vec<_>>()
        .join(" · ");
    clip(
        &format!(
            "{} · {} · `{}`{}{}",
            account.name,
            event.severity,
            event.id,
            if detail.is_empty() { "" } else { " · " },
            detail
        ),
        MAX_FIELD_VALUE,
    )
}

fn window_text(seconds: u64) -> String {
    if seconds.is_multiple_of(60) && seconds >= 60 {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn account() -> AccountLabel {
        AccountLabel {
            id: "acc_1".into(),
            name: "Acme".into(),
        }
    }

    fn event(value: serde_json::Value) -> Event {
        Event::from_feed(&value, Utc::now()).unwrap()
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        let emoji = "🚨".repeat(10);
        let cut = clip(&emoji, 4);
        assert_eq!(cut.chars().count(), 4);
        assert!(cut.ends_with('…'));
        assert_eq!(clip("abc", 0), "");
    }

    #[test]
    fn phone_masked_except_last_four() {
        assert_eq!(mask_phone("+14155551234"), "+•••••••1234");
        assert_eq!(mask_phone("4155551234"), "••••••1234");
        assert_eq!(mask_phone("1234"), "••••");
        assert_eq!(mask_phone("+1 415 555 1234"), "+•••••••1234");
    }

    #[test]
    fn delivery_failure_masks_recipient_not_list() {
        let event = event(json!({"id": "evt_1", "type": "delivery_failure", "data": {
            "message_id": "AbC", "to": "+14155551234", "list_number": "+18005551234",
            "status": "undeliverable", "status_detail": "REJECTED_ABSENT_SUBSCRIBER",
            "provider": "infobip"}}));
        let embed = alert_embed(&event, &account());
        let all: String = embed
            .fields
            .iter()
            .map(|f| format!("{}={}\n", f.name, f.value))
            .collect();
        assert!(!all.contains("+14155551234"), "{all}");
        assert!(all.contains("+•••••••1234"), "{all}");
        assert!(all.contains("+18005551234"), "{all}");
        assert!(all.contains("REJECTED_ABSENT_SUBSCRIBER"), "{all}");
        assert_eq!(embed.colour, Severity::Medium.colour());
        assert!(embed.footer.contains("evt_1"));
        assert!(embed.description.contains("acc_1"));
    }

    #[test]
    fn long_values_fit_discord_limits() {
        let reason = "é".repeat(3000);
        let list_name = "L".repeat(300);
        let event = event(json!({"id": "evt_2", "type": "delivery_failure", "data": {
            "to": "+14155551234", "list_number": "+18005551234", "list_name": list_name,
            "status_detail": reason, "status": "rejected"}}));
        let long_account = AccountLabel {
            id: "acc_x".into(),
            name: "N".repeat(5000),
        };
        let message = alert_message(&event, &long_account, Some(7));
        let embed = &message.embeds[0];
        assert!(embed.title.chars().count() <= MAX_TITLE);
        assert!(embed.description.chars().count() <= MAX_DESCRIPTION);
        for field in &embed.fields {
            assert!(
                field.value.chars().count() <= MAX_FIELD_VALUE,
                "{}",
                field.name
            );
            assert!(field.name.chars().count() <= MAX_FIELD_NAME);
        }
        assert!(
            embed.total_chars() <= MAX_EMBED_TOTAL,
            "{}",
            embed.total_chars()
        );
        assert_eq!(message.mute_button.as_deref(), Some("alerts:mute1h:7"));
    }

    #[test]
    fn unknown_type_shows_data_masked() {
        let event = event(json!({"id": "evt_3", "type": "carrier.notice", "data": {
            "number": "+14155559876", "note": "hello"}}));
        let embed = alert_embed(&event, &account());
        assert_eq!(embed.title, "Alert: carrier.notice");
        let values: Vec<&str> = embed.fields.iter().map(|f| f.value.as_str()).collect();
        assert!(values.contains(&"+•••••••9876"), "{values:?}");
        assert!(values.contains(&"hello"), "{values:?}");
    }

    #[test]
    fn digest_counts_by_type() {
        let mut items = Vec::new();
        for index in 0..7 {
            let type_name = if index < 5 {
                "delivery_failure"
            } else {
                "opt_out"
            };
            items.push((
                event(json!({"id": format!("evt_{index}"), "type": type_name, "data": {}})),
                account(),
            ));
        }
        let message = digest_message(&items, 60, None);
        let embed = &message.embeds[0];
        assert_eq!(embed.title, "7 alerts in the last 1 min");
        assert!(embed.fields[0].value.contains("Delivery failure: **5**"));
        assert!(embed.fields[0].value.contains("Opt-out: **2**"));
        assert_eq!(embed.fields.len(), 1 + DIGEST_EXAMPLES);
        assert!(message.mute_button.is_none());
    }

    #[test]
    fn mute_button_id_round_trip() {
        assert_eq!(parse_mute_button(&mute_button_id(42)), Some(42));
        assert_eq!(parse_mute_button("alerts:mute1h:x"), None);
        assert_eq!(parse_mute_button("other:42"), None);
    }

    #[test]
    fn oversized_id_and_name_fit_total() {
        let alert = event(json!({
            "id": "e".repeat(2500),
            "type": "delivery_failure",
            "data": {"status_detail": "x".repeat(3000)},
        }));
        let account = AccountLabel {
            id: "acc_1".into(),
            name: "N".repeat(5000),
        };
        let embed = alert_embed(&alert, &account);
        assert!(
            embed.total_chars() <= MAX_EMBED_TOTAL,
            "{}",
            embed.total_chars()
        );
        assert!(embed.description.chars().count() <= MAX_DESCRIPTION);
        assert!(embed.footer.chars().count() <= MAX_FOOTER);
        assert!(embed.fields.iter().all(|f| !f.value.is_empty()));
    }

    #[test]
    fn empty_field_names_replaced() {
        let alert = event(json!({"id": "e1", "type": "x.y", "data": {"": "v", "  ": "w"}}));
        let embed = alert_embed(&alert, &account());
        assert_eq!(embed.fields.len(), 2);
        for field in &embed.fields {
            assert_eq!(field.name, EMPTY_PLACEHOLDER);
        }
    }

    #[test]
    fn unknown_type_masks_nested_numbers() {
        let alert = event(json!({"id": "e1", "type": "carrier.notice", "data": {
            "to": "14155551234",
            "contact": "+1 415 555 1234",
            "customer": {"phone": "+14155551234", "alt": ["(415) 555-9876"]},
        }}));
        let text = format!("{:?}", alert_embed(&alert, &account()).fields);
        assert!(!text.contains("415555"), "{text}");
        assert!(!text.contains("415 555"), "{text}");
        assert!(text.contains("•••••••1234"), "{text}");
        assert!(text.contains("9876"), "{text}");
    }

    #[test]
    fn inbound_body_and_free_text_masked() {
        let inbound = event(json!({"id": "e2", "type": "inbound_sms", "data": {
            "phone_number": "+14155550002", "body": "call me back on +1 415-555-9999"}}));
        let fields = alert_embed(&inbound, &account()).fields;
        let message = fields.iter().find(|f| f.name == "Message").unwrap();
        assert_eq!(message.value, "call me back on +•••••••9999");

        let failure = event(json!({"id": "e3", "type": "delivery_failure", "data": {
            "to": "+14155551234", "status_detail": "handset 4155551234 unreachable"}}));
        let fields = alert_embed(&failure, &account()).fields;
        let detail = fields.iter().find(|f| f.name == "Status detail").unwrap();
        assert_eq!(detail.value, "handset ••••••1234 unreachable");
    }

    #[test]
    fn digest_examples_masked() {
        let inbound = event(json!({"id": "e1", "type": "inbound_sms", "data": {
            "phone_number": "+14155550002", "body": "reach me at 415.555.9999"}}));
        let unknown = event(json!({"id": "e2", "type": "carrier.notice", "data": {
            "customer": {"phone": "+14155551234"}}}));
        let digest = digest_message(&[(inbound, account()), (unknown, account())], 60, None);
        // The embed's timestamp is the current time, which can contain "555"
        // by chance, so only the text a reader sees is checked.
        let embed = &digest.embeds[0];
        let text = format!("{} {} {:?}", embed.title, embed.description, embed.fields);
        assert!(!text.contains("555"), "{text}");
        assert!(text.contains("9999"), "{text}");
        assert!(text.contains("1234"), "{text}");
    }
}
