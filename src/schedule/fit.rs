//! Machines in the strategy's share order, found by what is free: a segment tree over the
//! machines keeping, per subtree, the smallest order key and the most free memory and CPU of
//! one machine in it. `in_order(need)` walks best-first and yields, in key order, only the
//! machines where `need` fits, skipping whole subtrees where it cannot; packing tries the
//! fullest machines first, and most of those are full.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::index::MachineIx;
use crate::resources::Resources;

/// The order a machine is tried in: (the strategy's share key, load, machine), smallest first.
pub(super) type Key = (u64, usize, MachineIx);

const NONE: Key = (u64::MAX, usize::MAX, usize::MAX);

#[derive(Clone, Copy)]
struct Node {
    key: Key,
    memory: u64,
    millicpus: u64,
}

const EMPTY: Node = Node {
    key: NONE,
    memory: 0,
    millicpus: 0,
};

pub(super) struct FitTree {
    /// Leaves from `leaves` on, one per machine in index order; node `i`'s children are `2i`
    /// and `2i + 1`; node 0 is unused.
    nodes: Vec<Node>,
    leaves: usize,
}

impl FitTree {
    pub(super) fn new(machines: usize) -> Self {
        let leaves = machines.next_power_of_two().max(1);
        Self {
            nodes: vec![EMPTY; 2 * leaves],
            leaves,
        }
    }

    /// Sets machine `m`'s key and free resources.
    pub(super) fn set(&mut self, m: MachineIx, key: Key, free: Resources) {
        let mut i = self.leaves + m;
        self.nodes[i] = Node {
            key,
            memory: free.memory,
            millicpus: free.millicpus,
        };
        while i > 1 {
            i /= 2;
            let (a, b) = (self.nodes[2 * i], self.nodes[2 * i + 1]);
            self.nodes[i] = Node {
                key: a.key.min(b.key),
                memory: a.memory.max(b.memory),
                millicpus: a.millicpus.max(b.millicpus),
            };
        }
    }

    /// Whether some machine under node `i` may have room for `need`: each dimension it asks
    /// for is free on at least one of them (not necessarily the same one).
    fn may_fit(&self, i: usize, need: Resources) -> bool {
        let n = &self.nodes[i];
        n.key != NONE
            && (need.memory == 0 || n.memory >= need.memory)
            && (need.millicpus == 0 || n.millicpus >= need.millicpus)
    }

    /// The machines where `need` fits in what is free, smallest key first. With a need of
    /// nothing, every machine.
    pub(super) fn in_order(&self, need: Resources) -> impl Iterator<Item = MachineIx> + '_ {
        let mut heap = BinaryHeap::new();
        if self.may_fit(1, need) {
            heap.push(Reverse((self.nodes[1].key, 1)));
        }
        std::iter::from_fn(move || {
            while let Some(Reverse((_, i))) = heap.pop() {
                if i >= self.leaves {
                    return Some(i - self.leaves);
                }
                for child in [2 * i, 2 * i + 1] {
                    if self.may_fit(child, need) {
                        heap.push(Reverse((self.nodes[child].key, child)));
                    }
                }
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(memory: u64, millicpus: u64) -> Resources {
        Resources { memory, millicpus }
    }

    /// The same answer by brute force: every machine that fits, sorted by key.
    fn brute(machines: &[(Key, Resources)], need: Resources) -> Vec<MachineIx> {
        let mut fit: Vec<&(Key, Resources)> =
            machines.iter().filter(|(_, f)| need.fits_in(*f)).collect();
        fit.sort_by_key(|(k, _)| *k);
        fit.into_iter().map(|(k, _)| k.2).collect()
    }

    #[test]
    fn yields_the_machines_that_fit_in_key_order() {
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
        let mut tree = FitTree::new(machines.len());
        for &(key, free) in &machines {
            tree.set(key.2, key, free);
        }
        let cases: &[((u64, u64), &[MachineIx])] = &[
            ((0, 0), &[1, 5, 2, 0, 3, 4]),
            ((50, 0), &[5, 2, 0, 3]),
            ((50, 50), &[5, 0, 3]),
            ((200, 0), &[2, 3]),
            ((200, 100), &[3]),
            ((10, 1500), &[1]),
            ((2000, 0), &[]),
        ];
        for &((mem, cpu), expected) in cases {
            let need = res(mem, cpu);
            let got: Vec<MachineIx> = tree.in_order(need).collect();
            assert_eq!(got, expected, "need {mem} B, {cpu} mCPU");
            assert_eq!(got, brute(&machines, need), "need {mem} B, {cpu} mCPU");
        }
        // A change of one machine moves it in the order and in what fits.
        tree.set(3, (50, 1, 3), res(20, 20));
        assert_eq!(tree.in_order(res(200, 0)).collect::<Vec<_>>(), [2]);
        assert_eq!(tree.in_order(res(0, 0)).next(), Some(3));
    }

    #[test]
    fn an_empty_tree_yields_nothing() {
        assert_eq!(FitTree::new(0).in_order(res(0, 0)).count(), 0);
    }
}
