//! Mutable simulator state shared by the HTTP handlers and [`SimHandle`](crate::SimHandle).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fault::{Fault, FaultKind};
use crate::feed::{prepare_event, EventFeed, FeedPage, UnknownCursor};
use crate::seed::{key_fingerprint, AccountStatus, Seed, SeedAccount};

/// One request to `/api/v2` and the status of the simulator's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the `/api/v2` prefix, such as `"/account"`.
    pub path: String,
    /// Raw query string without the `?`, when the request had one.
    pub query: Option<String>,
    /// Whether the request carried a non-empty `X-Api-Key` header.
    pub api_key_present: bool,
    /// Last 4 characters of the key, never the whole key.
    pub key_fingerprint: Option<String>,
    /// Status of the response, or 0 while there is none, as for requests held by `NoAnswer`.
    pub status: u16,
    pub received_at: DateTime<Utc>,
}

/// Errors of the calls that tests and the control API make to change the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("account {0:?} is not in the seed; use the id of a seeded account")]
    UnknownAccount(String),
    #[error("the key ending in {0:?} is not in the seed; only seeded keys can be revoked")]
    UnknownKey(String),
    #[error("events[{index}] is invalid: {reason}")]
    InvalidEvent { index: usize, reason: String },
}

/// Reason a request failed authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    MissingKey,
    InvalidKey,
    Suspended,
}

/// The account and role behind an authenticated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub account_id: String,
    pub role: String,
}

/// A fault as the control API lists it, with the key shortened to its fingerprint.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultSummary {
    pub key_fingerprint: Option<String>,
    pub path: Option<String>,
    pub times_remaining: Option<u32>,
    #[serde(flatten)]
    pub kind: FaultKind,
}

#[derive(Debug)]
struct KeyEntry {
    account_id: String,
    role: String,
    revoked: bool,
}

#[derive(Debug)]
struct AccountEntry {
    seed: SeedAccount,
    feed: EventFeed,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: HashMap<String, AccountEntry>,
    keys: HashMap<String, KeyEntry>,
    /// Active faults in the order they were added; a fault is removed when its `times` runs out.
    faults: Vec<Fault>,
    /// Recorded requests with an id, so that a response finds its request after a clear.
    requests: Vec<(u64, RecordedRequest)>,
    next_request_id: u64,
    next_event_number: u64,
}

/// Simulator state behind one lock. No method holds the lock across an `.await`.
#[derive(Debug)]
pub(crate) struct SimState {
    inner: Mutex<Inner>,
}

impl SimState {
    pub fn new(seed: Seed) -> SimState {
        let mut inner = Inner::default();
        for account in seed.accounts {
            for key in &account.keys {
                inner.keys.insert(
                    key.key.clone(),
                    KeyEntry {
                        account_id: account.id.clone(),
                        role: key.role.clone(),
                        revoked: false,
                    },
                );
            }
            inner.accounts.insert(
                account.id.clone(),
                AccountEntry {
                    seed: account,
                    feed: EventFeed::default(),
                },
            );
        }
        SimState {
            inner: Mutex::new(inner),
        }
    }

    // No method can panic halfway through a change, so a poisoned lock still guards consistent
    // data and the poison flag is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a new request and returns the id to pass to [`SimState::set_request_status`].
    pub fn record_request(&self, request: RecordedRequest) -> u64 {
        let mut inner = self.lock();
        inner.next_request_id += 1;
        let id = inner.next_request_id;
        inner.requests.push((id, request));
        id
    }

