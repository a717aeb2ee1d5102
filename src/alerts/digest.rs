//! Storm coalescing: per recipient, the first `threshold` alerts of a window go out one by one,
//! and the rest of that window goes out as one digest when the window ends. Critical alerts
//! are never held and do not count against the threshold.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::routing::Target;

/// Sending decision for the due deliveries of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// Send this delivery as its own message.
    Single(i64),
    /// Send these deliveries as one digest message.
    Digest(Vec<i64>),
}

/// The plan for one recipient: batches to send now, and deliveries to hold until a time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub batches: Vec<Batch>,
    pub held: Vec<i64>,
    pub hold_until: Option<DateTime<Utc>>,
    /// True when the last batch is the digest of an ended window: the alerts the window held,
    /// which arrived before it ended. The window stays until that batch is sent or fails for
    /// good (see [`DigestPlanner::end_window`]), so that a retry, also after a restart, plans
    /// the same deliveries as one message again.
    pub ends_window: bool,
}

/// The digest window of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// Start of the window, set when the first non-critical alert after the previous window was
    /// planned.
    pub start: DateTime<Utc>,
    /// Alerts sent individually in this window.
    pub sent: u32,
    /// Whether the window held alerts, which then go out as one digest when it ends.
    pub overflowed: bool,
    /// The highest delivery id in the window's digest, set when the digest is first planned:
    /// its retries carry the same deliveries, and so the same nonce.
    pub digest_last_id: Option<i64>,
}

/// The digest windows of all recipients. The planner does no I/O: the dispatcher stores each
/// window change with [`DigestPlanner::window`] and restores the stored windows on start with
/// [`DigestPlanner::restore`], so that a restart continues them.
#[derive(Debug)]
pub struct DigestPlanner {
    threshold: u32,
    window: Duration,
    windows: HashMap<Target, WindowState>,
}

/// One due delivery, as the planner reads it.
#[derive(Debug, Clone, Copy)]
pub struct DueItem {
    pub id: i64,
    pub critical: bool,
    pub created_at: DateTime<Utc>,
}

/// How long a non-critical alert that arrived after an overflowed window ended waits while that
/// window's digest is still owed, before it is planned again.
pub const NEWCOMER_WAIT: Duration = Duration::seconds(5);

impl DigestPlanner {
    pub fn new(threshold: u32, window_secs: u64) -> Self {
        Self {
            threshold: threshold.max(1),
            window: Duration::seconds(i64::try_from(window_secs).unwrap_or(i64::MAX / 1000)),
            windows: HashMap::new(),
        }
    }

    pub fn window_secs(&self) -> u64 {
        u64::try_from(self.window.num_seconds()).unwrap_or(0)
    }

    /// Returns the length of a window.
    pub fn window_length(&self) -> Duration {
        self.window
    }

    /// Returns the current window of `target`. An overflowed window that has ended stays until
    /// its digest is done (see [`end_window`](Self::end_window)); another ended window stays
    /// until the next plan for `target`.
    pub fn window(&self, target: Target) -> Option<WindowState> {
        self.windows.get(&target).copied()
    }

    /// Returns the end of `target`'s window when that window has ended at `now` and overflowed,
    /// so that it may still owe a digest of the alerts it held. The end is in whole
    /// milliseconds, as the database stores times.
    pub fn owed_digest_end(&self, target: Target, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let window = self.windows.get(&target)?;
        let end = window.start + self.window;
        let end = DateTime::from_timestamp_millis(end.timestamp_millis()).unwrap_or(end);
        (window.overflowed && now >= end).then_some(end)
    }

    /// Sets the window of `target`, replacing any window it had, as stored before a restart.
    pub fn restore(&mut self, target: Target, state: WindowState) {
        self.windows.insert(target, state);
    }

    /// Counts a non-critical single alert to `target` that Discord confirmed against the
    /// target's window.
    pub fn single_sent(&mut self, target: Target) {
        if let Some(window) = self.windows.get_mut(&target) {
            window.sent = window.sent.saturating_add(1);
        }
    }

