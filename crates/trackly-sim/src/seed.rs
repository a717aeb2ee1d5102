//! Seed data: the accounts, API keys, usage, balances and lists that the simulator serves.

use std::collections::HashSet;
use std::fmt;

use anyhow::bail;
use chrono::DateTime;
use serde::{Deserialize, Serialize};

/// Seed file that ships with the crate and serves as the default for the binary.
pub const DEMO_SEED_TOML: &str = include_str!("../seed.example.toml");

/// Roles that a Trackly API key can have.
pub const KEY_ROLES: [&str; 3] = ["owner", "member", "viewer"];

/// Everything the simulator serves, usually read from a TOML file of `[[accounts]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    pub accounts: Vec<SeedAccount>,
}

/// One Trackly account with its keys and the figures its endpoints return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAccount {
    pub id: String,
    pub name: String,
    pub status: AccountStatus,
    /// RFC 3339 timestamp, returned as is by `GET /account`.
    pub created_at: String,
    pub keys: Vec<SeedKey>,
    pub usage: UsagePeriods,
    pub balance: SeedBalance,
    #[serde(default)]
    pub lists: Vec<SeedList>,
}

/// Account status as `GET /account` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    Suspended,
}

impl AccountStatus {
    /// Returns the wire name (`active` or `suspended`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API key of an account and the role of the user who owns it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedKey {
    /// `trk_` followed by 32 ASCII letters or digits.
    pub key: String,
    /// `owner`, `member` or `viewer`.
    pub role: String,
}

// The key is a secret even in a simulator, so debug output shows only its last 4 characters.
impl fmt::Debug for SeedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedKey")
            .field("key", &format_args!("…{}", key_fingerprint(&self.key)))
            .field("role", &self.role)
            .finish()
    }
}

/// Usage totals for each period that `GET /usage` accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePeriods {
    pub today: UsageTotals,
    pub week: UsageTotals,
    pub month: UsageTotals,
    pub all: UsageTotals,
}

/// Message counts, segments and estimated cost of one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageTotals {
    pub outbound_messages: u64,
    pub inbound_messages: u64,
    pub segments: u64,
    pub estimated_cost: Money,
}

/// A decimal amount kept as a string (never a float) with its ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Non-negative decimal such as `"67.60"`.
    pub amount: String,
    /// Three upper-case letters such as `"USD"`.
    pub currency: String,
}

/// Billing balance returned by `GET /billing/balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedBalance {
    pub unbilled_segments: u64,
    pub estimated_amount: Money,
    /// RFC 3339 timestamp of the last charge. Leave it out of the TOML for an account never billed.
    #[serde(default)]
    pub last_billed_at: Option<String>,
    pub next_charge_at_segments: u64,
}

/// A sending list (a phone number of the account) as `GET /lists` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedList {
    pub id: String,
    pub name: String,
    /// E.164 number such as `"+18005551234"`.
    pub number: String,
}

impl Seed {
    /// Parses and validates a TOML seed.
    ///
    /// Errors name the bad field by its path, for example `accounts[1].keys[0].role`.
    pub fn from_toml_str(text: &str) -> anyhow::Result<Seed> {
        let deserializer = toml::Deserializer::new(text);
        let seed: Seed = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            // toml's message already carries the line, column and source excerpt.
            let message = inner.message().to_string();
            let location = inner
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            if path.is_empty() || path == "." {
                anyhow::anyhow!("invalid seed TOML{location}: {message}")
            } else {
                anyhow::anyhow!("invalid seed field `{path}`{location}: {message}")
            }
        })?;

        seed.validate()?;
        Ok(seed)
    }

    /// Returns the demo seed, parsed from the embedded `seed.example.toml`.
    pub fn demo() -> Seed {
        // The embedded file is fixed at build time and a unit test parses it, so this cannot fail
        // at run time unless that test fails too.
        Seed::from_toml_str(DEMO_SEED_TOML).expect("the embedded seed.example.toml must be valid")
    }

    /// Checks the values that TOML types cannot express: formats, roles and unique ids and keys.
    ///
    /// The error names the field, for example `accounts[0].created_at`, and what it must look like.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut account_ids = HashSet::new();
        let mut keys = HashSet::new();

        for (index, account) in self.accounts.iter().enumerate() {
            let field = format!("accounts[{index}]");
            validate_account(account, &field)?;

            if !account_ids.insert(account.id.as_str()) {
                bail!(
                    "{field}.id: account id {:?} appears more than once; give each account its own id",
                    account.id
                );
            }

            for (key_index, key) in account.keys.iter().enumerate() {
                if !keys.insert(key.key.as_str()) {
                    bail!(
                        "{field}.keys[{key_index}].key: the key ending in {} appears more than once; \
                         each key belongs to exactly one account",
                        key_fingerprint(&key.key)
                    );
                }
            }
        }

        Ok(())
    }
}

