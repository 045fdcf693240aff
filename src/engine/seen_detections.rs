//! Which `(source, event_id)` pairs this journal may hold: a Bloom filter in front of the R4
//! duplicate lookup. A pair the filter has never seen is certainly new, so its detection skips
//! the journal read (a read transaction on the file, behind the reader's lock); a pair it may
//! have seen is looked up as before. The filter never forgets a pair and never answers "new" for
//! one it was given, so R4 stays exact: only the cost of a lookup changes. Behind it the
//! journal's unique key on `(source, event_id)` still stands: were a pair ever missing from
//! the filter, its second copy would fail its commit and halt the engine, never be acted on
//! twice.
//!
//! The policy, and why:
//! - **Fed from two places only**: every pair in the journal when the engine opens (one scan of
//!   the detections table), and every detection staged since (under the state lock, before its
//!   commit can start). Every detection the journal holds came one of these two ways: the
//!   engine is the journal's only writer while it runs. The scan reads the table's unique
//!   index on the pair (SQLite answers it from the index alone), once per start.
//! - **Bounded memory, fixed at open** ([`bits_for`]): [`BITS_PER_PAIR`] bits for each pair the
//!   journal held at open plus room for [`ROOM_PER_LSERVER`] detections per L-Server of the site
//!   (an outbreak reports each machine a few times), at least [`MIN_BITS`] and at most
//!   [`MAX_BITS`]. A journal that outgrows its filter only makes the filter answer "maybe"
//!   more often; nothing is ever wrong, and the next start sizes it again.
//! - **Only for a journal on a file** (the daemon, the lab's wire and crash runs): there a
//!   lookup is a read on the file. In memory (the lab's sim runs) it is a lookup in a table the
//!   writer holds anyway, and a filter per run would cost more than it saves.

use std::hash::BuildHasher;

/// Bits per pair at the filter's design load: with [`PROBES`] probes, about one lookup in a
/// thousand goes to the journal for a new pair.
pub const BITS_PER_PAIR: usize = 16;

/// Probes per pair: near the best count for [`BITS_PER_PAIR`] (16 × ln 2 ≈ 11), kept lower
/// because each probe is a likely cache miss and the false positives it would save are
/// already rare.
pub const PROBES: u32 = 6;

/// Detections per L-Server the filter is sized for beyond what the journal holds: one
/// machine is reported by more than one AV server, and again when a scan repeats.
pub const ROOM_PER_LSERVER: usize = 8;

/// The smallest filter (8 KiB): a small site's filter costs nothing to build.
pub const MIN_BITS: usize = 1 << 16;

/// The largest filter (8 MiB): enough for four million pairs at design load. A bigger
/// journal still works, with more lookups going to the file.
pub const MAX_BITS: usize = 1 << 26;

/// The filter's size for a journal holding `journaled` detections on a site of `lservers`.
pub fn bits_for(journaled: usize, lservers: usize) -> usize {
    let pairs = journaled.saturating_add(lservers.saturating_mul(ROOM_PER_LSERVER));
    pairs
        .saturating_mul(BITS_PER_PAIR)
        .clamp(MIN_BITS, MAX_BITS)
        .next_power_of_two()
}

/// A Bloom filter over `(source, event_id)` pairs (see the module docs).
#[derive(Debug)]
pub struct SeenDetections {
    words: Vec<u64>,
    /// `bits - 1`: the size is a power of two, so a probe is a mask.
    mask: u64,
    hasher: std::hash::BuildHasherDefault<rustc_hash::FxHasher>,
}

impl SeenDetections {
    /// An empty filter of `bits` bits (rounded up to a power of two, at least 64).
    pub fn with_bits(bits: usize) -> SeenDetections {
        let bits = bits.max(64).next_power_of_two();
        SeenDetections {
            words: vec![0; bits / 64],
            mask: bits as u64 - 1,
            hasher: Default::default(),
        }
    }

