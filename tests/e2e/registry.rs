//! The registry against a real etcd.

use std::time::Duration;

use crate::support::within;
use flotte::isolated::Etcd;
use flotte::machine::{MachineId, Metadata};
use flotte::registry::{
    EngineWrite, EtcdSettings, LossPolicy, MachineRecord, MetadataOverride, ReasonRecord, Registry,
    RegistryError, ScheduleEntry, StatesSeen, UnitStateRecord, Update,
};
use flotte::unit::{DesiredState, Target, UnitFile, UnitName};

async fn etcd() -> (Etcd, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("flotte-etcd-")
        .tempdir()
        .unwrap();
    let etcd = Etcd::start(dir.path()).await.expect("etcd starts");
    (etcd, dir)
}

fn settings(etcd: &Etcd, prefix: &str) -> EtcdSettings {
    EtcdSettings {
        endpoints: vec![etcd.client_url().to_owned()],
        prefix: prefix.to_owned(),
        ..EtcdSettings::default()
    }
}

fn unit(name: &str) -> UnitName {
    UnitName::new(name).unwrap()
}

fn file(text: &str) -> UnitFile {
    UnitFile::parse(text.as_bytes()).unwrap().file
}

fn machine(c: char) -> MachineId {
    MachineId::new(&c.to_string().repeat(32)).unwrap()
}

/// How long a registry operation in these tests may take.
const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn units_are_stored_with_their_content_and_read_back() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t1/")).await.unwrap();
    let name = unit("web.service");
    let content = file("[Service]\nExecStart=/bin/sleep 1\n");
    let hash = registry
        .put_unit(&name, &content, DesiredState::Loaded)
        .await
        .unwrap();
    let (record, revision) = registry.unit(&name).await.unwrap().unwrap();
    assert_eq!(record.hash, hash);
    assert_eq!(record.desired, DesiredState::Loaded);
    assert_eq!(registry.content(&hash).await.unwrap(), Some(content));

    let mut launched = record.clone();
    launched.desired = DesiredState::Launched;
    registry
        .set_desired(&name, &launched, revision)
        .await
        .unwrap();
    let stale = registry
        .set_desired(&name, &launched, revision)
        .await
        .unwrap_err();
    assert!(matches!(stale, RegistryError::Conflict(_)), "{stale}");

    assert!(registry.delete_unit(&name).await.unwrap());
    assert!(!registry.delete_unit(&name).await.unwrap());
    assert!(registry.unit(&name).await.unwrap().is_none());
}

/// Contents are read in batches of `MAX_TXN_OPS` per request; a batch whose answer is over
/// the client's message limit (4 MiB) is read one by one. Either way each hash gets its own
/// content, and a missing one is `None`.
#[tokio::test]
async fn many_contents_are_read_in_batches_each_to_its_hash() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/tb/")).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..300 {
        let content = file(&format!("[Service]\nExecStart=/bin/sleep {i}\n"));
        expected.push((content.hash(), Some(content)));
    }
    // 128 contents of 40 KB: one batch of them is a 5 MB answer.
    let big = "x".repeat(40_000);
    for i in 0..128 {
        let content = file(&format!(
            "[Unit]\nDescription={i} {big}\n[Service]\nExecStart=/bin/true\n"
        ));
        expected.push((content.hash(), Some(content)));
    }
    for (i, (_, content)) in expected.iter().enumerate() {
        let name = unit(&format!("u{i}.service"));
        let content = content.as_ref().unwrap();
        registry
            .put_unit(&name, content, DesiredState::Loaded)
            .await
            .unwrap();
    }
    let missing = file("[Service]\nExecStart=/bin/never-stored\n");
    expected.insert(150, (missing.hash(), None));
    let hashes: Vec<_> = expected.iter().map(|(h, _)| *h).collect();
    let read: Vec<_> = registry
        .contents(&hashes)
        .await
        .into_iter()
        .map(|(h, r)| (h, r.unwrap()))
        .collect();
    assert_eq!(read.len(), expected.len());
    assert!(
        read == expected,
        "contents read back differ from those stored"
    );
}

