//! Declared services (issue "A fixed endpoint for services that move"): units with a
//! `[X-Flotte-Service]` section on a 3-host cluster, their instances registered by the agents
//! with health from real HTTP checks, removed when the unit stops or its machine dies, and the
//! catalog's blocking query answering when an instance changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotte::registry::{Health, InstanceId, InstanceRecord};
use flotte::unit::DesiredState::{Inactive, Launched, Loaded};
use http_body_util::BodyExt;

use crate::support::*;

const FAST: &[(&str, &str)] = &[("agent_ttl", "3s"), ("engine_lease_ttl", "2s")];
const HOSTS: &[(&str, &str)] = &[("host-1", ""), ("host-2", ""), ("host-3", "")];
const DEADLINE: Duration = Duration::from_secs(30);
/// The services' `CheckInterval`.
const INTERVAL: Duration = Duration::from_millis(300);

/// A web server per instance on port 900%i of its machine's address, healthy while
/// `/run/svc-%i/health` exists (python's http.server answers 404 once it is gone).
const SVC: &str = r#"[Unit]
Description=Service instance %i

[Service]
EnvironmentFile=/run/flotte/machine.env
ExecStartPre=/bin/sh -c 'mkdir -p /run/svc-%i && echo ok > /run/svc-%i/health'
ExecStart=/bin/sh -c 'exec /usr/bin/python3 -m http.server --bind "$$FLOTTE_HOST_IP" --directory /run/svc-%i 900%i'

[X-Fleet]
Conflicts=svc@*.service

[X-Flotte-Service]
Name=svc
Port=900%i
Tags=v2 i%i
Check=http /health
CheckInterval=300ms
"#;

type Instances = BTreeMap<InstanceId, InstanceRecord>;

fn of_unit<'a>(instances: &'a Instances, unit: &str) -> Option<&'a InstanceRecord> {
    instances.values().find(|r| r.unit.as_str() == unit)
}

/// Waits until the instances satisfy `done`.
async fn await_instances<T>(
    t: &TestCluster,
    what: &str,
    done: impl FnMut(&Instances) -> Option<T>,
) -> T {
    await_map(t.registry.watch_instances(), DEADLINE, what, done).await
}

