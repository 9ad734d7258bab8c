//! The executor: carries out the plan's actions on systemd and the units directory.

use std::collections::BTreeSet;

use super::{Action, ActionError, Agent};
use crate::unit::{Target, UnitFile, UnitHash, UnitName};

impl Agent {
    /// Carries out the actions in order. A failure affects only its unit: it is recorded,
    /// retried later with backoff, and the other units go on.
    pub(super) async fn execute(&mut self, actions: Vec<Action>) -> Vec<UnitName> {
        let mut touched = Vec::new();
        let mut failed: BTreeSet<UnitName> = BTreeSet::new();
        let mut unloaded = Vec::new();
        for action in actions {
            if action.unit().is_some_and(|u| failed.contains(u)) {
                continue;
            }
            let result = self.act(&action).await;
            match (&action, result) {
                (Action::Reload, Ok(())) => {}
                (Action::Reload, Err(e)) => {
                    // Without a reload, starts would use stale files: stop this pass here.
                    tracing::warn!(error = %e, "daemon reload failed");
                    for u in self.managed() {
                        self.fail(&u, ActionError::Reload(e.to_string()));
                    }
                    break;
                }
                (a, Ok(())) => {
                    let u = a.unit().expect("unit action").clone();
                    self.succeed(&u);
                    if matches!(a, Action::Unload(_)) {
                        unloaded.push(u.clone());
                    }
                    touched.push(u);
                }
                (a, Err(e)) => {
                    let u = a.unit().expect("unit action").clone();
                    self.fail(&u, e);
                    failed.insert(u.clone());
                    touched.push(u);
                }
            }
        }
        for u in unloaded {
            // After the reload: a failed unit would otherwise linger in systemd as `failed`.
            if let Err(e) = self.systemd.reset_failed(&u).await {
                tracing::debug!(unit = %u, error = %e, "reset-failed");
            }
        }
        touched
    }

    async fn act(&mut self, action: &Action) -> Result<(), ActionError> {
        match action {
            Action::Stop(u) => {
                self.systemd.stop(u).await?;
                self.observed.entry(u.clone()).or_default().done = Some(Target::Loaded);
            }
            Action::Unload(u) => {
                self.systemd.stop(u).await?;
                self.systemd.unlink_runtime(std::slice::from_ref(u)).await?;
                self.units.remove(u).map_err(|source| ActionError::File {
                    what: "removing",
                    path: self.units.path(u),
                    source,
                })?;
                self.observed.remove(u);
            }
            Action::Load(u, hash) => {
                let file = self.content(hash).await?;
                let path = self
                    .units
                    .write(u, &file)
                    .map_err(|source| ActionError::File {
                        what: "writing",
                        path: self.units.path(u),
                        source,
                    })?;
                self.systemd.link_runtime(&[path]).await?;
                let o = self.observed.entry(u.clone()).or_default();
                o.file = Some(*hash);
                o.done = o.done.or(Some(Target::Loaded));
            }
            Action::Reload => self.systemd.reload().await?,
            Action::Start(u) => {
                self.systemd.start(u).await?;
                self.observed.entry(u.clone()).or_default().done = Some(Target::Launched);
            }
            Action::Restart(u) => {
                self.systemd.restart(u).await?;
                self.observed.entry(u.clone()).or_default().done = Some(Target::Launched);
            }
        }
        Ok(())
    }

    async fn content(&mut self, hash: &UnitHash) -> Result<UnitFile, ActionError> {
        if let Some(file) = self.contents.get(hash) {
            return Ok(file.clone());
        }
        match self.registry.content(hash).await {
            Ok(Some(file)) => {
                self.contents.insert(*hash, file.clone());
                Ok(file)
            }
            Ok(None) => Err(ActionError::MissingContent(*hash)),
            Err(e) => Err(ActionError::Registry(e)),
        }
    }
}
