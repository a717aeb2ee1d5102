//! Events of the Trackly feed: their types, severities and the preference toggle that covers
//! each of them.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Urgency of an alert, ordered from `Low` to `Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Embed colour: grey, yellow, orange, red.
    pub fn colour(self) -> u32 {
        match self {
            Severity::Low => 0x95_A5_A6,
            Severity::Medium => 0xF1_C4_0F,
            Severity::High => 0xE6_7E_22,
            Severity::Critical => 0xE7_4C_3C,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity {other:?}; expected low, medium, high or critical"
            )),
        }
    }
}

/// The event types of the feed contract. Anything else is `Unknown` and becomes a generic alert.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    DeliveryFailure,
    OptOut,
    InboundSms,
    SpamComplaint,
    PaymentSucceeded,
    PaymentFailed,
    UsageThreshold,
    HighErrorRate,
    Outage,
    /// The sample alert of `/alerts test`; it never comes from the feed.
    Test,
    Unknown(String),
}

/// The preference toggle that covers an event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    DeliveryFailures,
    OptOuts,
    InboundSms,
    SpamComplaints,
    Billing,
    Service,
    /// Unknown types and the test alert: no toggle, only the severity filter and the mute.
    Other,
}

/// Type name of the sample alert that `/alerts test` stores. The colon keeps it apart from the
/// feed's dotted type names, so a feed event named `test` stays an unknown type.
pub const TEST_TYPE_NAME: &str = "bot:test";

impl EventKind {
    pub fn parse(type_name: &str) -> EventKind {
        match type_name {
            "delivery_failure" => EventKind::DeliveryFailure,
            "opt_out" => EventKind::OptOut,
            "inbound_sms" => EventKind::InboundSms,
            "spam_complaint" => EventKind::SpamComplaint,
            "billing.payment_succeeded" => EventKind::PaymentSucceeded,
            "billing.payment_failed" => EventKind::PaymentFailed,
            "billing.usage_threshold" => EventKind::UsageThreshold,
            "service.high_error_rate" => EventKind::HighErrorRate,
            "service.outage" => EventKind::Outage,
            TEST_TYPE_NAME => EventKind::Test,
            other => EventKind::Unknown(other.to_owned()),
        }
    }

    /// Returns the severity of the type for an event without its own: medium for unknown types.
    pub fn default_severity(&self) -> Severity {
        match self {
            EventKind::DeliveryFailure => Severity::Medium,
            EventKind::OptOut => Severity::Low,
            EventKind::InboundSms => Severity::Low,
            EventKind::SpamComplaint => Severity::Critical,
            EventKind::PaymentSucceeded => Severity::Low,
            EventKind::PaymentFailed => Severity::High,
            EventKind::UsageThreshold => Severity::Medium,
            EventKind::HighErrorRate => Severity::High,
            EventKind::Outage => Severity::Critical,
            EventKind::Test => Severity::Low,
            EventKind::Unknown(_) => Severity::Medium,
        }
    }

    pub fn category(&self) -> Category {
        match self {
            EventKind::DeliveryFailure => Category::DeliveryFailures,
            EventKind::OptOut => Category::OptOuts,
            EventKind::InboundSms => Category::InboundSms,
            EventKind::SpamComplaint => Category::SpamComplaints,
            EventKind::PaymentSucceeded | EventKind::PaymentFailed | EventKind::UsageThreshold => {
                Category::Billing
            }
            EventKind::HighErrorRate | EventKind::Outage => Category::Service,
            EventKind::Test | EventKind::Unknown(_) => Category::Other,
        }
    }

    /// Returns a short title for embeds and digests.
    pub fn title(&self) -> String {
        match self {
            EventKind::DeliveryFailure => "Delivery failure".to_owned(),
            EventKind::OptOut => "Opt-out".to_owned(),
            EventKind::InboundSms => "Inbound SMS".to_owned(),
            EventKind::SpamComplaint => "Spam complaint".to_owned(),
            EventKind::PaymentSucceeded => "Payment succeeded".to_owned(),
            EventKind::PaymentFailed => "Payment failed".to_owned(),
            EventKind::UsageThreshold => "Usage threshold reached".to_owned(),
            EventKind::HighErrorRate => "High error rate".to_owned(),
            EventKind::Outage => "Service outage".to_owned(),
            EventKind::Test => "Test alert".to_owned(),
            EventKind::Unknown(name) => format!("Alert: {name}"),
        }
    }

    /// Returns whether the internal `billing-alerts` channel gets this kind: payment failures and spam
    /// complaints.
    pub fn goes_to_billing_channel(&self) -> bool {
        matches!(self, EventKind::PaymentFailed | EventKind::SpamComplaint)
    }
}

/// One event as fetched from the feed, after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub type_name: String,
    pub kind: EventKind,
    pub severity: Severity,
    pub occurred_at: DateTime<Utc>,
    /// The `data` object as received; fields are read when rendering.
    pub data: Value,
}

