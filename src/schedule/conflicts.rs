//! `Conflicts=` as a precomputed relation: which patterns each unit owns and which patterns match
//! each unit's name, so the placement passes never run a glob match.

use std::collections::HashMap;

use super::Unit;
use super::index::UnitIx;

/// Index of a distinct `Conflicts=` pattern (patterns are told apart by their text).
pub(super) type PatternIx = usize;

pub(super) struct ConflictIndex {
    /// Per unit, sorted: the patterns in its own `Conflicts=`.
    owns: Vec<Vec<PatternIx>>,
    /// Per unit, sorted: the patterns (of any unit) that match its name.
    matched_by: Vec<Vec<PatternIx>>,
}

impl ConflictIndex {
    /// `units` must be sorted by name: a pattern is matched only against the units whose names
    /// start with its literal prefix, found by binary search, which keeps this near-linear.
    pub(super) fn new(units: &[&Unit]) -> Self {
        let mut ids: HashMap<&str, PatternIx> = HashMap::new();
        let mut patterns = Vec::new();
        let mut owns = vec![Vec::new(); units.len()];
        for (u, unit) in units.iter().enumerate() {
            for pattern in &unit.requirements.conflicts {
                let id = *ids.entry(pattern.as_str()).or_insert_with(|| {
                    patterns.push(pattern);
                    patterns.len() - 1
                });
                owns[u].push(id);
            }
            owns[u].sort_unstable();
            owns[u].dedup();
        }
        let mut matched_by = vec![Vec::new(); units.len()];
        for (id, pattern) in patterns.iter().enumerate() {
            let prefix = literal_prefix(pattern.as_str());
            let start = units.partition_point(|u| u.name.as_str() < prefix);
            let candidates = units[start..]
                .iter()
                .take_while(|u| u.name.as_str().starts_with(prefix));
            for (offset, unit) in candidates.enumerate() {
                if pattern.matches(&unit.name) {
                    // Patterns are visited in increasing order, so each list stays sorted.
                    matched_by[start + offset].push(id);
                }
            }
        }
        Self { owns, matched_by }
    }

    pub(super) fn owns(&self, u: UnitIx) -> &[PatternIx] {
        &self.owns[u]
    }

    pub(super) fn matched_by(&self, u: UnitIx) -> &[PatternIx] {
        &self.matched_by[u]
    }

    /// `conflict_between` for two units of the view, without glob matching.
    pub(super) fn between(&self, a: UnitIx, b: UnitIx) -> bool {
        a != b
            && (intersects(&self.owns[a], &self.matched_by[b])
                || intersects(&self.owns[b], &self.matched_by[a]))
    }
}

/// The part of a glob before its first metacharacter: every name the glob matches starts with it
/// (the `glob` crate escapes with brackets, never with a backslash).
fn literal_prefix(raw: &str) -> &str {
    raw.find(['*', '?', '[']).map_or(raw, |i| &raw[..i])
}

fn intersects(a: &[PatternIx], b: &[PatternIx]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}
