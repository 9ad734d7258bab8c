//! Graph walks over the units: the order they are decided in (by name, except that MachineOf
//! targets come before their followers), the MachineOf cycles that make units unplaceable, and
//! the Replaces cycles inside which no unit displaces another.

use super::index::UnitIx;

pub(super) struct MachineOfOrder {
    /// Every unit once, targets before followers, otherwise by name.
    pub(super) order: Vec<UnitIx>,
    /// Position of each unit in `order`.
    pub(super) rank: Vec<usize>,
    /// For each unit on a cycle, the index of that cycle in `cycles`.
    pub(super) cycle_of: Vec<Option<usize>>,
    /// Each cycle found, as the units along it, starting with the first by name.
    pub(super) cycles: Vec<Vec<UnitIx>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    OnPath(usize),
    Done,
}

/// Depth-first from each unit in name order, visiting targets in name order (`targets` lists
/// are sorted): the post-order is the decision order. Iterative, so a long MachineOf chain
/// cannot overflow the stack. A unit on a cycle found this way is marked with that cycle; a unit
/// that only leads into a cycle is not, and waits for its target instead.
pub(super) fn machine_of_order(targets: &[Vec<UnitIx>]) -> MachineOfOrder {
    let n = targets.len();
    let mut mark = vec![Mark::New; n];
    let mut order = Vec::with_capacity(n);
    let mut cycle_of = vec![None; n];
    let mut cycles = Vec::new();
    // (unit, how many of its targets were visited)
    let mut path: Vec<(UnitIx, usize)> = Vec::new();
    for root in 0..n {
        if mark[root] != Mark::New {
            continue;
        }
        mark[root] = Mark::OnPath(0);
        path.push((root, 0));
        while let Some(&(node, next)) = path.last() {
            let Some(&target) = targets[node].get(next) else {
                path.pop();
                mark[node] = Mark::Done;
                order.push(node);
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            match mark[target] {
                Mark::New => {
                    mark[target] = Mark::OnPath(path.len());
                    path.push((target, 0));
                }
                Mark::OnPath(at) => {
                    let members: Vec<UnitIx> = path[at..].iter().map(|&(u, _)| u).collect();
                    record_cycle(members, &mut cycle_of, &mut cycles);
                }
                Mark::Done => {}
            }
        }
    }
    let mut rank = vec![0; n];
    for (position, &u) in order.iter().enumerate() {
        rank[u] = position;
    }
    MachineOfOrder {
        order,
        rank,
        cycle_of,
        cycles,
    }
}

/// `members` run along the MachineOf edges and the last one points back to the first; the
/// cycle is rotated to start with its first name so its text does not depend on where the
/// search entered it.
fn record_cycle(
    mut members: Vec<UnitIx>,
    cycle_of: &mut [Option<usize>],
    cycles: &mut Vec<Vec<UnitIx>>,
) {
    let first = members
        .iter()
        .enumerate()
        .min_by_key(|&(_, &u)| u)
        .map_or(0, |(i, _)| i);
    members.rotate_left(first);
    let id = cycles.len();
    for &u in &members {
        cycle_of[u].get_or_insert(id);
    }
    cycles.push(members);
}

const UNSEEN: usize = usize::MAX;

/// Tarjan's strongly connected components, iterative: `component[u] == component[v]` exactly
/// when `u` and `v` reach each other along `edges`.
pub(super) fn components(edges: &[Vec<usize>]) -> Vec<usize> {
    let n = edges.len();
    let mut t = Tarjan {
        index: vec![UNSEEN; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next_index: 0,
    };
    let mut component = vec![UNSEEN; n];
    let mut next_component = 0;
    for root in 0..n {
        if t.index[root] != UNSEEN {
            continue;
        }
        t.visit(root);
        // (node, how many of its edges were followed)
        let mut path = vec![(root, 0)];
        while let Some(&(v, next)) = path.last() {
            if let Some(&w) = edges[v].get(next) {
                if let Some(top) = path.last_mut() {
                    top.1 += 1;
                }
                if t.index[w] == UNSEEN {
                    t.visit(w);
                    path.push((w, 0));
                } else if t.on_stack[w] {
                    t.low[v] = t.low[v].min(t.index[w]);
                }
                continue;
            }
            path.pop();
            if let Some(&(parent, _)) = path.last() {
                t.low[parent] = t.low[parent].min(t.low[v]);
            }
            if t.low[v] == t.index[v] {
                while let Some(w) = t.stack.pop() {
                    t.on_stack[w] = false;
                    component[w] = next_component;
                    if w == v {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

struct Tarjan {
    index: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next_index: usize,
}

impl Tarjan {
    fn visit(&mut self, v: usize) {
        self.index[v] = self.next_index;
        self.low[v] = self.next_index;
        self.next_index += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_before_followers_and_names_decide_the_rest() {
        // 0 follows 2, 2 follows 3; 1 is free.
        let o = machine_of_order(&[vec![2], vec![], vec![3], vec![]]);
        assert_eq!(o.order, vec![3, 2, 0, 1]);
        assert_eq!(o.rank, vec![2, 3, 1, 0]);
        assert!(o.cycles.is_empty());
    }

    #[test]
    fn cycles_start_with_their_first_name() {
        // 1 -> 2 -> 0 -> 1, and 3 leads into the cycle without being on it.
        let o = machine_of_order(&[vec![1], vec![2], vec![0], vec![1], vec![4]]);
        assert_eq!(o.cycles, vec![vec![0, 1, 2], vec![4]]);
        assert_eq!(o.cycle_of, vec![Some(0), Some(0), Some(0), None, Some(1)]);
    }

    #[test]
    fn components_join_units_that_reach_each_other() {
        // 0 -> 1 -> 2 -> 0 is one component; 3 -> 0 and 4 stand alone.
        let c = components(&[vec![1], vec![2], vec![0], vec![0], vec![]]);
        assert!(c[0] == c[1] && c[1] == c[2]);
        assert!(c[3] != c[0] && c[4] != c[0] && c[3] != c[4]);
    }
}