#[tokio::test]
async fn creating_a_unit_that_exists_changes_nothing_and_returns_it() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/tc/")).await.unwrap();
    let name = unit("web.service");
    let first = file("[Service]\nExecStart=/bin/sleep 1\n");
    let created = registry
        .create_unit(&name, &first, DesiredState::Launched)
        .await
        .unwrap();
    assert_eq!(created, None, "a new unit is created");
    let (stored, revision) = registry.unit(&name).await.unwrap().unwrap();
    assert_eq!(
        (stored.hash, stored.desired),
        (first.hash(), DesiredState::Launched)
    );
    let second = file("[Service]\nExecStart=/bin/sleep 2\n");
    let again = registry
        .create_unit(&name, &second, DesiredState::Inactive)
        .await
        .unwrap();
    assert_eq!(again, Some((stored.clone(), revision)));
    assert_eq!(
        registry.unit(&name).await.unwrap(),
        Some((stored, revision))
    );
    assert_eq!(registry.content(&second.hash()).await.unwrap(), None);
}

#[tokio::test]
async fn a_watch_lists_then_streams_changes_and_relists_after_compaction() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t2/")).await.unwrap();
    let content = file("[Service]\nExecStart=/bin/true\n");
    registry
        .put_unit(&unit("a.service"), &content, DesiredState::Inactive)
        .await
        .unwrap();

    let mut watch = registry.watch_units();
    match within("first list", SOON, watch.next()).await.unwrap() {
        Update::Reset(items) => assert_eq!(
            items.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["a.service"]
        ),
        other => panic!("expected a reset, got {other:?}"),
    }
    registry
        .put_unit(&unit("b.service"), &content, DesiredState::Launched)
        .await
        .unwrap();
    match within("change after list", SOON, watch.next())
        .await
        .unwrap()
    {
        Update::Changes(changes) => {
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].0.as_str(), "b.service");
            assert_eq!(
                changes[0].1.as_ref().unwrap().desired,
                DesiredState::Launched
            );
        }
        other => panic!("expected changes, got {other:?}"),
    }
    registry.delete_unit(&unit("a.service")).await.unwrap();
    match within("deletion", SOON, watch.next()).await.unwrap() {
        Update::Changes(changes) => {
            assert!(changes[0].0.as_str() == "a.service" && changes[0].1.is_none())
        }
        other => panic!("expected a deletion, got {other:?}"),
    }

    // History the watch has not seen yet is compacted away while no stream is open: it must
    // list again rather than miss the change.
    let mut fresh = registry.watch_units();
    within("list", SOON, fresh.next()).await.unwrap();
    registry
        .put_unit(&unit("c.service"), &content, DesiredState::Loaded)
        .await
        .unwrap();
    let mut client = etcd_client::Client::connect([etcd.client_url()], None)
        .await
        .unwrap();
    // A write outside the prefix moves the revision past c's, so compacting at it removes
    // the revision the watch would resume from.
    let rev = client
        .put("/elsewhere", "x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(rev, None).await.unwrap();
    match within("relist after compaction", SOON, fresh.next())
        .await
        .unwrap()
    {
        Update::Reset(items) => {
            let names: Vec<_> = items.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["b.service", "c.service"]);
        }
        other => panic!("expected a reset after compaction, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_value_is_skipped_without_hiding_the_others() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t3/")).await.unwrap();
    let content = file("[Service]\nExecStart=/bin/true\n");
    registry
        .put_unit(&unit("good.service"), &content, DesiredState::Loaded)
        .await
        .unwrap();
    let mut client = etcd_client::Client::connect([etcd.client_url()], None)
        .await
        .unwrap();
    client
        .put("/t3/units/bad.service", "{not json", None)
        .await
        .unwrap();
    client.put("/t3/units/..evil", "{}", None).await.unwrap();
    let (units, _) = registry.units().await.unwrap();
    assert_eq!(
        units.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["good.service"]
    );
}