    /// Removes the window of `target` when it has ended at `now`, after the batch that
    /// carried the rest of it was sent or failed for good.
    pub fn end_window(&mut self, target: Target, now: DateTime<Utc>) {
        if self
            .windows
            .get(&target)
            .is_some_and(|window| now >= window.start + self.window)
        {
            self.windows.remove(&target);
        }
    }

    /// Plans the due deliveries of `target`, oldest first.
    pub fn plan(&mut self, target: Target, items: &[DueItem], now: DateTime<Utc>) -> Plan {
        let mut plan = Plan::default();
        let mut normal = Vec::new();
        for item in items {
            if item.critical {
                plan.batches.push(Batch::Single(item.id));
            } else {
                normal.push(item.id);
            }
        }
        if normal.is_empty() {
            return plan;
        }

        if let Some(end) = self.owed_digest_end(target, now) {
            // The digest carries what arrived before the window ended, fixed by the highest
            // delivery id when it is first planned, so that a retry, also after a restart,
            // carries the same deliveries. Later alerts wait for it, for one window length at
            // most: after that they join it, so that a digest that keeps failing does not hold
            // them back on its own.
            let join_all = now >= end + self.window;
            let last_id = self
                .windows
                .get(&target)
                .and_then(|window| window.digest_last_id)
                .filter(|_| !join_all);
            let (members, newcomers): (Vec<&DueItem>, Vec<&DueItem>) = items
                .iter()
                .filter(|item| !item.critical)
                .partition(|item| match last_id {
                    Some(last_id) => item.id <= last_id,
                    None => join_all || item.created_at < end,
                });
            if last_id.is_none() {
                if let (Some(window), Some(last)) = (
                    self.windows.get_mut(&target),
                    members.iter().map(|item| item.id).max(),
                ) {
                    window.digest_last_id = Some(last);
                }
            }
            plan.batches.extend(match members.as_slice() {
                [] => None,
                [only] => Some(Batch::Single(only.id)),
                many => Some(Batch::Digest(many.iter().map(|item| item.id).collect())),
            });
            plan.ends_window = !members.is_empty();
            if !newcomers.is_empty() {
                plan.held = newcomers.iter().map(|item| item.id).collect();
                plan.hold_until = Some(now + NEWCOMER_WAIT);
            }
            return plan;
        }
        if let Some(window) = self.windows.get(&target).copied() {
            if now >= window.start + self.window {
                self.windows.remove(&target);
            }
        }

        let window = self.windows.entry(target).or_insert(WindowState {
            start: now,
            sent: 0,
            overflowed: false,
            digest_last_id: None,
        });
        // Only singles that Discord confirmed count (see `single_sent`), so a single that
        // failed and comes due again is planned again within the same allowance.
        let mut planned = window.sent;
        for id in normal {
            if planned < self.threshold {
                planned += 1;
                plan.batches.push(Batch::Single(id));
            } else {
                window.overflowed = true;
                plan.held.push(id);
            }
        }
        if !plan.held.is_empty() {
            plan.hold_until = Some(window.start + self.window);
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Target = Target::Dm { user_id: 1 };

    fn items(range: std::ops::Range<i64>, critical: bool) -> Vec<DueItem> {
        range
            .map(|id| DueItem {
                id,
                critical,
                created_at: DateTime::UNIX_EPOCH,
            })
            .collect()
    }

    /// Plans, then confirms every planned single as the dispatcher does after Discord
    /// accepted it.
    fn sent_plan(
        planner: &mut DigestPlanner,
        target: Target,
        due: &[DueItem],
        now: DateTime<Utc>,
    ) -> Plan {
        let plan = planner.plan(target, due, now);
        for batch in &plan.batches {
            if let Batch::Single(id) = batch {
                if due.iter().any(|item| item.id == *id && !item.critical) {
                    planner.single_sent(target);
                }
            }
        }
        plan
    }

    #[test]
    fn unsent_single_is_planned_again_within_the_allowance() {
        let mut planner = DigestPlanner::new(2, 60);
        let now = Utc::now();
        let plan = planner.plan(TARGET, &items(0..2, false), now);
        assert_eq!(plan.batches, vec![Batch::Single(0), Batch::Single(1)]);
        // Only 0 went out; 1 failed and comes due again with a new alert.
        planner.single_sent(TARGET);
        let retry = planner.plan(TARGET, &items(1..3, false), now + Duration::seconds(2));
        assert_eq!(retry.batches, vec![Batch::Single(1)]);
        assert_eq!(retry.held, vec![2]);
        assert_eq!(planner.window(TARGET).map(|w| w.sent), Some(1));
    }

    #[test]
    fn storm_sends_threshold_then_digest() {
        let mut planner = DigestPlanner::new(5, 60);
        let start = Utc::now();
        let plan = sent_plan(&mut planner, TARGET, &items(0..200, false), start);
        assert_eq!(plan.batches, (0..5).map(Batch::Single).collect::<Vec<_>>());
        assert_eq!(plan.held.len(), 195);
        assert_eq!(plan.hold_until, Some(start + Duration::seconds(60)));

        // Before the window ends, held deliveries that come due are held again.
        let early = sent_plan(
            &mut planner,
            TARGET,
            &items(5..10, false),
            start + Duration::seconds(30),
        );
        assert!(early.batches.is_empty());
        assert_eq!(early.held.len(), 5);

        let end = start + Duration::seconds(60);
        let plan = sent_plan(&mut planner, TARGET, &items(5..200, false), end);
        assert_eq!(plan.batches, vec![Batch::Digest((5..200).collect())]);
        assert!(plan.held.is_empty());
    }

    #[test]
    fn critical_never_held() {
        let mut planner = DigestPlanner::new(2, 60);
        let now = Utc::now();
        let mut due = items(0..5, false);
        due.extend(items(10..13, true));
        let plan = sent_plan(&mut planner, TARGET, &due, now);
        let singles: Vec<i64> = plan
            .batches
            .iter()
            .filter_map(|batch| match batch {
                Batch::Single(id) => Some(*id),
                Batch::Digest(_) => None,
            })
            .collect();
        assert_eq!(singles, vec![10, 11, 12, 0, 1]);
        assert_eq!(plan.held, vec![2, 3, 4]);
    }

    #[test]
    fn ended_window_stays_until_its_digest_is_done() {
        let mut planner = DigestPlanner::new(2, 60);
        let start = Utc::now();
        let plan = sent_plan(&mut planner, TARGET, &items(0..6, false), start);
        assert_eq!(plan.held, vec![2, 3, 4, 5]);
        let end = start + Duration::seconds(60);
        let plan = sent_plan(&mut planner, TARGET, &items(2..6, false), end);
        assert_eq!(plan.batches, vec![Batch::Digest(vec![2, 3, 4, 5])]);
        assert!(plan.ends_window);
        let ended = planner.window(TARGET);
        assert!(ended.is_some_and(|window| window.overflowed));

        // The digest failed; its retry comes due a few seconds later. Alert 6 was created
        // before the window ended but stored after the digest was planned: the retry keeps the
        // digest's members, and so its nonce, and 6 waits.
        let retry = sent_plan(
            &mut planner,
            TARGET,
            &items(2..7, false),
            end + Duration::seconds(5),
        );
        assert_eq!(retry.batches, vec![Batch::Digest(vec![2, 3, 4, 5])]);
        assert_eq!(retry.held, vec![6]);
        assert_eq!(planner.window(TARGET), ended);
        assert_eq!(ended.and_then(|window| window.digest_last_id), Some(5));

        // Once it went out, the next alert opens a new window.
        planner.end_window(TARGET, end + Duration::seconds(5));
        assert_eq!(planner.window(TARGET), None);
        let later = sent_plan(
            &mut planner,
            TARGET,
            &items(7..8, false),
            end + Duration::seconds(6),
        );
        assert_eq!(later.batches, vec![Batch::Single(7)]);
        assert!(!later.ends_window);
    }

    #[test]
    fn alerts_after_the_window_wait_for_its_digest() {
        let mut planner = DigestPlanner::new(2, 60);
        let start = Utc::now();
        let end = start + Duration::seconds(60);
        sent_plan(&mut planner, TARGET, &items(0..6, false), start);
        let late = DueItem {
            id: 9,
            critical: false,
            created_at: end + Duration::seconds(1),
        };
        let urgent = DueItem {
            id: 10,
            critical: true,
            created_at: end + Duration::seconds(1),
        };

        // The digest carries the held alerts only; the late one waits, the critical one goes.
        let mut due = items(2..6, false);
        due.extend([late, urgent]);
        let now = end + Duration::seconds(2);
        let plan = planner.plan(TARGET, &due, now);
        assert_eq!(
            plan.batches,
            vec![Batch::Single(10), Batch::Digest(vec![2, 3, 4, 5])]
        );
        assert!(plan.ends_window);
        assert_eq!(plan.held, vec![9]);
        assert_eq!(plan.hold_until, Some(now + NEWCOMER_WAIT));

        // While the digest waits for a retry, the late alert keeps waiting.
        let plan = planner.plan(TARGET, &[late], now + Duration::seconds(5));
        assert!(plan.batches.is_empty());
        assert!(!plan.ends_window);
        assert_eq!(plan.held, vec![9]);
        assert_eq!(
            planner.owed_digest_end(TARGET, now),
            DateTime::from_timestamp_millis(end.timestamp_millis())
        );

        // Once the digest is done, the late alert opens a new window.
        planner.end_window(TARGET, now);
        assert_eq!(planner.owed_digest_end(TARGET, now), None);
        let plan = sent_plan(&mut planner, TARGET, &[late], now + Duration::seconds(6));
        assert_eq!(plan.batches, vec![Batch::Single(9)]);
    }

    #[test]
    fn late_alerts_join_overdue_digest() {
        let mut planner = DigestPlanner::new(2, 60);
        let start = Utc::now();
        let end = start + Duration::seconds(60);
        sent_plan(&mut planner, TARGET, &items(0..6, false), start);
        let late = DueItem {
            id: 9,
            critical: false,
            created_at: end + Duration::seconds(1),
        };
        let waiting = planner.plan(TARGET, &[late], end + Duration::seconds(59));
        assert_eq!(waiting.held, vec![9]);

        let later = end + Duration::seconds(61);
        let mut due = items(2..6, false);
        due.push(late);
        let plan = planner.plan(TARGET, &due, later);
        assert_eq!(plan.batches, vec![Batch::Digest(vec![2, 3, 4, 5, 9])]);
        assert!(plan.held.is_empty());
        assert!(plan.ends_window);
    }

    #[test]
    fn end_window_keeps_an_open_window() {
        let mut planner = DigestPlanner::new(2, 60);
        let start = Utc::now();
        sent_plan(&mut planner, TARGET, &items(0..1, false), start);
        let open = planner.window(TARGET);
        planner.end_window(TARGET, start + Duration::seconds(59));
        assert_eq!(planner.window(TARGET), open);
    }

    #[test]
    fn quiet_window_resets_without_digest() {
        let mut planner = DigestPlanner::new(5, 60);
        let now = Utc::now();
        let plan = sent_plan(&mut planner, TARGET, &items(0..3, false), now);
        assert_eq!(plan.batches.len(), 3);
        let later = now + Duration::seconds(61);
        let plan = sent_plan(&mut planner, TARGET, &items(3..8, false), later);
        assert_eq!(plan.batches.len(), 5);
        assert!(plan.held.is_empty());
    }

    #[test]
    fn window_exported_after_plan() {
        let mut planner = DigestPlanner::new(5, 60);
        let start = Utc::now();
        assert_eq!(planner.window(TARGET), None);

        sent_plan(&mut planner, TARGET, &items(0..3, false), start);
        let partial = WindowState {
            start,
            sent: 3,
            overflowed: false,
            digest_last_id: None,
        };
        assert_eq!(planner.window(TARGET), Some(partial));

        sent_plan(
            &mut planner,
            TARGET,
            &items(3..7, false),
            start + Duration::seconds(1),
        );
        let full = WindowState {
            start,
            sent: 5,
            overflowed: true,
            digest_last_id: None,
        };
        assert_eq!(planner.window(TARGET), Some(full));
        assert_eq!(planner.window(Target::Dm { user_id: 2 }), None);
    }

    #[test]
    fn critical_only_plan_keeps_window() {
        let mut planner = DigestPlanner::new(5, 60);
        let start = Utc::now();
        sent_plan(&mut planner, TARGET, &items(0..1, true), start);
        assert_eq!(
            planner.window(TARGET),
            None,
            "critical alerts open no window"
        );

        sent_plan(&mut planner, TARGET, &items(1..2, false), start);
        let before = planner.window(TARGET);
        sent_plan(
            &mut planner,
            TARGET,
            &items(2..3, true),
            start + Duration::seconds(61),
        );
        assert_eq!(
            planner.window(TARGET),
            before,
            "an ended window waits for the next plan"
        );
    }

    #[test]
    fn restored_full_window_holds_next() {
        let start = Utc::now();
        let mut planner = DigestPlanner::new(5, 60);
        planner.restore(
            TARGET,
            WindowState {
                start,
                sent: 5,
                overflowed: false,
                digest_last_id: None,
            },
        );
        let mut due = items(0..3, false);
        due.extend(items(10..11, true));
        let plan = sent_plan(&mut planner, TARGET, &due, start + Duration::seconds(10));
        assert_eq!(
            plan.batches,
            vec![Batch::Single(10)],
            "only the critical alert"
        );
        assert_eq!(plan.held, vec![0, 1, 2]);
        assert_eq!(plan.hold_until, Some(start + Duration::seconds(60)));
        assert_eq!(
            planner.window(TARGET),
            Some(WindowState {
                start,
                sent: 5,
                overflowed: true,
                digest_last_id: None,
            })
        );
    }

    #[test]
    fn restored_partial_window_continues() {
        let start = Utc::now();
        let mut planner = DigestPlanner::new(5, 60);
        planner.restore(
            TARGET,
            WindowState {
                start,
                sent: 3,
                overflowed: false,
                digest_last_id: None,
            },
        );
        let plan = sent_plan(
            &mut planner,
            TARGET,
            &items(0..4, false),
            start + Duration::seconds(5),
        );
        assert_eq!(plan.batches, vec![Batch::Single(0), Batch::Single(1)]);
        assert_eq!(plan.held, vec![2, 3]);
        assert_eq!(plan.hold_until, Some(start + Duration::seconds(60)));
    }

    #[test]
    fn restored_overflow_ends_in_one_digest() {
        // Before the restart: 5 singles sent, 195 held until the window ends.
        let start = Utc::now();
        let mut before = DigestPlanner::new(5, 60);
        let plan = before.plan(TARGET, &items(0..200, false), start);
        assert_eq!(plan.batches.len(), 5);
        assert_eq!(plan.held.len(), 195);
        let stored = before.window(TARGET).expect("the storm opened a window");

        // After the restart the held deliveries come due at the window end, or later when the
        // bot was down past it. Both ways they go out as one digest.
        for delay in [60, 61, 600] {
            let mut after = DigestPlanner::new(5, 60);
            after.restore(TARGET, stored);
            let due_at = start + Duration::seconds(delay);
            let plan = after.plan(TARGET, &items(5..200, false), due_at);
            assert_eq!(
                plan.batches,
                vec![Batch::Digest((5..200).collect())],
                "{delay} s after the window start"
            );
            assert!(plan.held.is_empty(), "{delay} s after the window start");
            assert!(plan.ends_window);
            after.end_window(TARGET, due_at);
            assert_eq!(after.window(TARGET), None, "the digest ends the window");
        }
    }

    #[test]
    fn restore_replaces_window() {
        let start = Utc::now();
        let mut planner = DigestPlanner::new(2, 60);
        sent_plan(&mut planner, TARGET, &items(0..1, false), start);
        let stored = WindowState {
            start: start - Duration::seconds(30),
            sent: 2,
            overflowed: true,
            digest_last_id: None,
        };
        planner.restore(TARGET, stored);
        assert_eq!(planner.window(TARGET), Some(stored));
    }

    #[test]
    fn recipients_have_separate_windows() {
        let mut planner = DigestPlanner::new(1, 60);
        let now = Utc::now();
        let first = sent_plan(&mut planner, TARGET, &items(0..2, false), now);
        let other = sent_plan(
            &mut planner,
            Target::Dm { user_id: 2 },
            &items(2..4, false),
            now,
        );
        assert_eq!(first.batches, vec![Batch::Single(0)]);
        assert_eq!(other.batches, vec![Batch::Single(2)]);
        assert_eq!(first.held, vec![1]);
        assert_eq!(other.held, vec![3]);
    }
}