/// `GET path` over a flotted's API socket: the status and the body as JSON.
async fn get(socket: &Path, path: &str) -> (u16, serde_json::Value) {
    let response = http_get(
        tokio::net::UnixStream::connect(socket).await.unwrap(),
        "flotte",
        path,
    )
    .await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// Follows `/flotte/v1/catalog/NAME` with blocking queries, as a load balancer's config
/// generator would, until `done` holds for an answer.
async fn catalog_until(
    socket: &Path,
    name: &str,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let path = flotte::wire::catalog_path(name);
    let follow = async {
        let (mut status, mut answer) = get(socket, &path).await;
        loop {
            assert_eq!(status, 200, "{answer}");
            if done(&answer) {
                return answer;
            }
            let index = answer["index"].as_i64().unwrap();
            let query = flotte::wire::blocking_query(&path, index, Duration::from_secs(10));
            (status, answer) = get(socket, &query).await;
        }
    };
    match tokio::time::timeout(DEADLINE, follow).await {
        Ok(answer) => answer,
        Err(_) => {
            panic!("the catalog of {name} did not reach the state awaited within {DEADLINE:?}")
        }
    }
}

/// `/run/svc-N/health` of the host running `record`, from outside its namespaces.
fn health_file(t: &TestCluster, record: &InstanceRecord, n: u32) -> PathBuf {
    let host = t
        .cluster
        .index_of(&record.machine)
        .expect("a machine of the cluster");
    t.cluster
        .host(host)
        .record()
        .path(&format!("/run/svc-{n}/health"))
}

#[tokio::test]
async fn declared_services_are_registered_with_health_and_follow_their_units() {
    let mut t = cluster("services", HOSTS, FAST).await;
    submit(&t.registry, "svc@.service", SVC, Inactive).await;
    for n in 1..=3 {
        submit(&t.registry, &format!("svc@{n}.service"), SVC, Launched).await;
    }

    // Three instances on three machines, each passing its check.
    let started = Instant::now();
    let instances = await_instances(&t, "three passing instances of svc", |m| {
        (m.len() == 3 && m.values().all(|r| r.health == Health::Passing)).then(|| m.clone())
    })
    .await;
    println!(
        "three instances passing {:?} after submitting",
        started.elapsed()
    );
    let machines: std::collections::BTreeSet<_> = instances.values().map(|r| &r.machine).collect();
    assert_eq!(machines.len(), 3, "{instances:#?}");
    for n in 1..=3u16 {
        let r = of_unit(&instances, &format!("svc@{n}.service")).expect("an instance per unit");
        assert_eq!(r.port, 9000 + n);
        assert_eq!(r.service.as_str(), "svc");
        let tags: Vec<String> = r.tags.iter().map(|t| t.to_string()).collect();
        assert_eq!(tags, vec!["v2".to_owned(), format!("i{n}")]);
        let i = t.cluster.index_of(&r.machine).unwrap();
        assert_eq!(r.address, t.cluster.host_ip(i).to_string());
        assert_eq!(r.hostname, t.cluster.host(i).name());
    }

    // The catalog as host-1's flotted follows it.
    let socket = t.cluster.socket(0).to_owned();
    catalog_until(&socket, "svc", |svc| {
        svc["instances"].as_array().unwrap().len() == 3
    })
    .await;
    let (status, catalog) = get(&socket, flotte::wire::CATALOG).await;
    assert_eq!(status, 200, "{catalog}");
    assert_eq!(catalog["services"][0]["name"], "svc", "{catalog}");
    assert_eq!(catalog["services"][0]["instances"], 3, "{catalog}");
    assert_eq!(catalog["services"][0]["healthy"], 3, "{catalog}");
    let svc = catalog_until(&socket, "svc", |svc| {
        let listed = svc["instances"].as_array().unwrap();
        listed.len() == 3 && listed.iter().all(|i| i["health"] == "passing")
    })
    .await;
    let index = svc["index"].as_i64().unwrap();
    let (status, bad) = get(&socket, &flotte::wire::catalog_path("Svc")).await;
    assert_eq!(status, 400, "{bad}");

    // A blocking query waits for the next change of svc's instances.
    let blocking = {
        let socket = socket.clone();
        let path = flotte::wire::blocking_query(
            &flotte::wire::catalog_path("svc"),
            index,
            Duration::from_secs(30),
        );
        tokio::spawn(async move {
            let answer = get(&socket, &path).await;
            (answer, Instant::now())
        })
    };

    // svc@1 fails its check: critical after two intervals, and back after one success.
    let one = of_unit(&instances, "svc@1.service").unwrap().clone();
    let file = health_file(&t, &one, 1);
    std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let failed = Instant::now();
    let seen_critical = await_instances(&t, "svc@1 critical", |m| {
        of_unit(m, "svc@1.service")
            .is_some_and(|r| r.health == Health::Critical)
            .then(Instant::now)
    })
    .await;
    let to_critical = seen_critical - failed;
    println!("critical {to_critical:?} after its check began failing (interval {INTERVAL:?})");
    assert!(
        to_critical < INTERVAL * 2 + Duration::from_secs(2),
        "{to_critical:?}"
    );

    let ((status, answer), answered) = within("the blocking query's answer", DEADLINE, blocking)
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["index"].as_i64().unwrap() > index, "{answer}");
    let critical: Vec<&serde_json::Value> = answer["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["health"] == "critical")
        .collect();
    assert_eq!(critical.len(), 1, "{answer}");
    assert_eq!(critical[0]["unit"], "svc@1.service", "{answer}");
    let delay = answered.saturating_duration_since(seen_critical);
    println!("blocking query answered {delay:?} after the change was in etcd");
    assert!(delay < Duration::from_secs(1), "{delay:?}");

    // The unit kept running: a check never restarts or stops it.
    std::fs::write(&file, "ok\n").unwrap();
    await_instances(&t, "svc@1 passing again", |m| {
        of_unit(m, "svc@1.service")
            .is_some_and(|r| r.health == Health::Passing)
            .then_some(())
    })
    .await;

    // A stopped unit's instance goes at once.
    set_desired(&t.registry, "svc@2.service", Loaded).await;
    let stopping = Instant::now();
    await_instances(&t, "svc@2's instance removed", |m| {
        of_unit(m, "svc@2.service").is_none().then_some(())
    })
    .await;
    let removed = stopping.elapsed();
    println!("svc@2's instance removed {removed:?} after it was told to stop");
    assert!(removed < Duration::from_secs(3), "{removed:?}");

    // A dead machine's instances vanish with its lease.
    let three = of_unit(&instances, "svc@3.service").unwrap().clone();
    let host = t.cluster.index_of(&three.machine).unwrap();
    t.cluster.kill_host(host).unwrap();
    let killed = Instant::now();
    await_instances(&t, "the dead machine's instance gone", |m| {
        m.values().all(|r| r.machine != three.machine).then_some(())
    })
    .await;
    println!(
        "the killed machine's instance gone after {:?} (agent_ttl 3s)",
        killed.elapsed()
    );
    assert!(killed.elapsed() < Duration::from_secs(3) + Duration::from_secs(2));
}