#[tokio::test]
async fn a_deposed_leaders_late_write_is_fenced_off() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t4/")).await.unwrap();
    let lease_a = registry.grant_lease(Duration::from_secs(5)).await.unwrap();
    let lease_b = registry.grant_lease(Duration::from_secs(5)).await.unwrap();
    let a = within(
        "campaign a",
        SOON,
        registry.campaign(&lease_a, &machine('a')),
    )
    .await
    .unwrap();
    assert_eq!(registry.leader().await.unwrap(), Some(machine('a')));

    let write = vec![vec![EngineWrite::PutReason(
        unit("x.service"),
        ReasonRecord { reason: "a".into() },
    )]];
    registry.apply(&a.fence, &write).await.unwrap();

    let b_campaign = tokio::spawn({
        let registry = registry.clone();
        async move { registry.campaign(&lease_b, &machine('b')).await }
    });
    registry.revoke_lease(&lease_a).await.unwrap();
    let b = within("campaign b after a's lease ended", SOON, b_campaign)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(registry.leader().await.unwrap(), Some(machine('b')));

    let late = registry.apply(&a.fence, &write).await.unwrap_err();
    assert!(matches!(late, RegistryError::Fenced), "{late}");
    registry.apply(&b.fence, &write).await.unwrap();
}

/// The second phase of a move, as the engine writes it: guarded by the states its view saw.
#[tokio::test]
async fn a_guarded_placement_is_refused_after_a_state_the_guard_did_not_see_and_only_it() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t4g/")).await.unwrap();
    let lease = registry.grant_lease(Duration::from_secs(30)).await.unwrap();
    let leader = within("campaign", SOON, registry.campaign(&lease, &machine('a')))
        .await
        .unwrap();
    let (old, new) = (machine('b'), machine('c'));
    let file = file("[Service]\nExecStart=/bin/sleep 1\n");
    let state = |active: &str| UnitStateRecord {
        hash: file.hash(),
        current: Target::Launched,
        load: "loaded".into(),
        active: active.into(),
        sub: "dead".into(),
        message: None,
        started: 0,
    };
    let place = |u: &str| {
        vec![EngineWrite::PutSchedule(
            new.clone(),
            unit(u),
            ScheduleEntry {
                hash: file.hash(),
                target: Target::Launched,
                global: false,
                start: 0,
            },
        )]
    };
    let groups = vec![
        vec![EngineWrite::PutReason(
            unit("other.service"),
            ReasonRecord { reason: "r".into() },
        )],
        place("moved.service"),
        place("fresh.service"),
    ];
    let scheduled = || async {
        let (entries, _) = registry.schedule().await.unwrap();
        let mut names: Vec<String> = entries
            .into_iter()
            .map(|((_, u), _)| u.to_string())
            .collect();
        names.sort();
        names
    };

    // The old machine reported the unit stopped; the view saw it.
    registry
        .put_state(&unit("moved.service"), &old, &state("inactive"), &lease)
        .await
        .unwrap();
    let (_, seen) = registry.states_at().await.unwrap();
    let guards = |revision: i64| {
        vec![
            None,
            Some(StatesSeen {
                unit: unit("moved.service"),
                revision,
            }),
            Some(StatesSeen {
                unit: unit("fresh.service"),
                revision,
            }),
        ]
    };
    // Its agent then commits an intent the view has not caught up with: the placement that
    // needs the view's revision is refused, the rest of the batch is written.
    registry
        .put_state(&unit("moved.service"), &old, &state("activating"), &lease)
        .await
        .unwrap();
    let written = registry
        .apply_guarded(&leader.fence, &groups, &guards(seen))
        .await
        .unwrap();
    assert_eq!(written, vec![true, false, true]);
    assert_eq!(scheduled().await, ["fresh.service"]);
    assert!(
        registry
            .reason(&unit("other.service"))
            .await
            .unwrap()
            .is_some()
    );

    // With the view caught up, it is written.
    let (_, caught_up) = registry.states_at().await.unwrap();
    let written = registry
        .apply_guarded(&leader.fence, &groups, &guards(caught_up))
        .await
        .unwrap();
    assert_eq!(written, vec![true, true, true]);
    assert_eq!(scheduled().await, ["fresh.service", "moved.service"]);

    // A full batch of plain writes and a guarded group: etcd takes a nested transaction only
    // within its limit less the level above, so they must go in two transactions.
    let mut full: Vec<Vec<EngineWrite>> = (0..flotte::registry::MAX_TXN_OPS - 1)
        .map(|i| {
            vec![EngineWrite::PutReason(
                unit(&format!("r{i}.service")),
                ReasonRecord { reason: "r".into() },
            )]
        })
        .collect();
    full.push(place("last.service"));
    let mut guards = vec![None; full.len() - 1];
    guards.push(Some(StatesSeen {
        unit: unit("last.service"),
        revision: caught_up,
    }));
    let written = registry
        .apply_guarded(&leader.fence, &full, &guards)
        .await
        .unwrap();
    assert!(written.iter().all(|w| *w));
    assert!(scheduled().await.contains(&"last.service".to_owned()));
}

