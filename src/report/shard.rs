//! Which shard runs which scenario (`--shard K/N`, with or without `--durations`).
//!
//! - Without durations a scenario goes to shard `h(name) mod N + 1`, where `h` is the first eight
//!   bytes of the SHA-256 of its name: stable across machines, builds and library changes (adding
//!   a scenario moves no other one), so every shard of a CI matrix computes the same split alone.
//! - With `--durations PREVIOUS/report.json` the split is balanced by time: scenarios are taken
//!   longest first (a scenario's duration is the sum over its modes in that report) and each goes
//!   to the shard with the least time so far (the lowest index on a tie). A scenario the previous
//!   report does not know counts as the median of that report's durations (as likely long as short);
//!   equal durations are ordered by name, so every shard computes the same split.
//!
//! Every shard of one run must be given the same durations file; merging refuses shards whose
//! `assignment` differs, and overlapping or missing scenarios show up there too.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::RunReport;

/// How scenarios were split, as report.json's `shard.assignment` spells it.
pub fn assignment_name(durations: Option<&HashMap<String, u64>>) -> &'static str {
    if durations.is_some() {
        "durations"
    } else {
        "hash"
    }
}

/// A stable 64-bit hash of a scenario name.
pub fn stable_hash(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// Scenario name → wall time in ms (summed over modes) from a previous report.
pub fn durations_of(report: &RunReport) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for s in &report.scenarios {
        *out.entry(s.name.clone()).or_default() += s.duration_ms;
    }
    out
}

/// The shard (1-based) of each name, in the order given. `count` must be at least 1.
pub fn assign(
    names: &[&str],
    count: usize,
    durations: Option<&HashMap<String, u64>>,
) -> Vec<usize> {
    let count = count.max(1);
    let Some(durations) = durations else {
        return names
            .iter()
            .map(|n| (stable_hash(n) % count as u64) as usize + 1)
            .collect();
    };
    let mut known: Vec<u64> = durations.values().copied().collect();
    known.sort_unstable();
    let median = known.get(known.len() / 2).copied().unwrap_or(0);
    let mut order: Vec<(u64, &str, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (durations.get(*n).copied().unwrap_or(median), *n, i))
        .collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)).then(a.2.cmp(&b.2)));
    let mut load = vec![0u64; count];
    let mut out = vec![0usize; names.len()];
    for (ms, _, i) in order {
        let (emptiest, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(k, l)| (**l, *k))
            .unwrap_or((0, &0));
        load[emptiest] = load[emptiest].saturating_add(ms);
        out[i] = emptiest + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_split_is_stable_and_covers_every_name_once() {
        let names: Vec<String> = (0..200).map(|i| format!("scenario-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let a = assign(&refs, 3, None);
        assert_eq!(a, assign(&refs, 3, None));
        assert!(a.iter().all(|k| (1..=3).contains(k)));
        for k in 1..=3 {
            assert!(
                a.iter().filter(|x| **x == k).count() > 40,
                "shard {k} too small"
            );
        }
        // Adding a name moves no other one.
        let mut more = refs.clone();
        more.push("a-new-scenario");
        assert_eq!(&assign(&more, 3, None)[..200], &a[..]);
    }

    #[test]
    fn durations_put_the_longest_first_on_the_emptiest_shard() {
        let d: HashMap<String, u64> = [("a", 100), ("b", 60), ("c", 50), ("d", 10)]
            .into_iter()
            .map(|(n, ms)| (n.to_string(), ms))
            .collect();
        // a → 1 (100); b → 2 (60); c → 2 (110); d → 1 (110).
        assert_eq!(assign(&["a", "b", "c", "d"], 2, Some(&d)), vec![1, 2, 2, 1]);
        // An unknown name counts as the median (60): it goes where the median would.
        assert_eq!(
            assign(&["a", "b", "new"], 2, Some(&d)),
            vec![1, 2, 2],
            "the unknown scenario joins the emptier shard"
        );
    }
}
