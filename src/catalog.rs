//! The service catalog as every flotted holds it in memory: the declared services' instances,
//! followed through one etcd watch (`Registry::watch_instances`), with the revision each
//! service last changed at. The API's catalog and its blocking queries answer from it, never
//! with one etcd read per request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::registry::{InstanceId, InstanceRecord, Registry, Update};
use crate::unit::ServiceName;

/// The instances at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// The revision this view is up to date with; 0 before the first listing.
    pub revision: i64,
    pub instances: BTreeMap<InstanceId, InstanceRecord>,
    /// The revision at which each service's instances last changed (for a service never
    /// changed since the listing, the listing's revision). Kept for services gone too, so
    /// that a blocking query on one answers when it goes.
    pub changed: BTreeMap<ServiceName, i64>,
}

impl View {
    /// The view after `update`, read at `revision`.
    pub fn apply(&self, update: Update<InstanceId, InstanceRecord>, revision: i64) -> View {
        let mut next = self.clone();
        next.revision = revision;
        match update {
            Update::Reset(items) => {
                let instances: BTreeMap<InstanceId, InstanceRecord> = items.into_iter().collect();
                // After a relisting, each service whose instances differ has changed.
                let services: std::collections::BTreeSet<&ServiceName> = instances
                    .keys()
                    .chain(self.instances.keys())
                    .map(|id| &id.service)
                    .collect();
                for service in services {
                    let of = |m: &BTreeMap<InstanceId, InstanceRecord>| -> Vec<InstanceRecord> {
                        m.iter()
                            .filter(|(id, _)| &id.service == service)
                            .map(|(_, r)| r.clone())
                            .collect()
                    };
                    if of(&instances) != of(&self.instances) || self.revision == 0 {
                        next.changed.insert(service.clone(), revision);
                    }
                }
                next.instances = instances;
            }
            Update::Changes(changes) => {
                for (id, record) in changes {
                    next.changed.insert(id.service.clone(), revision);
                    match record {
                        Some(r) => next.instances.insert(id, r),
                        None => next.instances.remove(&id),
                    };
                }
            }
        }
        next
    }

    /// The revision a blocking query on `service` compares with: when its instances last
    /// changed, or the view's revision for a service it has never seen.
    pub fn index_of(&self, service: &ServiceName) -> i64 {
        self.changed.get(service).copied().unwrap_or(self.revision)
    }

    /// The instances of one service, in key order (machine, then unit).
    pub fn instances_of<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> impl Iterator<Item = &'a InstanceRecord> + 'a {
        self.instances
            .iter()
            .filter(move |(id, _)| &id.service == service)
            .map(|(_, r)| r)
    }

    /// Each service with its count of instances and of healthy ones, by name.
    pub fn services(&self) -> BTreeMap<&ServiceName, (usize, usize)> {
        let mut out: BTreeMap<&ServiceName, (usize, usize)> = BTreeMap::new();
        for (id, r) in &self.instances {
            let counts = out.entry(&id.service).or_default();
            counts.0 += 1;
            counts.1 += usize::from(r.health.is_healthy());
        }
        out
    }
}

/// Follows the instances in a task of its own while any receiver lives. The view's revision
/// is 0 until the first listing.
pub fn follow(registry: &Registry) -> watch::Receiver<Arc<View>> {
    let (tx, rx) = watch::channel(Arc::new(View::default()));
    let mut instances = registry.watch_instances();
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                update = instances.next() => match update {
                    Ok(update) => {
                        backoff.reset();
                        let next = tx.borrow().apply(update, instances.revision());
                        tx.send_replace(Arc::new(next));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "service instance watch failed; resuming");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineId;
    use crate::registry::Health;
    use crate::unit::UnitName;

    fn record(
        service: &str,
        machine: char,
        unit: &str,
        health: Health,
    ) -> (InstanceId, InstanceRecord) {
        let r = InstanceRecord {
            service: ServiceName::new(service).unwrap(),
            machine: MachineId::new(&machine.to_string().repeat(32)).unwrap(),
            hostname: format!("host-{machine}"),
            address: "10.0.0.1".into(),
            port: 80,
            tags: vec![],
            unit: UnitName::new(unit).unwrap(),
            health,
        };
        (r.id(), r)
    }

    fn name(s: &str) -> ServiceName {
        ServiceName::new(s).unwrap()
    }

    #[test]
    fn each_service_remembers_the_revision_it_last_changed_at() {
        let web1 = record("web", 'a', "web@1.service", Health::Passing);
        let web2 = record("web", 'b', "web@2.service", Health::Unknown);
        let db = record("db", 'a', "db.service", Health::Passing);
        let v = View::default().apply(Update::Reset(vec![web1.clone(), db.clone()]), 10);
        assert_eq!(
            (v.index_of(&name("web")), v.index_of(&name("db"))),
            (10, 10)
        );
        assert_eq!(v.index_of(&name("nope")), 10);

        let v = v.apply(
            Update::Changes(vec![(web2.0.clone(), Some(web2.1.clone()))]),
            12,
        );
        assert_eq!(
            (v.index_of(&name("web")), v.index_of(&name("db"))),
            (12, 10)
        );
        assert_eq!(v.index_of(&name("nope")), 12);
        assert_eq!(v.services()[&name("web")], (2, 1));
        assert_eq!(v.instances_of(&name("web")).count(), 2);

        // A service whose last instance went keeps its revision.
        let v = v.apply(Update::Changes(vec![(db.0.clone(), None)]), 15);
        assert_eq!(v.index_of(&name("db")), 15);
        assert!(!v.services().contains_key(&name("db")));

        // A relisting changes only the services whose instances differ.
        let mut web1_critical = web1.clone();
        web1_critical.1.health = Health::Critical;
        let v = v.apply(Update::Reset(vec![web1_critical, web2]), 20);
        assert_eq!(
            (v.index_of(&name("web")), v.index_of(&name("db"))),
            (20, 15)
        );
        assert_eq!(v.services()[&name("web")], (2, 0));
        let same = v.apply(Update::Reset(v.instances.clone().into_iter().collect()), 25);
        assert_eq!(same.index_of(&name("web")), 20);
        assert_eq!(same.revision, 25);
    }
}