#[tokio::test]
async fn unused_contents_are_collected_in_batches_except_one_written_again() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t4c/")).await.unwrap();
    let lease = registry.grant_lease(Duration::from_secs(30)).await.unwrap();
    let leader = within("campaign", SOON, registry.campaign(&lease, &machine('a')))
        .await
        .unwrap();
    // More than one transaction's worth.
    let n = flotte::registry::MAX_TXN_OPS + 12;
    let content = |i: usize| file(&format!("[Service]\nExecStart=/bin/sleep {i}\n"));
    for i in 0..n {
        registry
            .put_unit(
                &unit(&format!("u{i}.service")),
                &content(i),
                DesiredState::Loaded,
            )
            .await
            .unwrap();
    }
    let stored = registry.content_revisions().await.unwrap();
    assert_eq!(stored.len(), n);
    // A unit submitted again with content 7 after the listing: that content must stay.
    registry
        .put_unit(&unit("again.service"), &content(7), DesiredState::Loaded)
        .await
        .unwrap();
    let deleted = registry
        .delete_contents_if_unchanged(&leader.fence, &stored)
        .await
        .unwrap();
    assert_eq!(deleted, n - 1);
    let left = registry.content_revisions().await.unwrap();
    assert_eq!(
        left.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        vec![content(7).hash()]
    );
}

