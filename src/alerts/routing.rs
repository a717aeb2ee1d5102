//! Routing: which recipients get an event.

use chrono::{DateTime, Utc};

use super::event::{Event, Severity};
use super::prefs::Preferences;

/// Destination of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A DM to a linked user.
    Dm { user_id: u64 },
    /// The account's private channel.
    AccountChannel { channel_id: u64 },
    /// The internal channel that gets every critical alert of every account.
    AllAlerts { channel_id: u64 },
    /// The internal channel for payment failures and spam complaints.
    BillingAlerts { channel_id: u64 },
}

impl Target {
    pub fn kind(self) -> &'static str {
        match self {
            Target::Dm { .. } => "dm",
            Target::AccountChannel { .. } => "account_channel",
            Target::AllAlerts { .. } => "all_alerts",
            Target::BillingAlerts { .. } => "billing_alerts",
        }
    }

    /// Returns the user id of a DM, else the channel id.
    pub fn id(self) -> u64 {
        match self {
            Target::Dm { user_id } => user_id,
            Target::AccountChannel { channel_id }
            | Target::AllAlerts { channel_id }
            | Target::BillingAlerts { channel_id } => channel_id,
        }
    }

    /// Rebuilds a target from its stored kind and id.
    pub fn from_parts(kind: &str, id: u64) -> Option<Target> {
        match kind {
            "dm" => Some(Target::Dm { user_id: id }),
            "account_channel" => Some(Target::AccountChannel { channel_id: id }),
            "all_alerts" => Some(Target::AllAlerts { channel_id: id }),
            "billing_alerts" => Some(Target::BillingAlerts { channel_id: id }),
            _ => None,
        }
    }

    pub fn is_dm(self) -> bool {
        matches!(self, Target::Dm { .. })
    }
}

/// A linked user of the account and their preferences.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub user_id: u64,
    pub preferences: Preferences,
}

/// The internal staff channels from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct InternalChannels {
    pub all_alerts: Option<u64>,
    pub billing_alerts: Option<u64>,
}

