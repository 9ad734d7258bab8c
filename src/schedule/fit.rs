//! Machines in the strategy's share order, grouped by how much is free, so that packing does not
//! walk past the full machines: it tries the fullest first, and most of those have no room.
//!
//! A machine sits in the bucket of its free memory's and free CPU's binary magnitudes (`level`).
//! For a need, a bucket above its levels in both dimensions only holds machines where it fits, a
//! bucket below in either only machines where it does not; the buckets at its levels are
//! mixed, and their machines are tested. The first machine by key that passes the caller's test
//! is the smallest of each bucket's first, so `first` looks at a few machines per bucket.

use std::collections::{BTreeMap, BTreeSet};

use super::index::MachineIx;
use crate::resources::Resources;

/// The order a machine is tried in: (the strategy's share key, load, machine), smallest first.
pub(super) type Key = (u64, usize, MachineIx);

/// The binary magnitude of an amount: 0 for nothing, else the number of bits it takes. An
/// amount of level `l > 0` lies in `[2^(l-1), 2^l)`.
fn level(amount: u64) -> u8 {
    (u64::BITS - amount.leading_zeros()) as u8
}

type Bucket = (u8, u8);

fn bucket(free: Resources) -> Bucket {
    (level(free.memory), level(free.millicpus))
}

#[derive(Default)]
pub(super) struct Buckets {
    buckets: BTreeMap<Bucket, BTreeSet<Key>>,
    /// Per machine, where it is now.
    at: Vec<Option<(Bucket, Key)>>,
}

impl Buckets {
    pub(super) fn new(machines: usize) -> Self {
        Self {
            buckets: BTreeMap::new(),
            at: vec![None; machines],
        }
    }

    /// Sets machine `m`'s key and what is free on it.
    pub(super) fn set(&mut self, m: MachineIx, key: Key, free: Resources) {
        if let Some((b, old)) = self.at[m].take()
            && let Some(set) = self.buckets.get_mut(&b)
        {
            set.remove(&old);
            if set.is_empty() {
                self.buckets.remove(&b);
            }
        }
        let b = bucket(free);
        self.buckets.entry(b).or_default().insert(key);
        self.at[m] = Some((b, key));
    }

    /// The machine of the smallest key among those where `need` may fit (by the buckets) and
    /// `test` holds; `test` decides whether it really fits.
    pub(super) fn first(
        &self,
        need: Resources,
        mut test: impl FnMut(MachineIx) -> bool,
    ) -> Option<MachineIx> {
        let (memory, cpu) = bucket(need);
        let mut best: Option<Key> = None;
        for (&(_, c), machines) in self.buckets.range((memory, cpu)..) {
            if c < cpu {
                continue;
            }
            for &key in machines {
                if best.is_some_and(|b| key >= b) {
                    break;
                }
                if test(key.2) {
                    best = Some(key);
                    break;
                }
            }
        }
        best.map(|(_, _, m)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(memory: u64, millicpus: u64) -> Resources {
        Resources { memory, millicpus }
    }

    #[test]
    fn levels_are_binary_magnitudes() {
        for (amount, expected) in [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 2),
            (4, 3),
            (1023, 10),
            (1024, 11),
        ] {
            assert_eq!(level(amount), expected, "{amount}");
        }
        assert_eq!(level(u64::MAX), 64);
    }

    #[test]
    fn first_is_the_smallest_key_where_the_need_fits_and_the_test_holds() {
        // (share key, load) and free (memory, millicpus) per machine.
        let table: &[(u64, usize, u64, u64)] = &[
            (500, 2, 100, 1000),
            (100, 1, 10, 2000),
            (500, 1, 300, 0),
            (900, 0, 1000, 500),
            (u64::MAX, 0, 0, 0),
            (100, 1, 50, 50),
        ];
        let machines: Vec<(Key, Resources)> = table
            .iter()
            .enumerate()
            .map(|(m, &(share, load, mem, cpu))| ((share, load, m), res(mem, cpu)))
            .collect();
        let mut buckets = Buckets::new(machines.len());
        for &(key, free) in &machines {
            buckets.set(key.2, key, free);
        }
        // (need, machines the test turns away, expected)
        type Case = ((u64, u64), &'static [MachineIx], Option<MachineIx>);
        let cases: &[Case] = &[
            ((0, 0), &[], Some(1)),
            ((0, 0), &[1], Some(5)),
            ((0, 0), &[1, 5, 2, 0, 3], Some(4)),
            ((50, 0), &[], Some(5)),
            ((51, 0), &[], Some(2)),
            ((50, 50), &[5], Some(0)),
            ((200, 0), &[], Some(2)),
            ((200, 100), &[], Some(3)),
            ((10, 1500), &[], Some(1)),
            ((2000, 0), &[], None),
            ((0, 0), &[0, 1, 2, 3, 4, 5], None),
        ];
        for &((mem, cpu), refused, expected) in cases {
            let need = res(mem, cpu);
            let got = buckets.first(need, |m| {
                !refused.contains(&m) && need.fits_in(machines[m].1)
            });
            assert_eq!(
                got, expected,
                "need {mem} B, {cpu} mCPU, refused {refused:?}"
            );
        }
        // A change of one machine moves it in the order and in what fits.
        buckets.set(3, (50, 1, 3), res(20, 20));
        assert_eq!(buckets.first(res(0, 0), |_| true), Some(3));
        assert_eq!(buckets.first(res(200, 0), |m| m != 2), None);
    }

    #[test]
    fn no_machines_no_answer() {
        assert_eq!(Buckets::new(0).first(res(0, 0), |_| true), None);
    }
}