fn validate_account(account: &SeedAccount, field: &str) -> anyhow::Result<()> {
    if account.id.trim().is_empty() {
        bail!("{field}.id: must not be empty");
    }
    if account.name.trim().is_empty() {
        bail!("{field}.name: must not be empty");
    }
    validate_timestamp(&account.created_at, &format!("{field}.created_at"))?;

    for (index, key) in account.keys.iter().enumerate() {
        let key_field = format!("{field}.keys[{index}]");
        if !is_valid_api_key(&key.key) {
            bail!(
                "{key_field}.key: invalid API key format (the key ending in {}): expected `trk_` \
                 followed by 32 ASCII letters or digits",
                key_fingerprint(&key.key)
            );
        }
        if !KEY_ROLES.contains(&key.role.as_str()) {
            bail!(
                "{key_field}.role: invalid role {:?}: expected owner, member or viewer",
                key.role
            );
        }
    }

    let periods = [
        ("today", &account.usage.today),
        ("week", &account.usage.week),
        ("month", &account.usage.month),
        ("all", &account.usage.all),
    ];
    for (period, totals) in periods {
        validate_money(
            &totals.estimated_cost,
            &format!("{field}.usage.{period}.estimated_cost"),
        )?;
    }

    validate_money(
        &account.balance.estimated_amount,
        &format!("{field}.balance.estimated_amount"),
    )?;
    if let Some(last_billed_at) = &account.balance.last_billed_at {
        validate_timestamp(last_billed_at, &format!("{field}.balance.last_billed_at"))?;
    }

    let mut list_ids = HashSet::new();
    for (index, list) in account.lists.iter().enumerate() {
        let list_field = format!("{field}.lists[{index}]");
        if list.id.trim().is_empty() {
            bail!("{list_field}.id: must not be empty");
        }
        if !list_ids.insert(list.id.as_str()) {
            bail!(
                "{list_field}.id: list id {:?} appears more than once in this account",
                list.id
            );
        }
        if !is_e164(&list.number) {
            bail!(
                "{list_field}.number: invalid phone number {:?}: expected E.164, `+` followed by \
                 up to 15 digits such as +18005551234",
                list.number
            );
        }
    }

    Ok(())
}

fn validate_timestamp(value: &str, field: &str) -> anyhow::Result<()> {
    match DateTime::parse_from_rfc3339(value) {
        Ok(_) => Ok(()),
        Err(error) => bail!(
            "{field}: invalid RFC 3339 timestamp {value:?} ({error}): expected a value such as \
             2025-03-15T14:30:00Z"
        ),
    }
}

fn validate_money(money: &Money, field: &str) -> anyhow::Result<()> {
    if !is_decimal(&money.amount) {
        bail!(
            "{field}.amount: invalid amount {:?}: expected a non-negative decimal string such as \"67.60\"",
            money.amount
        );
    }
    let currency_ok =
        money.currency.len() == 3 && money.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        bail!(
            "{field}.currency: invalid currency {:?}: expected an ISO 4217 code such as \"USD\"",
            money.currency
        );
    }
    Ok(())
}

fn is_decimal(value: &str) -> bool {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Checks the documented key format: `trk_` followed by 32 ASCII letters or digits.
pub(crate) fn is_valid_api_key(key: &str) -> bool {
    key.strip_prefix("trk_")
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Returns the last 4 characters of a key, the most of a key that logs and records may show.
pub(crate) fn key_fingerprint(key: &str) -> String {
    let count = key.chars().count();
    key.chars().skip(count.saturating_sub(4)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_seed_parses() {
        let seed = Seed::from_toml_str(DEMO_SEED_TOML).unwrap();
        assert_eq!(seed.accounts.len(), 2);
        assert_eq!(Seed::demo(), seed);
    }

    #[test]
    fn key_format_accepts_letters_and_digits() {
        assert!(is_valid_api_key("trk_0123456789abcdefABCDEF0123456789"));
        assert!(!is_valid_api_key("trk_0123456789abcdefABCDEF012345678"));
        assert!(!is_valid_api_key("trk_0123456789abcdefABCDEF01234567890"));
        assert!(!is_valid_api_key("trk_0123456789abcdefABCDEF012345678-"));
        assert!(!is_valid_api_key("key_0123456789abcdefABCDEF0123456789"));
    }

    #[test]
    fn fingerprint_keeps_last_four_characters() {
        assert_eq!(
            key_fingerprint("trk_0123456789abcdefABCDEF01234567xy"),
            "67xy"
        );
        assert_eq!(key_fingerprint("ab"), "ab");
    }

    #[test]
    fn decimal_and_e164_checks() {
        assert!(is_decimal("67.60"));
        assert!(is_decimal("0"));
        assert!(!is_decimal("67."));
        assert!(!is_decimal(".5"));
        assert!(!is_decimal("-1.00"));
        assert!(!is_decimal("1e3"));
        assert!(is_e164("+18005551234"));
        assert!(!is_e164("18005551234"));
        assert!(!is_e164("+08005551234"));
        assert!(!is_e164("+1800555123456789"));
    }
}