    /// The filter's size in bits.
    #[cfg(test)]
    pub fn bits(&self) -> usize {
        self.words.len() * 64
    }

    /// Two 64-bit hashes of the pair, both mixed from one; probe `i` is `h1 + i·h2` (double
    /// hashing).
    fn hashes(&self, source: &str, event_id: &str) -> (u64, u64) {
        let h1 = self.hasher.hash_one((source, event_id));
        // FxHash's low bits are weak and the probes are masked to low bits, so both are taken
        // through a multiply-rotate; h2 is odd, so a pair's probes never repeat.
        let h1 = h1.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        let h2 = h1.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(31) | 1;
        (h1, h2)
    }

    /// The pair's probe positions.
    fn probes(&self, source: &str, event_id: &str) -> [u64; PROBES as usize] {
        let (h1, h2) = self.hashes(source, event_id);
        std::array::from_fn(|i| h1.wrapping_add((i as u64).wrapping_mul(h2)) & self.mask)
    }

    /// Remembers a pair.
    pub fn insert(&mut self, source: &str, event_id: &str) {
        for bit in self.probes(source, event_id) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// `false` only for a pair never inserted; `true` for every inserted pair and, rarely, for
    /// another.
    pub fn may_contain(&self, source: &str, event_id: &str) -> bool {
        self.probes(source, event_id)
            .into_iter()
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R4: the filter never calls a remembered pair new, whatever the pairs and however full
    /// it gets (here far past its design load).
    #[test]
    fn r4_a_pair_once_inserted_is_never_called_new() {
        let mut seen = SeenDetections::with_bits(MIN_BITS);
        let pairs: Vec<(String, String)> = (0..20_000)
            .map(|i| (format!("av-{}", i % 7), format!("evt-{i:08}")))
            .collect();
        for (i, (source, event)) in pairs.iter().enumerate() {
            seen.insert(source, event);
            // Everything inserted so far, checked at intervals as the filter fills.
            if i % 997 == 0 {
                assert!(pairs[..=i].iter().all(|(s, e)| seen.may_contain(s, e)));
            }
        }
        assert!(pairs.iter().all(|(s, e)| seen.may_contain(s, e)));
    }

    /// At its design load the filter sends about one new pair in a thousand to the journal; a
    /// filter that answered "maybe" for everything (a broken hash, one probe per pair) would
    /// save nothing.
    #[test]
    fn r4_at_design_load_almost_every_new_pair_skips_the_journal() {
        let pairs = 4_096;
        let mut seen = SeenDetections::with_bits(bits_for(pairs, 0));
        for i in 0..pairs {
            seen.insert("osce", &format!("evt-{i}"));
        }
        let maybe = (0..100_000)
            .filter(|i| seen.may_contain("osce", &format!("new-{i}")))
            .count();
        assert!(maybe < 500, "{maybe} of 100000 new pairs answered maybe");
        // Source and event id are one key together: the same id from another source is new.
        let other_source = (0..pairs)
            .filter(|i| seen.may_contain("sepm", &format!("evt-{i}")))
            .count();
        assert!(
            other_source < 50,
            "{other_source} of {pairs} answered maybe"
        );
    }

    #[test]
    fn the_size_follows_the_journal_and_the_site_within_its_bounds() {
        assert_eq!(bits_for(0, 0), MIN_BITS);
        assert_eq!(bits_for(0, 10), MIN_BITS);
        // 100,000 L-Servers: 800,000 pairs of room, 12.8 Mbit, rounded up to 16 Mbit.
        assert_eq!(bits_for(0, 100_000), 1 << 24);
        assert_eq!(bits_for(usize::MAX, usize::MAX), MAX_BITS);
        assert!(bits_for(1_000_000, 0) >= 1_000_000 * BITS_PER_PAIR);
        assert_eq!(SeenDetections::with_bits(100).bits(), 128);
    }
}
