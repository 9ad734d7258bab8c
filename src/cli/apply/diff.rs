//! What `apply` would change, as pure functions: the desired set against the units as stored
//! (from the plan's answer), unit by unit, with an option-level diff of changed contents.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::unit::{DesiredState, UnitFile, UnitName, UnitOption};

use super::dir::DesiredUnit;

/// A unit as the cluster stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub file: UnitFile,
    pub desired: DesiredState,
}

/// What `apply` does to one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// New: submitted in `desired`.
    Submit { desired: DesiredState },
    /// Its content changed: replaced (with a rolling update when it runs), in `desired`.
    Replace {
        from: DesiredState,
        desired: DesiredState,
        diff: Vec<String>,
    },
    /// Only its desired state changed.
    State {
        from: DesiredState,
        desired: DesiredState,
    },
    /// In the set, no longer in the directories, and `--prune` given.
    Destroy,
    /// In the set, no longer in the directories, kept: no `--prune`.
    Kept,
    /// As stored.
    InSync,
}

impl Change {
    pub fn is_change(&self) -> bool {
        !matches!(self, Change::InSync | Change::Kept)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitChange {
    pub name: UnitName,
    pub change: Change,
}

/// Every unit of `desired`, and each unit of `set` that `desired` lacks and that is still
/// stored: destroyed with `prune`, kept without; sorted by name.
pub fn diff(
    desired: &[DesiredUnit],
    stored: &BTreeMap<UnitName, Stored>,
    set: &BTreeSet<UnitName>,
    prune: bool,
) -> Vec<UnitChange> {
    let mut changes: Vec<UnitChange> = desired
        .iter()
        .map(|d| {
            let change = match stored.get(&d.name) {
                None => Change::Submit { desired: d.state },
                Some(s) if s.file != d.file => Change::Replace {
                    from: s.desired,
                    desired: d.state,
                    diff: option_diff(s.file.options(), d.file.options()),
                },
                Some(s) if s.desired != d.state => Change::State {
                    from: s.desired,
                    desired: d.state,
                },
                Some(_) => Change::InSync,
            };
            UnitChange {
                name: d.name.clone(),
                change,
            }
        })
        .collect();
    let wanted: BTreeSet<&UnitName> = desired.iter().map(|d| &d.name).collect();
    for name in set {
        if !wanted.contains(name) && stored.contains_key(name) {
            changes.push(UnitChange {
                name: name.clone(),
                change: if prune { Change::Destroy } else { Change::Kept },
            });
        }
    }
    changes.sort_by(|a, b| a.name.cmp(&b.name));
    changes
}

/// The options removed (`- [Section] Name=Value`), then those added (`+ ...`), each in file
/// order: what is not in a longest common subsequence of the two lists, so that repeated
/// options (several `ExecStartPre=`) count once each.
pub fn option_diff(old: &[UnitOption], new: &[UnitOption]) -> Vec<String> {
    let (n, m) = (old.len(), new.len());
    // lcs[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let show =
        |sign: char, o: &UnitOption| format!("{sign} [{}] {}={}", o.section, o.name, o.value);
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(show('+', &new[j]));
            j += 1;
        } else {
            out.push(show('-', &old[i]));
            i += 1;
        }
    }
    // Removals first, then additions, each in file order.
    out.sort_by_key(|l| !l.starts_with('-'));
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use DesiredState::{Inactive, Launched, Loaded};

    fn file(text: &str) -> UnitFile {
        UnitFile::parse(text.as_bytes()).unwrap().file
    }

    fn name(n: &str) -> UnitName {
        UnitName::new(n).unwrap()
    }

    fn desired(n: &str, text: &str, state: DesiredState) -> DesiredUnit {
        DesiredUnit {
            name: name(n),
            file: file(text),
            state,
            path: PathBuf::from(n),
        }
    }

    const A: &str = "[Service]\nExecStart=/bin/sleep 1\n";
    const B: &str = "[Service]\nExecStart=/bin/sleep 2\n";

    #[test]
    fn each_unit_is_submitted_replaced_changed_in_state_destroyed_or_in_sync() {
        let stored: BTreeMap<UnitName, Stored> = [
            ("same.service", A, Launched),
            ("content.service", A, Launched),
            ("state.service", A, Launched),
            ("both.service", A, Loaded),
            ("gone.service", A, Launched),
            ("foreign.service", A, Launched),
        ]
        .into_iter()
        .map(|(n, t, d)| {
            (
                name(n),
                Stored {
                    file: file(t),
                    desired: d,
                },
            )
        })
        .collect();
        let wanted = [
            desired("same.service", A, Launched),
            desired("content.service", B, Launched),
            desired("state.service", A, Inactive),
            desired("both.service", B, Launched),
            desired("new.service", A, Loaded),
        ];
        let set: BTreeSet<UnitName> = ["gone.service", "new.service", "vanished.service"]
            .into_iter()
            .map(name)
            .collect();
        let shown = |changes: Vec<UnitChange>| -> Vec<(String, String)> {
            changes
                .into_iter()
                .map(|c| {
                    let what = match c.change {
                        Change::Submit { desired } => format!("submit {desired}"),
                        Change::Replace { from, desired, .. } => {
                            format!("replace {from}->{desired}")
                        }
                        Change::State { from, desired } => format!("state {from}->{desired}"),
                        Change::Destroy => "destroy".into(),
                        Change::Kept => "kept".into(),
                        Change::InSync => "in sync".into(),
                    };
                    (c.name.to_string(), what)
                })
                .collect()
        };
        let expected = |gone: &str| -> Vec<(String, String)> {
            [
                ("both.service", "replace loaded->launched"),
                ("content.service", "replace launched->launched"),
                ("gone.service", gone),
                ("new.service", "submit loaded"),
                ("same.service", "in sync"),
                ("state.service", "state launched->inactive"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
        };
        // Only the set's own unit that is still stored goes; never foreign.service.
        assert_eq!(shown(diff(&wanted, &stored, &set, false)), expected("kept"));
        assert_eq!(
            shown(diff(&wanted, &stored, &set, true)),
            expected("destroy")
        );
    }

    #[test]
    fn an_option_diff_shows_removed_and_added_options_with_their_section() {
        let cases: &[(&str, &str, &[&str])] = &[
            (A, A, &[]),
            (
                A,
                B,
                &[
                    "- [Service] ExecStart=/bin/sleep 1",
                    "+ [Service] ExecStart=/bin/sleep 2",
                ],
            ),
            (
                "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/sleep 1\n",
                "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/sleep 1\nRestart=always\n[X-Fleet]\nGlobal=true\n",
                &["+ [Service] Restart=always", "+ [X-Fleet] Global=true"],
            ),
            (
                "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/sleep 1\n",
                "[Service]\nExecStart=/bin/sleep 1\n",
                &["- [Unit] Description=x"],
            ),
        ];
        for (old, new, expected) in cases {
            assert_eq!(
                option_diff(file(old).options(), file(new).options()),
                *expected,
                "{old:?} -> {new:?}"
            );
        }
    }
}
