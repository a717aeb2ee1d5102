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
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: DateTime<Utc>,
    sent: u32,
    overflowed: bool,
}

/// The digest windows of all recipients. They live in memory: after a restart every recipient
/// starts a fresh window, which can send up to `threshold` more alerts individually.
#[derive(Debug)]
pub struct DigestPlanner {
    threshold: u32,
    window: Duration,
    windows: HashMap<Target, Window>,
}

/// One due delivery, as the planner reads it.
#[derive(Debug, Clone, Copy)]
pub struct DueItem {
    pub id: i64,
    pub critical: bool,
}

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

        if let Some(window) = self.windows.get(&target).copied() {
            if now >= window.start + self.window {
                self.windows.remove(&target);
                if window.overflowed {
                    // The rest of the ended window: everything that was held for it.
                    plan.batches.push(match normal.as_slice() {
                        [only] => Batch::Single(*only),
                        _ => Batch::Digest(normal),
                    });
                    return plan;
                }
            }
        }

        let window = self.windows.entry(target).or_insert(Window {
            start: now,
            sent: 0,
            overflowed: false,
        });
        for id in normal {
            if window.sent < self.threshold {
                window.sent += 1;
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
        range.map(|id| DueItem { id, critical }).collect()
    }

    #[test]
    fn storm_sends_threshold_then_digest() {
        let mut planner = DigestPlanner::new(5, 60);
        let start = Utc::now();
        let plan = planner.plan(TARGET, &items(0..200, false), start);
        assert_eq!(plan.batches, (0..5).map(Batch::Single).collect::<Vec<_>>());
        assert_eq!(plan.held.len(), 195);
        assert_eq!(plan.hold_until, Some(start + Duration::seconds(60)));

        // Before the window ends, held deliveries that come due are held again.
        let early = planner.plan(TARGET, &items(5..10, false), start + Duration::seconds(30));
        assert!(early.batches.is_empty());
        assert_eq!(early.held.len(), 5);

        let end = start + Duration::seconds(60);
        let plan = planner.plan(TARGET, &items(5..200, false), end);
        assert_eq!(plan.batches, vec![Batch::Digest((5..200).collect())]);
        assert!(plan.held.is_empty());
    }

    #[test]
    fn critical_never_held() {
        let mut planner = DigestPlanner::new(2, 60);
        let now = Utc::now();
        let mut due = items(0..5, false);
        due.extend(items(10..13, true));
        let plan = planner.plan(TARGET, &due, now);
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
    fn quiet_window_resets_without_digest() {
        let mut planner = DigestPlanner::new(5, 60);
        let now = Utc::now();
        let plan = planner.plan(TARGET, &items(0..3, false), now);
        assert_eq!(plan.batches.len(), 3);
        let later = now + Duration::seconds(61);
        let plan = planner.plan(TARGET, &items(3..8, false), later);
        assert_eq!(plan.batches.len(), 5);
        assert!(plan.held.is_empty());
    }

    #[test]
    fn recipients_have_separate_windows() {
        let mut planner = DigestPlanner::new(1, 60);
        let now = Utc::now();
        let first = planner.plan(TARGET, &items(0..2, false), now);
        let other = planner.plan(Target::Dm { user_id: 2 }, &items(2..4, false), now);
        assert_eq!(first.batches, vec![Batch::Single(0)]);
        assert_eq!(other.batches, vec![Batch::Single(2)]);
        assert_eq!(first.held, vec![1]);
        assert_eq!(other.held, vec![3]);
    }
}
