//! Publishing: the state records that changed since the last pass, written in batched
//! transactions under the agent's lease; those of units gone from here deleted.

use std::collections::BTreeMap;

use super::{Agent, state_record};
use crate::registry::UnitStateRecord;
use crate::systemd::UnitManager;
use crate::unit::UnitName;

impl<M: UnitManager> Agent<M> {
    /// Writes the state records that changed, deletes those of units gone from here.
    pub(super) async fn publish(&mut self) {
        let records: BTreeMap<UnitName, UnitStateRecord> = self
            .observed
            .iter()
            .filter_map(|(name, o)| {
                let wanted = self.desired.get(name).map(|d| d.target);
                let message = self.messages.get(name).map(String::as_str);
                Some((name.clone(), state_record(o, wanted, message)?))
            })
            .collect();
        let mut changes: Vec<(UnitName, Option<UnitStateRecord>)> = self
            .published
            .keys()
            .filter(|n| !records.contains_key(*n))
            .map(|n| (n.clone(), None))
            .collect();
        changes.extend(
            records
                .into_iter()
                .filter(|(name, record)| self.published.get(name) != Some(record))
                .map(|(name, record)| (name, Some(record))),
        );
        if changes.is_empty() {
            return;
        }
        let me = self.config.machine_id.clone();
        match self.registry.write_states(&me, &changes, &self.lease).await {
            Ok(()) => {
                for (name, record) in changes {
                    match record {
                        Some(r) => self.published.insert(name, r),
                        None => self.published.remove(&name),
                    };
                }
            }
            // What was not written differs from `published` and is written next pass.
            Err(e) => {
                tracing::warn!(error = %e, units = changes.len(), "cannot publish unit states")
            }
        }
    }
}