#[tokio::test]
async fn losing_a_lease_is_signalled_and_a_live_lease_can_be_found_again() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t5/")).await.unwrap();
    let lease = registry.grant_lease(Duration::from_secs(3)).await.unwrap();
    let record = MachineRecord {
        id: machine('c'),
        ip: "10.0.0.3".into(),
        metadata: Metadata::parse_list("region=eu").unwrap(),
        version: "test".into(),
        api: None,
        hostname: "host-c".into(),
        capacity: None,
    };
    registry.register_machine(&record, &lease).await.unwrap();
    let keep = registry.keep_alive(&lease, LossPolicy::AfterTtl);
    assert_eq!(registry.machines().await.unwrap(), vec![record]);

    let found = registry
        .existing_lease(lease.id(), lease.ttl())
        .await
        .unwrap();
    assert_eq!(found, Some(lease), "a kept lease is found again by ID");

    registry.revoke_lease(&lease).await.unwrap();
    within("lease loss signal", SOON, keep.lost()).await;
    assert!(
        registry.machines().await.unwrap().is_empty(),
        "keys under the lease are gone"
    );
    assert_eq!(
        registry
            .existing_lease(lease.id(), lease.ttl())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_schedule_change_for_one_machine_reaches_only_that_machines_watch() {
    use flotte::registry::ScheduleEntry;
    use flotte::unit::Target;
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t6/")).await.unwrap();
    let lease = registry.grant_lease(Duration::from_secs(5)).await.unwrap();
    let leadership = registry.campaign(&lease, &machine('e')).await.unwrap();
    let mut watch_b = registry.watch_schedule_of(&machine('b'));
    match within("list", SOON, watch_b.next()).await.unwrap() {
        Update::Reset(items) => assert!(items.is_empty()),
        other => panic!("expected a reset, got {other:?}"),
    }
    let entry = ScheduleEntry {
        hash: "0123456789abcdef0123456789abcdef01234567".parse().unwrap(),
        target: Target::Launched,
        global: false,
        start: 0,
    };
    // First a write for machine a, then one for b: b's watch must see b's write first.
    for (m, u) in [('a', "for-a.service"), ('b', "for-b.service")] {
        let write = vec![vec![EngineWrite::PutSchedule(
            machine(m),
            unit(u),
            entry.clone(),
        )]];
        registry.apply(&leadership.fence, &write).await.unwrap();
    }
    match within("b's change", SOON, watch_b.next()).await.unwrap() {
        Update::Changes(changes) => {
            let names: Vec<_> = changes.iter().map(|(u, _)| u.as_str()).collect();
            assert_eq!(
                names,
                ["for-b.service"],
                "machine b's watch saw only its own unit"
            );
        }
        other => panic!("expected changes, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_etcd_is_a_clear_error() {
    let settings = EtcdSettings {
        endpoints: vec!["http://127.0.0.1:1".into()],
        ..EtcdSettings::default()
    };
    let err = Registry::connect(&settings)
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(err.to_string().contains("http://127.0.0.1:1"), "{err}");
}

mod announce {
    use super::*;
    use flotte::discovery::{Announcement, announce, services};
    use flotte::registry::AnnouncerRecord;
    use tokio_util::sync::CancellationToken;

    fn announcement(registry: &Registry, key: &str, ttl: u64) -> Announcement {
        Announcement {
            key: registry.service_key(key).unwrap(),
            value: r#"{"host": "host-a", "port": 80}"#.into(),
            ttl: Duration::from_secs(ttl),
            announcer: AnnouncerRecord {
                key: key.into(),
                machine: Some(machine('a')),
                unit: Some(unit("apache-sidekick.service")),
                hostname: "host-a".into(),
            },
        }
    }

    /// Follows the keys under `prefix` until `done` holds for them.
    async fn await_keys(
        registry: &Registry,
        prefix: &str,
        what: &str,
        done: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
    ) {
        let mut watch = registry.watch_services(prefix);
        let mut keys = std::collections::BTreeMap::new();
        within(
            what,
            SOON,
            watch.until(&mut keys, |k| done(k).then_some(())),
        )
        .await
    }

    #[tokio::test]
    async fn an_announced_key_lives_under_a_lease_and_goes_at_once_on_shutdown() {
        let (etcd, _dir) = etcd().await;
        let registry = Registry::connect(&settings(&etcd, "/flotte/"))
            .await
            .unwrap();
        let what = announcement(&registry, "/services/website/apache", 60);
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let task = tokio::spawn({
            let (registry, what, shutdown) = (registry.clone(), what.clone(), shutdown.clone());
            async move {
                announce(
                    &registry,
                    &what,
                    || {
                        if let Some(t) = tx.take() {
                            let _ = t.send(());
                        }
                    },
                    shutdown,
                )
                .await
            }
        });
        within("the first announcement", SOON, rx).await.unwrap();
        let listed = services(&registry, "/services/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "/services/website/apache");
        assert_eq!(listed[0].value, what.value);
        let ttl = listed[0].ttl.expect("under a lease");
        assert!(
            ttl <= Duration::from_secs(60) && ttl >= Duration::from_secs(55),
            "{ttl:?}"
        );
        assert_eq!(listed[0].announcer.as_ref(), Some(&what.announcer));

        let start = std::time::Instant::now();
        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert!(
            services(&registry, "/services/").await.unwrap().is_empty(),
            "revoked on shutdown"
        );
        eprintln!("key gone {:?} after shutdown", start.elapsed());
    }

    #[tokio::test]
    async fn a_key_whose_announcer_died_expires_with_its_ttl() {
        let (etcd, _dir) = etcd().await;
        let registry = Registry::connect(&settings(&etcd, "/flotte/"))
            .await
            .unwrap();
        let what = announcement(&registry, "/services/dies", 2);
        let task = tokio::spawn({
            let (registry, what) = (registry.clone(), what.clone());
            async move { announce(&registry, &what, || {}, CancellationToken::new()).await }
        });
        await_keys(&registry, "/services/", "announced", |k| {
            k.contains_key("/services/dies")
        })
        .await;
        let start = std::time::Instant::now();
        task.abort(); // dies without revoking
        await_keys(&registry, "/services/", "expired", |k| k.is_empty()).await;
        let gone = start.elapsed();
        assert!(
            gone <= Duration::from_secs(4),
            "expired after {gone:?}, TTL 2 s"
        );
    }

    #[tokio::test]
    async fn a_key_is_announced_again_after_an_etcd_outage() {
        let (etcd, _dir) = etcd().await;
        let direct = Registry::connect(&settings(&etcd, "/flotte/"))
            .await
            .unwrap();
        let link = flotte::isolated::Link::start(etcd.client_addr())
            .await
            .unwrap();
        let mut through = settings(&etcd, "/flotte/");
        through.endpoints = vec![format!("http://{}", link.addr())];
        let registry = Registry::connect(&through).await.unwrap();
        let what = announcement(&registry, "/services/outage", 2);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (what, shutdown) = (what.clone(), shutdown.clone());
            async move {
                announce(
                    &registry,
                    &what,
                    || {
                        let _ = tx.send(());
                    },
                    shutdown,
                )
                .await
            }
        });
        within("first announcement", SOON, rx.recv()).await.unwrap();
        link.cut();
        await_keys(
            &direct,
            "/services/",
            "the key expired during the outage",
            |k| k.is_empty(),
        )
        .await;
        link.restore();
        within("announced again", SOON, rx.recv()).await.unwrap();
        await_keys(&direct, "/services/", "the key is back", |k| {
            k.contains_key("/services/outage")
        })
        .await;
        shutdown.cancel();
    }
}

#[tokio::test]
async fn a_conditional_unit_write_refuses_a_unit_that_changed_or_appeared() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t6/")).await.unwrap();
    let name = unit("web.service");
    let first = file("[Service]\nExecStart=/bin/sleep 1\n");
    let second = file("[Service]\nExecStart=/bin/sleep 2\n");
    registry
        .put_unit_at(&name, &first, DesiredState::Loaded, None)
        .await
        .unwrap();
    let again = registry
        .put_unit_at(&name, &first, DesiredState::Loaded, None)
        .await
        .unwrap_err();
    assert!(matches!(again, RegistryError::Conflict(_)), "{again}");

    let (_, revision) = registry.unit(&name).await.unwrap().unwrap();
    let hash = registry
        .put_unit_at(&name, &second, DesiredState::Launched, Some(revision))
        .await
        .unwrap();
    assert_eq!(registry.content(&hash).await.unwrap(), Some(second.clone()));
    let stale = registry
        .put_unit_at(&name, &first, DesiredState::Loaded, Some(revision))
        .await
        .unwrap_err();
    assert!(matches!(stale, RegistryError::Conflict(_)), "{stale}");
    let (record, _) = registry.unit(&name).await.unwrap().unwrap();
    assert_eq!(
        (record.hash, record.desired),
        (second.hash(), DesiredState::Launched)
    );
}

#[tokio::test]
async fn metadata_overrides_are_written_in_batches_and_read_back() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t7/")).await.unwrap();
    // More keys than one transaction may write.
    let overrides: std::collections::BTreeMap<_, _> = (0..300)
        .map(|i| {
            let value = if i % 2 == 0 {
                MetadataOverride::Set(format!("v{i}"))
            } else {
                MetadataOverride::Removed
            };
            ((machine('a'), format!("k{i:03}")), value)
        })
        .collect();
    registry.set_metadata_overrides(&overrides).await.unwrap();
    let read: std::collections::BTreeMap<_, _> = registry
        .metadata_overrides()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(read, overrides);
}

