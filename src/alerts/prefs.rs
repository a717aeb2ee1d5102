//! Alert preferences of a linked user, and the mute durations `/alerts mute` accepts.

use chrono::{DateTime, Duration, Utc};

use super::event::{Category, Event, Severity};

/// Maximum mute that `/alerts mute` accepts, in days.
pub const MAX_MUTE_DAYS: i64 = 30;

/// One user's alert settings. The defaults are the product's: delivery failures, opt-outs,
/// billing, spam complaints and service alerts on, inbound SMS off, no severity filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub delivery_failures: bool,
    pub opt_outs: bool,
    pub inbound_sms: bool,
    pub billing: bool,
    pub spam_complaints: bool,
    pub service: bool,
    pub minimum_severity: Severity,
    pub muted_until: Option<DateTime<Utc>>,
    /// Discord returned 50007 for a DM: DMs are skipped until the user runs a command again.
    pub dm_closed: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            delivery_failures: true,
            opt_outs: true,
            inbound_sms: false,
            billing: true,
            spam_complaints: true,
            service: true,
            minimum_severity: Severity::Low,
            muted_until: None,
            dm_closed: false,
        }
    }
}

/// The options of `/alerts configure`. `Db::update_alert_preferences` applies them in one SQL
/// `UPDATE`, where `None` leaves a setting unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreferenceChanges {
    pub delivery_failures: Option<bool>,
    pub opt_outs: Option<bool>,
    pub inbound_sms: Option<bool>,
    pub billing: Option<bool>,
    pub spam_complaints: Option<bool>,
    pub service: Option<bool>,
    pub minimum_severity: Option<Severity>,
}

impl PreferenceChanges {
    pub fn is_empty(&self) -> bool {
        *self == PreferenceChanges::default()
    }
}

impl Preferences {
    /// Returns whether the toggle for `category` is on. Kinds without a toggle are always on.
    pub fn category_enabled(&self, category: Category) -> bool {
        match category {
            Category::DeliveryFailures => self.delivery_failures,
            Category::OptOuts => self.opt_outs,
            Category::InboundSms => self.inbound_sms,
            Category::SpamComplaints => self.spam_complaints,
            Category::Billing => self.billing,
            Category::Service => self.service,
            Category::Other => true,
        }
    }

    pub fn is_muted(&self, now: DateTime<Utc>) -> bool {
        self.muted_until.is_some_and(|until| until > now)
    }

    /// Returns whether the user wants `event` by DM. A critical alert passes the mute but not a toggle
    /// that is off or a minimum severity of critical; a mute silences everything else.
    pub fn wants(&self, event: &Event, now: DateTime<Utc>) -> bool {
        if !self.category_enabled(event.kind.category()) {
            return false;
        }
        if event.severity < self.minimum_severity {
            return false;
        }
        event.severity == Severity::Critical || !self.is_muted(now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuteDurationError {
    #[error(
        "`{0}` is not a valid duration; use a whole number followed by m, h or d, such as 30m, 2h or 1d"
    )]
    Invalid(String),
    #[error("`{0}` is longer than the maximum mute of {MAX_MUTE_DAYS} days (30d or 720h)")]
    TooLong(String),
}

/// Parses a mute duration: a positive whole number and `m` (minutes), `h` (hours) or `d` (days).
pub fn parse_mute_duration(input: &str) -> Result<Duration, MuteDurationError> {
    let text = input.trim().to_ascii_lowercase();
    let invalid = || MuteDurationError::Invalid(input.trim().to_owned());
    let unit = text.chars().last().ok_or_else(invalid)?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 7 {
        return Err(invalid());
    }
    let amount: i64 = digits.parse().map_err(|_| invalid())?;
    if amount == 0 {
        return Err(invalid());
    }
    let minutes = match unit {
        'm' => amount,
        'h' => amount * 60,
        'd' => amount * 24 * 60,
        _ => return Err(invalid()),
    };
    if minutes > MAX_MUTE_DAYS * 24 * 60 {
        return Err(MuteDurationError::TooLong(input.trim().to_owned()));
    }
    Ok(Duration::minutes(minutes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(type_name: &str, severity: Option<&str>) -> Event {
        let mut value = json!({"id": "e1", "type": type_name, "data": {}});
        if let Some(severity) = severity {
            value["severity"] = json!(severity);
        }
        Event::from_feed(&value, Utc::now()).unwrap()
    }

    #[test]
    fn defaults_match_product() {
        let prefs = Preferences::default();
        let now = Utc::now();
        assert!(prefs.wants(&event("delivery_failure", None), now));
        assert!(prefs.wants(&event("opt_out", None), now));
        assert!(!prefs.wants(&event("inbound_sms", None), now));
        assert!(prefs.wants(&event("spam_complaint", None), now));
        assert!(prefs.wants(&event("billing.payment_succeeded", None), now));
        assert!(prefs.wants(&event("new.kind", None), now));
    }

    #[test]
    fn minimum_severity_filters_below() {
        let prefs = Preferences {
            minimum_severity: Severity::High,
            ..Preferences::default()
        };
        let now = Utc::now();
        assert!(!prefs.wants(&event("delivery_failure", None), now));
        assert!(prefs.wants(&event("billing.payment_failed", None), now));
        assert!(prefs.wants(&event("opt_out", Some("high")), now));
    }

    #[test]
    fn mute_passes_only_critical_until_it_ends() {
        let now = Utc::now();
        let prefs = Preferences {
            muted_until: Some(now + Duration::minutes(5)),
            ..Preferences::default()
        };
        assert!(!prefs.wants(&event("billing.payment_failed", None), now));
        assert!(prefs.wants(&event("service.outage", None), now));
        let later = now + Duration::minutes(6);
        assert!(prefs.wants(&event("billing.payment_failed", None), later));
    }

    #[test]
    fn mute_durations_accepted() {
        assert_eq!(parse_mute_duration("30m").unwrap(), Duration::minutes(30));
        assert_eq!(parse_mute_duration(" 2H ").unwrap(), Duration::hours(2));
        assert_eq!(parse_mute_duration("1d").unwrap(), Duration::days(1));
        assert_eq!(parse_mute_duration("30d").unwrap(), Duration::days(30));
    }

    #[test]
    fn mute_durations_rejected() {
        for input in [
            "",
            "m",
            "5",
            "5x",
            "-5m",
            "0h",
            "1.5h",
            "2 h",
            "1w",
            "h2",
            "99999999m",
        ] {
            assert!(
                matches!(
                    parse_mute_duration(input),
                    Err(MuteDurationError::Invalid(_))
                ),
                "{input:?} was accepted"
            );
        }
        for input in ["31d", "721h", "43201m"] {
            assert!(
                matches!(
                    parse_mute_duration(input),
                    Err(MuteDurationError::TooLong(_))
                ),
                "{input:?} was not reported as too long"
            );
        }
        let message = parse_mute_duration("soon").unwrap_err().to_string();
        assert!(message.contains("30m, 2h or 1d"), "{message}");
    }
}