/// Returns the targets of `event` for one account.
///
/// Each linked user gets a DM when their preferences want it and their DMs are not closed. The
/// account channel gets what the default preferences pass, so that inbound SMS stays off there
/// too, and also what a user with closed DMs wants. The internal channels get their copies regardless of any user's mute or filter. A
/// channel configured for two purposes gets one message.
pub fn route(
    event: &Event,
    recipients: &[Recipient],
    account_channel: Option<u64>,
    internal: InternalChannels,
    now: DateTime<Utc>,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut fallback_wanted = false;
    for recipient in recipients {
        if !recipient.preferences.wants(event, now) {
            continue;
        }
        if recipient.preferences.dm_closed {
            // The account channel replaces the DM of a user whose DMs are closed.
            fallback_wanted = true;
        } else {
            targets.push(Target::Dm {
                user_id: recipient.user_id,
            });
        }
    }

    let mut channels: Vec<u64> = Vec::new();
    let mut add_channel = |target: Target, targets: &mut Vec<Target>| {
        if !channels.contains(&target.id()) {
            channels.push(target.id());
            targets.push(target);
        }
    };
    if let Some(channel_id) = account_channel {
        if fallback_wanted || Preferences::default().wants(event, now) {
            add_channel(Target::AccountChannel { channel_id }, &mut targets);
        }
    }
    if let Some(channel_id) = internal.all_alerts {
        if event.severity == Severity::Critical {
            add_channel(Target::AllAlerts { channel_id }, &mut targets);
        }
    }
    if let Some(channel_id) = internal.billing_alerts {
        if event.kind.goes_to_billing_channel() {
            add_channel(Target::BillingAlerts { channel_id }, &mut targets);
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use serde_json::json;

    const ALL: u64 = 900;
    const BILLING: u64 = 901;
    const ACCOUNT: u64 = 800;

    fn event(type_name: &str) -> Event {
        Event::from_feed(
            &json!({"id": "e1", "type": type_name, "data": {}}),
            Utc::now(),
        )
        .unwrap()
    }

    fn internal() -> InternalChannels {
        InternalChannels {
            all_alerts: Some(ALL),
            billing_alerts: Some(BILLING),
        }
    }

    fn recipient(user_id: u64, preferences: Preferences) -> Recipient {
        Recipient {
            user_id,
            preferences,
        }
    }

    #[test]
    fn critical_reaches_internal_despite_mute() {
        let now = Utc::now();
        let muted = Preferences {
            muted_until: Some(now + Duration::hours(1)),
            minimum_severity: Severity::Critical,
            ..Preferences::default()
        };
        let targets = route(
            &event("spam_complaint"),
            &[recipient(1, muted)],
            Some(ACCOUNT),
            internal(),
            now,
        );
        assert_eq!(
            targets,
            vec![
                Target::Dm { user_id: 1 },
                Target::AccountChannel {
                    channel_id: ACCOUNT
                },
                Target::AllAlerts { channel_id: ALL },
                Target::BillingAlerts {
                    channel_id: BILLING
                },
            ]
        );
    }

    #[test]
    fn low_alert_skips_muted_and_internal() {
        let now = Utc::now();
        let muted = Preferences {
            muted_until: Some(now + Duration::hours(1)),
            ..Preferences::default()
        };
        let targets = route(
            &event("opt_out"),
            &[recipient(1, muted), recipient(2, Preferences::default())],
            Some(ACCOUNT),
            internal(),
            now,
        );
        assert_eq!(
            targets,
            vec![
                Target::Dm { user_id: 2 },
                Target::AccountChannel {
                    channel_id: ACCOUNT
                }
            ]
        );
    }

    #[test]
    fn payment_failed_goes_to_billing_only() {
        let targets = route(
            &event("billing.payment_failed"),
            &[],
            None,
            internal(),
            Utc::now(),
        );
        assert_eq!(
            targets,
            vec![Target::BillingAlerts {
                channel_id: BILLING
            }]
        );
    }

    #[test]
    fn closed_dms_go_to_account_channel() {
        let closed = Preferences {
            dm_closed: true,
            inbound_sms: true,
            ..Preferences::default()
        };
        let targets = route(
            &event("inbound_sms"),
            &[recipient(1, closed)],
            Some(ACCOUNT),
            InternalChannels::default(),
            Utc::now(),
        );
        assert_eq!(
            targets,
            vec![Target::AccountChannel {
                channel_id: ACCOUNT
            }]
        );
    }

    #[test]
    fn closed_dms_skipped() {
        let closed = Preferences {
            dm_closed: true,
            ..Preferences::default()
        };
        let targets = route(
            &event("delivery_failure"),
            &[recipient(1, closed)],
            None,
            InternalChannels::default(),
            Utc::now(),
        );
        assert!(targets.is_empty(), "{targets:?}");
    }

    #[test]
    fn inbound_sms_only_to_users_who_enabled_it() {
        let enabled = Preferences {
            inbound_sms: true,
            ..Preferences::default()
        };
        let targets = route(
            &event("inbound_sms"),
            &[recipient(1, enabled), recipient(2, Preferences::default())],
            Some(ACCOUNT),
            internal(),
            Utc::now(),
        );
        assert_eq!(targets, vec![Target::Dm { user_id: 1 }]);
    }

    #[test]
    fn shared_internal_channel_gets_one_copy() {
        let same = InternalChannels {
            all_alerts: Some(ALL),
            billing_alerts: Some(ALL),
        };
        let targets = route(&event("spam_complaint"), &[], None, same, Utc::now());
        assert_eq!(targets, vec![Target::AllAlerts { channel_id: ALL }]);
    }

    #[test]
    fn target_parts_round_trip() {
        for target in [
            Target::Dm { user_id: 5 },
            Target::AccountChannel { channel_id: 6 },
            Target::AllAlerts { channel_id: 7 },
            Target::BillingAlerts { channel_id: 8 },
        ] {
            assert_eq!(Target::from_parts(target.kind(), target.id()), Some(target));
        }
        assert_eq!(Target::from_parts("smoke_signal", 1), None);
    }
}