    pub fn set_request_status(&self, id: u64, status: u16) {
        let mut inner = self.lock();
        // Searching from the end finds recent requests at once.
        if let Some((_, request)) = inner
            .requests
            .iter_mut()
            .rev()
            .find(|(each, _)| *each == id)
        {
            request.status = status;
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .map(|(_, request)| request.clone())
            .collect()
    }

    /// Removes every recorded request and returns how many there were.
    pub fn clear_requests(&self) -> usize {
        std::mem::take(&mut self.lock().requests).len()
    }

    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every fault and returns how many there were.
    pub fn clear_faults(&self) -> usize {
        std::mem::take(&mut self.lock().faults).len()
    }

    pub fn faults(&self) -> Vec<FaultSummary> {
        self.lock()
            .faults
            .iter()
            .map(|fault| FaultSummary {
                key_fingerprint: fault.key.as_deref().map(key_fingerprint),
                path: fault.path.clone(),
                times_remaining: fault.times,
                kind: fault.kind.clone(),
            })
            .collect()
    }

    /// Finds the first fault that matches the request, uses up one of its `times` and returns it.
    pub fn take_fault(&self, key: Option<&str>, path: &str) -> Option<Fault> {
        let mut inner = self.lock();

        // A fault added with `times: Some(0)` never applies, so it is dropped here.
        inner.faults.retain(|fault| fault.times != Some(0));
        let index = inner
            .faults
            .iter()
            .position(|fault| fault.matches(key, path))?;

        let fault = &mut inner.faults[index];
        let applied = fault.clone();
        if let Some(times) = &mut fault.times {
            *times -= 1;
            if *times == 0 {
                inner.faults.remove(index);
            }
        }
        Some(applied)
    }

    /// Authenticates a key. A missing key fails first, then an unknown or revoked key, then a key
    /// of a suspended account.
    pub fn authenticate(&self, key: Option<&str>) -> Result<Caller, AuthFailure> {
        let key = key.ok_or(AuthFailure::MissingKey)?;
        let inner = self.lock();

        let entry = inner
            .keys
            .get(key)
            .filter(|entry| !entry.revoked)
            .ok_or(AuthFailure::InvalidKey)?;
        let account = inner
            .accounts
            .get(&entry.account_id)
            .ok_or(AuthFailure::InvalidKey)?;
        if account.seed.status == AccountStatus::Suspended {
            return Err(AuthFailure::Suspended);
        }

        Ok(Caller {
            account_id: entry.account_id.clone(),
            role: entry.role.clone(),
        })
    }

    /// Returns a copy of the account's current data, status included.
    pub fn account(&self, account_id: &str) -> Result<SeedAccount, SimError> {
        self.lock()
            .accounts
            .get(account_id)
            .map(|account| account.seed.clone())
            .ok_or_else(|| SimError::UnknownAccount(account_id.to_string()))
    }

    pub fn events_page(
        &self,
        account_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Result<FeedPage, UnknownCursor>, SimError> {
        let inner = self.lock();
        let account = inner
            .accounts
            .get(account_id)
            .ok_or_else(|| SimError::UnknownAccount(account_id.to_string()))?;
        Ok(account.feed.page(after, limit))
    }

    /// Appends events to an account's feed and returns their cursors.
    ///
    /// Every event is checked before any is stored, so a bad event leaves the feed unchanged.
    pub fn append_events(
        &self,
        account_id: &str,
        events: Vec<Value>,
    ) -> Result<Vec<String>, SimError> {
        let now = Utc::now();
        let mut inner = self.lock();
        if !inner.accounts.contains_key(account_id) {
            return Err(SimError::UnknownAccount(account_id.to_string()));
        }

        let mut prepared = Vec::with_capacity(events.len());
        let mut event_number = inner.next_event_number;
        for (index, event) in events.into_iter().enumerate() {
            let generated_id = || {
                event_number += 1;
                format!("evt_sim_{event_number:06}")
            };
            let event = prepare_event(event, generated_id, now)
                .map_err(|reason| SimError::InvalidEvent { index, reason })?;
            prepared.push(event);
        }
        inner.next_event_number = event_number;

        let Some(account) = inner.accounts.get_mut(account_id) else {
            return Err(SimError::UnknownAccount(account_id.to_string()));
        };
        let cursors = prepared
            .into_iter()
            .map(|event| account.feed.append(event))
            .collect();
        Ok(cursors)
    }

    pub fn set_account_status(
        &self,
        account_id: &str,
        status: AccountStatus,
    ) -> Result<(), SimError> {
        let mut inner = self.lock();
        let account = inner
            .accounts
            .get_mut(account_id)
            .ok_or_else(|| SimError::UnknownAccount(account_id.to_string()))?;
        account.seed.status = status;
        Ok(())
    }

    /// Revokes a key, so that later requests with it get 401 `invalid_api_key`. Revoking a key
    /// twice is not an error.
    pub fn revoke_key(&self, key: &str) -> Result<(), SimError> {
        let mut inner = self.lock();
        let entry = inner
            .keys
            .get_mut(key)
            .ok_or_else(|| SimError::UnknownKey(key_fingerprint(key)))?;
        entry.revoked = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OWNER_KEY: &str = "trk_TESTacmeOWNERkey0000000000000001";

    fn unauthorized(times: Option<u32>, path: Option<&str>) -> Fault {
        Fault {
            key: None,
            path: path.map(str::to_string),
            times,
            kind: FaultKind::Unauthorized,
        }
    }

    #[test]
    fn fault_times_run_out() {
        let state = SimState::new(Seed::demo());
        state.add_fault(unauthorized(Some(2), None));

        assert!(state.take_fault(None, "/account").is_some());
        assert!(state.take_fault(None, "/account").is_some());
        assert!(state.take_fault(None, "/account").is_none());
        assert!(state.faults().is_empty());
    }

    #[test]
    fn first_matching_fault_applies() {
        let state = SimState::new(Seed::demo());
        state.add_fault(unauthorized(Some(1), Some("/usage")));
        state.add_fault(Fault {
            kind: FaultKind::WrongShape,
            ..unauthorized(None, None)
        });

        let on_account = state.take_fault(None, "/account").unwrap();
        assert_eq!(on_account.kind, FaultKind::WrongShape);
        let on_usage = state.take_fault(None, "/usage").unwrap();
        assert_eq!(on_usage.kind, FaultKind::Unauthorized);
        let on_usage_again = state.take_fault(None, "/usage").unwrap();
        assert_eq!(on_usage_again.kind, FaultKind::WrongShape);
    }

    #[test]
    fn zero_times_never_applies() {
        let state = SimState::new(Seed::demo());
        state.add_fault(unauthorized(Some(0), None));
        assert!(state.take_fault(None, "/account").is_none());
    }

    #[test]
    fn authenticate_orders_failures() {
        let state = SimState::new(Seed::demo());
        assert_eq!(state.authenticate(None), Err(AuthFailure::MissingKey));
        assert_eq!(
            state.authenticate(Some("trk_unknown")),
            Err(AuthFailure::InvalidKey)
        );

        let caller = state.authenticate(Some(OWNER_KEY)).unwrap();
        assert_eq!(caller.account_id, "acc_8f2k1q");
        assert_eq!(caller.role, "owner");

        state
            .set_account_status("acc_8f2k1q", AccountStatus::Suspended)
            .unwrap();
        assert_eq!(
            state.authenticate(Some(OWNER_KEY)),
            Err(AuthFailure::Suspended)
        );

        state.revoke_key(OWNER_KEY).unwrap();
        assert_eq!(
            state.authenticate(Some(OWNER_KEY)),
            Err(AuthFailure::InvalidKey)
        );
    }

    #[test]
    fn bad_event_leaves_feed_unchanged() {
        let state = SimState::new(Seed::demo());
        let error = state
            .append_events(
                "acc_8f2k1q",
                vec![json!({"type": "opt_out"}), json!("text")],
            )
            .unwrap_err();
        assert!(
            matches!(error, SimError::InvalidEvent { index: 1, .. }),
            "{error}"
        );

        let page = state.events_page("acc_8f2k1q", None, 100).unwrap().unwrap();
        assert_eq!(page.next_cursor, "c_00000");
    }

    #[test]
    fn generated_event_ids_are_unique() {
        let state = SimState::new(Seed::demo());
        state
            .append_events("acc_8f2k1q", vec![json!({}), json!({})])
            .unwrap();
        state.append_events("acc_3m7x9p", vec![json!({})]).unwrap();

        let acme = state
            .events_page("acc_8f2k1q", Some("c_00000"), 10)
            .unwrap()
            .unwrap();
        let bluefin = state
            .events_page("acc_3m7x9p", Some("c_00000"), 10)
            .unwrap()
            .unwrap();
        let ids: Vec<&Value> = acme
            .events
            .iter()
            .chain(&bluefin.events)
            .map(|event| &event["id"])
            .collect();
        assert_eq!(ids, ["evt_sim_000001", "evt_sim_000002", "evt_sim_000003"]);
    }

    #[test]
    fn unknown_account_and_key_errors() {
        let state = SimState::new(Seed::demo());
        let error = state.append_events("acc_missing", vec![]).unwrap_err();
        assert!(error.to_string().contains("acc_missing"), "{error}");

        let error = state
            .revoke_key("trk_0123456789abcdefABCDEF0123456789")
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("6789"), "{message}");
        assert!(!message.contains("trk_0123"), "{message}");
    }
}
