//! Send pacing under Discord's limits: a global rate in messages per second, and a sliding
//! window of 5 seconds per channel. A 429 blocks one channel, or every channel when global.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::routing::Target;

const CHANNEL_WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Pacer {
    global_interval: Duration,
    next_global: Instant,
    per_channel: usize,
    sends: HashMap<Target, VecDeque<Instant>>,
    blocked_until: HashMap<Target, Instant>,
}

impl Pacer {
    pub fn new(global_per_sec: u32, channel_per_5s: u32, now: Instant) -> Self {
        Self {
            global_interval: Duration::from_secs(1) / global_per_sec.max(1),
            next_global: now,
            per_channel: channel_per_5s.max(1) as usize,
            sends: HashMap::new(),
            blocked_until: HashMap::new(),
        }
    }

    /// Returns when `target` may get its next message: `now` or later.
    pub fn channel_ready_at(&mut self, target: Target, now: Instant) -> Instant {
        let mut ready = now;
        if let Some(until) = self.blocked_until.get(&target) {
            if *until > now {
                ready = *until;
            } else {
                self.blocked_until.remove(&target);
            }
        }
        if let Some(sends) = self.sends.get_mut(&target) {
            while sends
                .front()
                .is_some_and(|sent| now.duration_since(*sent) >= CHANNEL_WINDOW)
            {
                sends.pop_front();
            }
            if sends.len() >= self.per_channel {
                if let Some(oldest) = sends.front() {
                    ready = ready.max(*oldest + CHANNEL_WINDOW);
                }
            }
        }
        ready
    }

    /// Returns how long to wait before the next message may go out on any channel, and books
    /// that slot.
    pub fn take_global_slot(&mut self, now: Instant) -> Duration {
        let slot = self.next_global.max(now);
        self.next_global = slot + self.global_interval;
        slot.saturating_duration_since(now)
    }

    pub fn record_send(&mut self, target: Target, at: Instant) {
        self.sends.entry(target).or_default().push_back(at);
    }

    /// Applies a 429: blocks the channel, or every channel when Discord marked it global.
    pub fn block(&mut self, target: Target, until: Instant, global: bool) {
        if global {
            self.next_global = self.next_global.max(until);
        } else {
            let entry = self.blocked_until.entry(target).or_insert(until);
            *entry = (*entry).max(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Target = Target::AllAlerts { channel_id: 1 };
    const B: Target = Target::AllAlerts { channel_id: 2 };

    #[test]
    fn channel_limit_slides_over_five_seconds() {
        let start = Instant::now();
        let mut pacer = Pacer::new(50, 4, start);
        for offset in 0..4 {
            let at = start + Duration::from_millis(offset * 100);
            assert_eq!(pacer.channel_ready_at(A, at), at);
            pacer.record_send(A, at);
        }
        let now = start + Duration::from_millis(500);
        assert_eq!(pacer.channel_ready_at(A, now), start + CHANNEL_WINDOW);
        assert_eq!(pacer.channel_ready_at(B, now), now);
        let later = start + CHANNEL_WINDOW;
        assert_eq!(pacer.channel_ready_at(A, later), later);
    }

    #[test]
    fn global_slots_are_spaced() {
        let start = Instant::now();
        let mut pacer = Pacer::new(40, 5, start);
        assert_eq!(pacer.take_global_slot(start), Duration::ZERO);
        assert_eq!(pacer.take_global_slot(start), Duration::from_millis(25));
        assert_eq!(pacer.take_global_slot(start), Duration::from_millis(50));
        let idle = start + Duration::from_secs(2);
        assert_eq!(pacer.take_global_slot(idle), Duration::ZERO);
    }

    #[test]
    fn rate_limit_blocks_channel_or_all() {
        let start = Instant::now();
        let mut pacer = Pacer::new(50, 5, start);
        let until = start + Duration::from_millis(1500);
        pacer.block(A, until, false);
        assert_eq!(pacer.channel_ready_at(A, start), until);
        assert_eq!(pacer.channel_ready_at(B, start), start);

        pacer.block(B, start + Duration::from_secs(3), true);
        assert_eq!(pacer.take_global_slot(start), Duration::from_secs(3));
    }
}
