//! The revision of the latest change clients waiting for unit states follow.

use super::Registry;
use super::watch;

impl Registry {
    /// The revision of the latest change to units, placements, reasons or unit states: what
    /// a client waiting for units to reach a state needs to know to re-read them. One watch
    /// per subtree runs in its own task for as long as a receiver lives; the value is 0 until
    /// the first listing and never goes back.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<i64> {
        let prefixes = [
            self.keys.units(),
            self.keys.placements(),
            self.keys.reasons(),
            self.keys.states(),
        ];
        watch::latest_revision(
            prefixes
                .into_iter()
                .map(|p| watch::PrefixWatch::new(self.client(), p))
                .collect(),
        )
    }
}
