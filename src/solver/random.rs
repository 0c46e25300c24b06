//! Seeded instance generators for the solver's tests, benches and comparisons.
//!
//! Input: a seed. Output: [`Instance`]s; the same seed always gives the same instances, on
//! every platform (SplitMix64, integer arithmetic only).

use super::{Anchor, ConsumerSet, Instance};
use crate::tensor::SplitMix64;

/// Integer draws from a [`SplitMix64`] stream: small, fast, and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

fn consumer(mut channels: Vec<usize>, weight: u64, anchor: Anchor) -> ConsumerSet {
    channels.sort_unstable();
    ConsumerSet {
        channels,
        weight,
        anchor,
    }
}

fn random_anchor(rng: &mut Rng, anchor_percent: u64) -> Anchor {
    if !rng.percent(anchor_percent) {
        return Anchor::None;
    }
    if rng.percent(50) {
        Anchor::Start
    } else {
        Anchor::End
    }
}

/// Unstructured masks: each consumer keeps each channel with probability `keep_percent`
/// (at least one channel), weight in `1..=max_weight`, anchored with probability
/// `anchor_percent`.
pub fn random_instance(
    rng: &mut Rng,
    channels: usize,
    consumers: usize,
    keep_percent: u64,
    anchor_percent: u64,
    max_weight: u64,
) -> Instance {
    let consumers = (0..consumers)
        .map(|_| {
            let mut set: Vec<usize> = (0..channels)
                .filter(|_| rng.percent(keep_percent))
                .collect();
            if set.is_empty() {
                set.push(rng.below(channels));
            }
            let weight = 1 + rng.next_u64() % max_weight;
            consumer(set, weight, random_anchor(rng, anchor_percent))
        })
        .collect();
    Instance {
        channels,
        consumers,
    }
}

/// An instance with a zero-copy order: a hidden random order, each consumer a random interval
/// of it (anchored ones a prefix or a suffix), then `noise` random channel flips (membership
/// toggled in a random consumer, never emptying it; with `noise > 0` a zero-copy order may no
/// longer exist).
pub fn interval_instance(
    rng: &mut Rng,
    channels: usize,
    consumers: usize,
    anchor_percent: u64,
    noise: usize,
) -> Instance {
    let mut hidden: Vec<usize> = (0..channels).collect();
    rng.shuffle(&mut hidden);
    let mut sets: Vec<ConsumerSet> = (0..consumers)
        .map(|_| {
            let anchor = random_anchor(rng, anchor_percent);
            let len = rng.range(1, channels);
            let start = match anchor {
                Anchor::Start => 0,
                Anchor::End => channels - len,
                Anchor::None => rng.below(channels - len + 1),
            };
            let weight = 1 + rng.next_u64() % 1000;
            consumer(hidden[start..start + len].to_vec(), weight, anchor)
        })
        .collect();
    for _ in 0..noise {
        if sets.is_empty() {
            break;
        }
        let j = rng.below(sets.len());
        let ch = rng.below(channels);
        let set = &mut sets[j].channels;
        match set.binary_search(&ch) {
            Ok(at) if set.len() > 1 => {
                set.remove(at);
            }
            Ok(_) => {}
            Err(at) => set.insert(at, ch),
        }
    }
    Instance {
        channels,
        consumers: sets,
    }
}