#[tokio::test]
async fn the_change_revision_follows_units_placements_reasons_and_states_only() {
    let (etcd, _dir) = etcd().await;
    let registry = Registry::connect(&settings(&etcd, "/t8/")).await.unwrap();
    let mut changes = registry.watch_changes();
    let listed = *within("the first listing", SOON, changes.wait_for(|r| *r > 0))
        .await
        .unwrap();

    registry
        .set_metadata_override(&machine('a'), "disk", &MetadataOverride::Set("ssd".into()))
        .await
        .unwrap();
    registry
        .put_unit(
            &unit("a.service"),
            &file("[Service]\nExecStart=/bin/true\n"),
            DesiredState::Inactive,
        )
        .await
        .unwrap();
    let (_, after_unit) = registry.units().await.unwrap();
    let seen = *within("the unit change", SOON, changes.wait_for(|r| *r > listed))
        .await
        .unwrap();
    assert_eq!(seen, after_unit, "the unit's revision, not the metadata's");
}

mod security {
    use super::*;
    use crate::support::Pki;

    #[tokio::test]
    async fn flotte_reaches_an_etcd_that_requires_client_certificates() {
        let dir = tempfile::Builder::new()
            .prefix("flotte-etcd-tls-")
            .tempdir()
            .unwrap();
        let pki = Pki::new();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (server_cert, server_key) = pki.issue(&["127.0.0.1", "localhost"]);
        let (client_cert, client_key) = pki.issue(&["flotted"]);
        let tls = flotte::isolated::EtcdTls {
            cert_file: write("server.pem", &server_cert),
            key_file: write("server.key", &server_key),
            ca_file: write("ca.pem", &pki.ca.pem()),
            client_cert_file: write("client.pem", &client_cert),
            client_key_file: write("client.key", &client_key),
        };
        let etcd = Etcd::start_with(&dir.path().join("etcd"), Some(&tls))
            .await
            .unwrap();
        assert!(etcd.client_url().starts_with("https://"));

        let mut with_certificate = settings(&etcd, "/tls/");
        with_certificate.ca_file = Some(tls.ca_file.clone());
        with_certificate.cert_file = Some(tls.client_cert_file.clone());
        with_certificate.key_file = Some(tls.client_key_file.clone());
        let registry = Registry::connect(&with_certificate).await.unwrap();
        registry
            .put_unit(
                &unit("tls.service"),
                &file("[Service]\nExecStart=/bin/true\n"),
                DesiredState::Loaded,
            )
            .await
            .unwrap();
        assert!(registry.unit(&unit("tls.service")).await.unwrap().is_some());

        let mut without_certificate = with_certificate.clone();
        without_certificate.cert_file = None;
        without_certificate.key_file = None;
        let err = Registry::connect(&without_certificate)
            .await
            .err()
            .expect("etcd demands a client certificate");
        assert!(
            err.to_string()
                .starts_with(&format!("etcd at {} is unreachable", etcd.client_url())),
            "{err}"
        );
    }

