//! The hasher of the history's key index: its keys are already 64-bit
//! hashes of the frames ([`watchtower_core::frame_key`]), so two folded
//! multiplies with two random seeds spread them over the table. SipHash,
//! the std default, was a tenth of the hub's CPU per relayed event, as
//! every event is indexed once and unindexed once.
//!
//! Peers choose the frames, hence the keys (FNV-1a's low bits depend on
//! the low bits of its input only, so frames agreeing in them are cheap to
//! find). Keyed by seeds drawn at start and folding each product's high
//! half into its low half, twice, every bit of the slot depends on every
//! bit of the key and on seeds the peer never sees; a peer cannot aim its
//! frames at one slot.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`KeyHasher`]s with this process's seeds.
#[derive(Debug, Clone)]
pub(crate) struct KeyState {
    seeds: [u64; 2],
}

impl KeyState {
    /// Seeds from the std's randomly keyed hasher (random per process).
    pub(crate) fn new() -> KeyState {
        let random = RandomState::new();
        KeyState {
            seeds: [random.hash_one(0u8), random.hash_one(1u8)],
        }
    }
}

impl BuildHasher for KeyState {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seeds: self.seeds,
            hash: 0,
        }
    }
}

/// Two folded multiplies per `u64` written (see the module's docs).
#[derive(Debug)]
pub(crate) struct KeyHasher {
    seeds: [u64; 2],
    hash: u64,
}

/// The 128-bit product's halves, xored: every bit depends on every bit of
/// both factors.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Odd multipliers with their bits spread over both halves (wyhash's
/// primes). A random multiplier would not do: one with few high bits
/// leaves keys that differ only in their high bits in few slots (seen:
/// 1,291 slots for 4,096 such keys, once in about twenty seeds).
const MULTIPLIERS: [u64; 2] = [0xa076_1d64_78bd_642f, 0xe703_7ed1_a0b4_28db];

impl Hasher for KeyHasher {
    /// Two folded multiplies: the first spreads every bit of the key over
    /// both halves of the product, the second mixes them again; the seeds
    /// go in before each, so where a key lands is not known outside.
    fn write_u64(&mut self, key: u64) {
        let once = folded_multiply(key ^ self.seeds[0] ^ self.hash, MULTIPLIERS[0]);
        self.hash = folded_multiply(once ^ self.seeds[1], MULTIPLIERS[1]);
    }

    /// Not used by the index (its keys are `u64`); any other input is
    /// taken 8 bytes at a time, so it is still hashed whole.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_agreeing_in_their_low_bits_spread_over_the_slots() {
        // Keys alike in their low 32 bits, as a peer could make frames'
        // FNV keys: with a table of 2^16 slots (hashbrown takes a hash's
        // low bits for the slot), a hasher that kept the low bits would put
        // them all in one slot.
        // Many seeds: a weak one must not hide behind a lucky draw
        // (random 4,096 keys in 2^16 slots fill about 3,970).
        for _ in 0..200 {
            let state = KeyState::new();
            let slots: std::collections::HashSet<u64> = (0..4096u64)
                .map(|i| state.hash_one((i << 32) | 0xdead_beef) & 0xffff)
                .collect();
            assert!(slots.len() > 3800, "{} distinct slots of 4096", slots.len());
            // And keys alike in their high bits.
            let slots: std::collections::HashSet<u64> = (0..4096u64)
                .map(|i| state.hash_one(0xdead_beef_0000_0000 | i) & 0xffff)
                .collect();
            assert!(slots.len() > 3800, "{} distinct slots of 4096", slots.len());
        }
    }

    #[test]
    fn seeds_differ_between_states() {
        // Two processes (two states) place the same key apart, almost
        // surely: the seeds come from the std's random keys.
        let (a, b) = (KeyState::new(), KeyState::new());
        assert_ne!(
            (0..8u64).map(|k| a.hash_one(k)).collect::<Vec<_>>(),
            (0..8u64).map(|k| b.hash_one(k)).collect::<Vec<_>>()
        );
    }
}
