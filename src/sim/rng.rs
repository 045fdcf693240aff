//! The run's seeded randomness (`docs/invariants.md`, "Seeded randomness").
//!
//! One generator per run, split per purpose: draw `n` of purpose `p` is the first 8 bytes of
//! SHA-256(seed, p, n), so every purpose (a device's latency jitter, a fault's probability, the
//! order of one instant's detections, an AV server's delivery delays) has its own stream, and a
//! draw added in one place never shifts the draws of another (INV-11 stays stable when the lab
//! grows). SHA-256 is already the history digest's hash; a draw costs well under a microsecond,
//! far below a simulated device call.
//!
//! Purposes are strings built by the caller (`jitter/vc-1`, `fault/3`, ...); each keeps its own
//! counter, so draws of one purpose are numbered in the order that purpose asks for them.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A seeded generator split per purpose. Cloning copies the counters: the clone draws what the
/// original would have drawn next.
#[derive(Debug, Clone, Default)]
pub struct SeededRng {
    seed: u64,
    counters: BTreeMap<String, u64>,
}

impl SeededRng {
    /// The generator of a run with `seed`.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng {
            seed,
            counters: BTreeMap::new(),
        }
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next 64 random bits of `purpose`.
    pub fn next_u64(&mut self, purpose: &str) -> u64 {
        let counter = self.counters.entry(purpose.to_string()).or_insert(0);
        let n = *counter;
        *counter = counter.saturating_add(1);
        draw(self.seed, purpose, n)
    }

    /// A uniform integer in `[0, max]` (inclusive) from `purpose`.
    pub fn up_to(&mut self, purpose: &str, max: u64) -> u64 {
        let bits = self.next_u64(purpose);
        match max.checked_add(1) {
            // Multiply-shift: the bias is below 2^-64 per value, far below anything a run sees.
            Some(span) => ((u128::from(bits) * u128::from(span)) >> 64) as u64,
            None => bits,
        }
    }

    /// A uniform duration in `[0, max]`, to the nanosecond, from `purpose`.
    pub fn duration_up_to(&mut self, purpose: &str, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        // Files bound durations to 7 days (6.05e14 ns), far inside u64.
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.up_to(purpose, nanos))
    }

    /// True with probability `p` (clamped to 0..=1), from `purpose`. Draws even for 0 and 1, so
    /// the stream's numbering does not depend on `p`.
    pub fn chance(&mut self, purpose: &str, p: f64) -> bool {
        let bits = self.next_u64(purpose);
        // 53 random bits: every double in [0, 1) with equal spacing.
        let x = (bits >> 11) as f64 / (1u64 << 53) as f64;
        x < p.clamp(0.0, 1.0)
    }

    /// Shuffles `items` (Fisher-Yates) with draws from `purpose`.
    pub fn shuffle<T>(&mut self, purpose: &str, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.up_to(purpose, i as u64) as usize;
            items.swap(i, j);
        }
    }
}

/// Draw `n` of `purpose` under `seed`. The purpose is length-prefixed so no two
/// (purpose, counter) pairs hash the same bytes.
fn draw(seed: u64, purpose: &str, n: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update((purpose.len() as u64).to_le_bytes());
    hasher.update(purpose.as_bytes());
    hasher.update(n.to_le_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv11_same_seed_same_draws_and_purposes_do_not_shift_each_other() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        let first: Vec<u64> = (0..4).map(|_| a.next_u64("jitter/vc-1")).collect();
        // `b` interleaves draws of another purpose: `jitter/vc-1` must not notice.
        let mut second = Vec::new();
        for _ in 0..4 {
            b.next_u64("fault/0");
            second.push(b.next_u64("jitter/vc-1"));
        }
        assert_eq!(first, second);
        assert_ne!(first[0], first[1]);
        assert_ne!(
            SeededRng::new(8).next_u64("jitter/vc-1"),
            first[0],
            "another seed draws another value"
        );
    }

    #[test]
    fn bounded_draws_stay_in_range_and_cover_it() {
        let mut rng = SeededRng::new(1);
        let max = Duration::from_millis(10);
        let draws: Vec<Duration> = (0..2000).map(|_| rng.duration_up_to("j", max)).collect();
        assert!(draws.iter().all(|d| *d <= max));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(1)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(9)));
        assert_eq!(rng.duration_up_to("j", Duration::ZERO), Duration::ZERO);
        let hits = (0..2000).filter(|_| rng.chance("p", 0.3)).count();
        assert!((450..750).contains(&hits), "0.3 of 2000 draws, got {hits}");
        assert!((0..100).all(|_| !rng.chance("p", 0.0)));
        assert!((0..100).all(|_| rng.chance("p", 1.0)));
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut items: Vec<u32> = (0..20).collect();
        SeededRng::new(3).shuffle("order", &mut items);
        let mut again: Vec<u32> = (0..20).collect();
        SeededRng::new(3).shuffle("order", &mut again);
        assert_eq!(items, again);
        assert_ne!(items, (0..20).collect::<Vec<u32>>());
        let mut sorted = items.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<u32>>());
    }
}