/// Reason one entry of the feed could not be used. The poller logs it and skips the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event is not a JSON object")]
    NotAnObject,
    #[error("the event has no string `id`")]
    MissingId,
    #[error("event {id} has no string `type`")]
    MissingType { id: String },
}

impl Event {
    /// Reads one feed entry. An unknown type or an invalid `severity` or `occurred_at` does not
    /// reject the event, because a new event kind must never stop the feed: the severity falls
    /// back to the type's default and the time to `received_at`.
    pub fn from_feed(value: &Value, received_at: DateTime<Utc>) -> Result<Event, EventError> {
        let object = value.as_object().ok_or(EventError::NotAnObject)?;
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or(EventError::MissingId)?
            .to_owned();
        let type_name = object
            .get("type")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| EventError::MissingType { id: id.clone() })?
            .to_owned();
        let kind = EventKind::parse(&type_name);
        let severity = object
            .get("severity")
            .and_then(Value::as_str)
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| kind.default_severity());
        let occurred_at = object
            .get("occurred_at")
            .and_then(Value::as_str)
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc))
            .unwrap_or(received_at);
        let data = object.get("data").cloned().unwrap_or(Value::Null);
        Ok(Event {
            id,
            type_name,
            kind,
            severity,
            occurred_at,
            data,
        })
    }

    /// Returns a string field of `data`, or a number rendered as text.
    pub fn data_text(&self, field: &str) -> Option<String> {
        match self.data.get(field)? {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    }
}

/// Remembers which unknown event types were already logged, so each is logged once per process.
#[derive(Default)]
pub struct UnknownTypeLog {
    seen: Mutex<HashSet<String>>,
}

impl UnknownTypeLog {
    /// Returns true the first time `type_name` is seen.
    pub fn first_sighting(&self, type_name: &str) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        seen.insert(type_name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_type_test_is_unknown() {
        assert_eq!(
            EventKind::parse("test"),
            EventKind::Unknown("test".to_owned())
        );
        assert_eq!(EventKind::parse(TEST_TYPE_NAME), EventKind::Test);
    }
    use serde_json::json;

    #[test]
    fn default_severity_per_type() {
        let cases = [
            ("delivery_failure", Severity::Medium),
            ("opt_out", Severity::Low),
            ("inbound_sms", Severity::Low),
            ("spam_complaint", Severity::Critical),
            ("billing.payment_succeeded", Severity::Low),
            ("billing.payment_failed", Severity::High),
            ("billing.usage_threshold", Severity::Medium),
            ("service.high_error_rate", Severity::High),
            ("service.outage", Severity::Critical),
            ("brand_new.kind", Severity::Medium),
        ];
        for (name, expected) in cases {
            let event =
                Event::from_feed(&json!({"id": "e1", "type": name, "data": {}}), Utc::now())
                    .unwrap();
            assert_eq!(event.severity, expected, "{name}");
        }
    }

    #[test]
    fn own_severity_overrides_default() {
        let event = Event::from_feed(
            &json!({"id": "e1", "type": "opt_out", "severity": "critical"}),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(event.severity, Severity::Critical);

        let unknown = Event::from_feed(
            &json!({"id": "e2", "type": "x.y", "severity": "HIGH"}),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(unknown.severity, Severity::High);
        assert_eq!(unknown.kind, EventKind::Unknown("x.y".into()));
    }

    #[test]
    fn invalid_severity_and_time_fall_back() {
        let received = Utc::now();
        let event = Event::from_feed(
            &json!({"id": "e1", "type": "billing.payment_failed", "severity": "urgent",
                    "occurred_at": "yesterday"}),
            received,
        )
        .unwrap();
        assert_eq!(event.severity, Severity::High);
        assert_eq!(event.occurred_at, received);
    }

    #[test]
    fn malformed_entries_rejected() {
        let now = Utc::now();
        assert_eq!(
            Event::from_feed(&json!("text"), now),
            Err(EventError::NotAnObject)
        );
        assert_eq!(
            Event::from_feed(&json!({"type": "opt_out"}), now),
            Err(EventError::MissingId)
        );
        assert_eq!(
            Event::from_feed(&json!({"id": "e9"}), now),
            Err(EventError::MissingType { id: "e9".into() })
        );
    }

    #[test]
    fn billing_channel_kinds() {
        assert!(EventKind::PaymentFailed.goes_to_billing_channel());
        assert!(EventKind::SpamComplaint.goes_to_billing_channel());
        assert!(!EventKind::PaymentSucceeded.goes_to_billing_channel());
        assert!(!EventKind::Outage.goes_to_billing_channel());
    }

    #[test]
    fn unknown_type_logged_once() {
        let log = UnknownTypeLog::default();
        assert!(log.first_sighting("a"));
        assert!(!log.first_sighting("a"));
        assert!(log.first_sighting("b"));
    }

    #[test]
    fn severity_parses_and_orders() {
        assert_eq!("Medium".parse::<Severity>().unwrap(), Severity::Medium);
        assert!("loud".parse::<Severity>().is_err());
        assert!(Severity::Low < Severity::Critical);
    }
}
