//! Response bodies of the Trackly endpoints the bot calls, and their display helpers.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub status: String,
    /// Role of the key's owner: `owner`, `member` or `viewer`.
    pub role: String,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

impl Account {
    /// Returns the role as users see it: an account owner is an admin.
    pub fn display_role(role: &str) -> &str {
        match role {
            "owner" => "admin (owner)",
            "member" => "member",
            "viewer" => "viewer",
            other => other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsagePeriod {
    Today,
    Week,
    Month,
    All,
}

impl UsagePeriod {
    pub fn as_query(self) -> &'static str {
        match self {
            UsagePeriod::Today => "today",
            UsagePeriod::Week => "week",
            UsagePeriod::Month => "month",
            UsagePeriod::All => "all",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            UsagePeriod::Today => "Today",
            UsagePeriod::Week => "This week",
            UsagePeriod::Month => "This month",
            UsagePeriod::All => "All time",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Usage {
    pub period: String,
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    pub end: DateTime<Utc>,
    pub outbound_messages: u64,
    pub inbound_messages: u64,
    pub segments: u64,
    pub estimated_cost: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Balance {
    pub unbilled_segments: u64,
    pub estimated_amount: Money,
    #[serde(default)]
    pub last_billed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub next_charge_at_segments: Option<u64>,
}

/// One page of `GET /events`. Events stay raw JSON here so that one malformed or unknown event
/// never fails the whole page; the alerts module reads each one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventsPage {
    pub events: Vec<serde_json::Value>,
    pub next_cursor: String,
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Deserialize)]
pub(crate) struct AccountEnvelope {
    pub account: Account,
}

#[derive(Deserialize)]
pub(crate) struct UsageEnvelope {
    pub usage: Usage,
}

#[derive(Deserialize)]
pub(crate) struct BalanceEnvelope {
    pub balance: Balance,
}

/// An amount of money as Trackly sends it: a decimal string and an ISO 4217 currency code.
/// The amount stays a string so that no float rounding ever changes what a user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    amount: String,
    currency: String,
}

impl Money {
    /// Validates a decimal amount such as `67.60` or `-3` and a three-letter currency code.
    pub fn new(amount: &str, currency: &str) -> Result<Money, String> {
        let digits = amount.strip_prefix('-').unwrap_or(amount);
        let (whole, fraction) = match digits.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (digits, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
            return Err(format!("amount {amount:?} is not a decimal number"));
        }
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("currency {currency:?} is not an ISO 4217 code"));
        }
        Ok(Money {
            amount: amount.to_owned(),
            currency: currency.to_owned(),
        })
    }

    pub fn amount(&self) -> &str {
        &self.amount
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }
}

/// Formats as `$1,234.50` for dollars, euros and pounds, else as `1,234.50 CHF`. The digits are
/// the ones Trackly sent, grouped by thousands.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sign, digits) = match self.amount.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", self.amount.as_str()),
        };
        let (whole, fraction) = match digits.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (digits, None),
        };
        let mut grouped = String::new();
        for (index, digit) in whole.chars().enumerate() {
            if index > 0 && (whole.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if let Some(fraction) = fraction {
            grouped.push('.');
            grouped.push_str(fraction);
        }
        let symbol = match self.currency.as_str() {
            "USD" => Some("$"),
            "EUR" => Some("€"),
            "GBP" => Some("£"),
            _ => None,
        };
        match symbol {
            Some(symbol) => write!(f, "{sign}{symbol}{grouped}"),
            None => write!(f, "{sign}{grouped} {}", self.currency),
        }
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            amount: String,
            currency: String,
        }
        let raw = Raw::deserialize(deserializer)?;
        Money::new(&raw.amount, &raw.currency).map_err(serde::de::Error::custom)
    }
}

/// Formats a count with thousands separators, as `12,840`.
pub fn format_count(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats_without_rounding() {
        let cases = [
            ("67.60", "USD", "$67.60"),
            ("1234567.891", "USD", "$1,234,567.891"),
            ("0.1", "EUR", "€0.1"),
            ("-18.95", "GBP", "-£18.95"),
            ("100", "CHF", "100 CHF"),
            (
                "999999999999999999.99",
                "USD",
                "$999,999,999,999,999,999.99",
            ),
        ];
        for (amount, currency, expected) in cases {
            let money = Money::new(amount, currency).unwrap();
            assert_eq!(money.to_string(), expected, "{amount} {currency}");
        }
    }

    #[test]
    fn money_rejects_non_decimal() {
        for amount in ["", "1e5", "1.", ".5", "1,000", "NaN", "--1", "12.3.4"] {
            assert!(
                Money::new(amount, "USD").is_err(),
                "{amount:?} was accepted"
            );
        }
        assert!(Money::new("1", "usd").is_err());
        assert!(Money::new("1", "US").is_err());
    }

    #[test]
    fn money_deserializes_from_contract_shape() {
        let money: Money =
            serde_json::from_str(r#"{"amount": "18.95", "currency": "USD"}"#).unwrap();
        assert_eq!(money.amount(), "18.95");
        assert!(serde_json::from_str::<Money>(r#"{"amount": 18.95, "currency": "USD"}"#).is_err());
    }

    #[test]
    fn count_groups_thousands() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(12840), "12,840");
        assert_eq!(format_count(1_000_000), "1,000,000");
    }
}