    #[tokio::test]
    async fn flotte_authenticates_to_etcd_with_a_username_and_password() {
        let (etcd, _dir) = etcd().await;
        let mut admin = etcd_client::Client::connect([etcd.client_url()], None)
            .await
            .unwrap();
        admin.user_add("root", "s3cret", None).await.unwrap();
        admin.user_grant_role("root", "root").await.unwrap();
        admin.auth_enable().await.unwrap();

        let mut with_password = settings(&etcd, "/auth/");
        with_password.username = Some("root".into());
        with_password.password = Some("s3cret".into());
        let registry = Registry::connect(&with_password).await.unwrap();
        registry
            .put_unit(
                &unit("auth.service"),
                &file("[Service]\nExecStart=/bin/true\n"),
                DesiredState::Loaded,
            )
            .await
            .unwrap();

        let err = Registry::connect(&settings(&etcd, "/auth/"))
            .await
            .err()
            .expect("etcd demands credentials");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "etcd at {} refused to let flotte read /auth/",
                etcd.client_url()
            )),
            "{message}"
        );
        let mut wrong = with_password.clone();
        wrong.password = Some("guess".into());
        let err = Registry::connect(&wrong)
            .await
            .err()
            .expect("a wrong password is refused");
        assert!(
            err.to_string().starts_with(&format!(
                "etcd at {} refused to let flotte read /auth/: ",
                etcd.client_url()
            )),
            "{err}"
        );
        assert!(err.to_string().contains("authentication failed"), "{err}");
        eprintln!("{message}\n{err}");
    }
}
