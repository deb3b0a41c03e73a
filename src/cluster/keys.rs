//! The advisory-lock key space of the cluster-wide limit: which locks are a source's slots,
//! derived from its name alone so that replicas agree without talking to each other.
//!
//! Slot `i` (0 ≤ i < N) of source `name` is the two-key advisory lock
//! `(CLASS_ID, fnv1a_32(name) + i)`, the sum taken modulo 2³² and read as a signed `int4`.
//! `pg_locks` shows it as `locktype = 'advisory'`, `classid = 1885824112`, `objid` = the
//! unsigned sum, `objsubid = 2`. A freed slot is announced on the channel
//! `pgdump_api_slots_` + the name's hash in eight hex digits.

/// The first key of every pgdump-api slot lock: the ASCII bytes `pgdp` (1885824112).
pub(crate) const CLASS_ID: i32 = 0x7067_6470;

/// The slot locks of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keys {
    base: u32,
    slots: u32,
}

impl Keys {
    /// The `slots` locks of the source called `source`.
    pub(crate) fn new(source: &str, slots: u32) -> Keys {
        Keys {
            base: fnv1a_32(source.as_bytes()),
            slots,
        }
    }

    /// The second key of slot `index`.
    pub(crate) fn object_id(&self, index: u32) -> i32 {
        // Wrapping into the signed range is the documented reading, not an accident.
        self.base.wrapping_add(index) as i32
    }

    /// The second keys of every slot, in the order they are tried.
    pub(crate) fn object_ids(&self) -> impl Iterator<Item = i32> + '_ {
        (0..self.slots).map(|index| self.object_id(index))
    }

    /// The `LISTEN`/`NOTIFY` channel on which a freed slot is announced.
    pub(crate) fn channel(&self) -> String {
        format!("pgdump_api_slots_{:08x}", self.base)
    }
}

/// FNV-1a, 32 bits: small, fixed, and easy to compute anywhere.
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_32_matches_the_reference_vectors() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    /// The README documents these numbers: an operator finds the slots in `pg_locks` by them.
    #[test]
    fn the_documented_keys_of_default() {
        assert_eq!(CLASS_ID, 1_885_824_112);
        let keys = Keys::new("default", 3);
        assert_eq!(
            keys.object_ids().collect::<Vec<_>>(),
            [-1_824_826_402, -1_824_826_401, -1_824_826_400]
        );
        assert_eq!(keys.object_id(0) as u32, 2_470_140_894);
        assert_eq!(keys.channel(), "pgdump_api_slots_933b5bde");
    }

    #[test]
    fn keys_wrap_around_the_top_of_the_range() {
        let keys = Keys {
            base: u32::MAX,
            slots: 2,
        };
        assert_eq!(keys.object_ids().collect::<Vec<_>>(), [-1, 0]);
    }
}
