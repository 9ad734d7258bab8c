//! Sets: which units an `apply` of a named set created (`flottectl apply --set NAME`), so that
//! `--prune` destroys only those. One key per set, written with a compare on its revision, and
//! the unit listing with each unit's revision that a plan compares against (its check index).

use std::collections::BTreeMap;
use std::fmt;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::kv::{json, timed};
use super::watch::decode_value;
use super::{Keys, Registry, RegistryError, UnitRecord};
use crate::unit::UnitName;

/// A set's name: an etcd key segment, so a safe alphabet (letters, digits, `.`, `_`, `-`), at
/// most 64 characters, and not dots only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SetName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("set name `{0}` is not valid: use 1 to 64 letters, digits, `.`, `_` or `-`, not dots only")]
pub struct SetNameError(pub String);

impl SetName {
    pub const MAX_LEN: usize = 64;

    pub fn new(name: &str) -> Result<SetName, SetNameError> {
        let safe = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if name.is_empty() || name.len() > Self::MAX_LEN || !safe || name.chars().all(|c| c == '.')
        {
            return Err(SetNameError(name.to_owned()));
        }
        Ok(SetName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SetName {
    type Err = SetNameError;

    fn from_str(s: &str) -> Result<SetName, SetNameError> {
        SetName::new(s)
    }
}

impl TryFrom<String> for SetName {
    type Error = SetNameError;

    fn try_from(s: String) -> Result<SetName, SetNameError> {
        SetName::new(&s)
    }
}

impl From<SetName> for String {
    fn from(s: SetName) -> String {
        s.0
    }
}

/// The units an apply of the set created, sorted, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRecord {
    pub units: Vec<UnitName>,
}

/// A unit record and the revision it was last changed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUnit {
    pub record: UnitRecord,
    pub revision: i64,
}

impl Registry {
    /// A set's record and the revision it was last changed at.
    pub async fn set(&self, name: &SetName) -> Result<Option<(SetRecord, i64)>, RegistryError> {
        self.get_json(self.keys.set(name)).await
    }

    /// Writes a set's record if it is still at `revision` (0: only if there is none), and
    /// returns the revision it is at now.
    pub async fn put_set_at(
        &self,
        name: &SetName,
        record: &SetRecord,
        revision: i64,
    ) -> Result<i64, RegistryError> {
        let key = self.keys.set(name);
        let what = format!("storing set {name}");
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(key.as_str(), json(record), None)]);
        let resp = timed("txn", what.clone(), self.client().txn(txn))
            .await?
            .map_err(|e| RegistryError::etcd(what, e))?;
        if resp.succeeded() {
            Ok(resp.header().map_or(0, |h| h.revision()))
        } else {
            Err(RegistryError::Conflict(format!("set {name}")))
        }
    }

    /// Every unit with the revision it last changed at, and the revision the list was read
    /// at: a unit changed after that revision shows a later one, a unit created after it too.
    pub async fn units_with_revisions(
        &self,
    ) -> Result<(BTreeMap<UnitName, StoredUnit>, i64), RegistryError> {
        let resp = self.range_prefix(&self.keys.units()).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let units = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = Keys::parse_unit(&self.keys, kv.key())?;
                let record: UnitRecord = decode_value(kv.key(), kv.value())?;
                Some((
                    name,
                    StoredUnit {
                        record,
                        revision: kv.mod_revision(),
                    },
                ))
            })
            .collect();
        Ok((units, revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_are_safe_key_segments() {
        for ok in ["web", "prod.web-1", "a_b", "..x"] {
            assert!(SetName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            let e = SetName::new(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }
}
