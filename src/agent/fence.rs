//! Self-fencing: an agent cut off from etcd stops its non-global units before etcd can expire
//! its lease (after which the engine may start them elsewhere), but not when etcd is down for
//! every machine (then no engine can move anything, and stopping would only hurt).
//!
//! The rule, with its limits, is in ARCHITECTURE.md ("Fencing"). In short: the keep-alive
//! reports when the last renewal etcd answered was sent (`Contact`); once no renewal has been
//! answered for `fence_after(ttl)` the guard tries one renewal itself and asks every other
//! machine's flotted (`GET /flotte/v1/etcd-contact`) whether it reaches etcd, and `decide`s.
//! The guard is a task of its own and the agent races its verdict against any pass in
//! progress, so a fence never waits behind a D-Bus call or an etcd request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Agent;
use crate::machine::MachineId;
use crate::registry::{Contact, Lease, MachineRecord, Registry, RegistryError};
use crate::systemd::UnitManager;
use crate::unit::UnitName;
use crate::wire;

/// What an agent that cannot reach etcd does with its non-global units (`fence_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FencePolicy {
    /// Stop them before the lease can expire, unless every other machine answers that it
    /// cannot reach etcd either.
    Peers,
    /// Stop them before the lease can expire.
    Always,
    /// Keep them running; once etcd is back, units placed elsewhere meanwhile stop.
    Never,
}

impl std::str::FromStr for FencePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "peers" => Ok(FencePolicy::Peers),
            "always" => Ok(FencePolicy::Always),
            "never" => Ok(FencePolicy::Never),
            _ => Err("not one of peers, always, never".into()),
        }
    }
}

impl std::fmt::Display for FencePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FencePolicy::Peers => "peers",
            FencePolicy::Always => "always",
            FencePolicy::Never => "never",
        })
    }
}

/// How long after the last answered renewal was sent the agent fences: the TTL less a margin
/// of max(2 s, TTL/5), and never less than half the TTL. The margin covers stopping the units,
/// asking the peers, and the drift between this machine's clock and etcd's leader's (both
/// measure the TTL; etcd counts it from when it received the renewal, after it was sent).
pub fn fence_after(ttl: Duration) -> Duration {
    let margin = (ttl / 5).max(Duration::from_secs(2)).min(ttl / 2);
    ttl - margin
}

/// How often the agent renews its lease: at least four renewals fit before it would fence,
/// so one lost or late answer never fences.
pub fn renew_interval(ttl: Duration) -> Duration {
    (fence_after(ttl) / 4)
        .min(ttl / 3)
        .max(Duration::from_millis(200))
}

/// What another machine's flotted said when asked whether it reaches etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAnswer {
    /// Its latest renewal was answered: etcd works for it, so its engine may move units.
    Reaches,
    /// It cannot reach etcd either.
    CutOff,
    /// Its machine record names no API address to ask (no `listen_tcp`).
    NoAddress,
    /// No usable answer in time, and why.
    NoAnswer(String),
}

/// What the guard concluded, and why (logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Fence(String),
    Keep(String),
}

/// The fencing decision for an agent whose renewals have gone unanswered for `fence_after`,
/// given the other machines' answers. Under `Peers`: fence if any machine reaches etcd (its
/// engine may start this machine's units); keep running if every other machine answered that
/// it cannot reach etcd either (no engine can move anything), or if there is no other machine;
/// otherwise (a machine did not answer or cannot be asked) there is no evidence that etcd is
/// down for everyone, and the agent fences.
pub fn decide(policy: FencePolicy, answers: &[(MachineId, PeerAnswer)]) -> Verdict {
    match policy {
        FencePolicy::Never => return Verdict::Keep("fence_policy is never".into()),
        FencePolicy::Always => return Verdict::Fence("fence_policy is always".into()),
        FencePolicy::Peers => {}
    }
    if answers.is_empty() {
        return Verdict::Keep(
            "no other machine is registered: no engine could start this machine's units elsewhere"
                .into(),
        );
    }
    if let Some((m, _)) = answers.iter().find(|(_, a)| *a == PeerAnswer::Reaches) {
        return Verdict::Fence(format!(
            "machine {m} reaches etcd: the engine may start this machine's units elsewhere"
        ));
    }
    let unsure: Vec<String> = answers
        .iter()
        .filter_map(|(m, a)| match a {
            PeerAnswer::Reaches | PeerAnswer::CutOff => None,
            PeerAnswer::NoAddress => Some(format!("{m}: publishes no API address")),
            PeerAnswer::NoAnswer(why) => Some(format!("{m}: {why}")),
        })
        .collect();
    if unsure.is_empty() {
        Verdict::Keep(format!(
            "none of the {} other machines reaches etcd either: etcd is down for everyone",
            answers.len()
        ))
    } else {
        Verdict::Fence(format!(
            "no evidence that etcd is down for everyone ({})",
            unsure.join("; ")
        ))
    }
}

/// The other machines and their API addresses, as last seen in etcd.
pub(super) type Peers = BTreeMap<MachineId, Option<String>>;

/// Follows the machine records (other than `me`) for the guard: while etcd is unreachable,
/// the last list seen stays.
pub(super) fn follow_peers(registry: &Registry, me: &MachineId) -> watch::Receiver<Peers> {
    let (tx, rx) = watch::channel(Peers::new());
    let mut updates = registry.watch_machines().spawn("machines");
    let me = me.clone();
    tokio::spawn(async move {
        let mut machines = BTreeMap::new();
        while let Some(update) = updates.recv().await {
            update.apply_to(&mut machines);
            let peers: Peers = machines
                .iter()
                .filter(|(id, _)| **id != me)
                .map(|(id, r): (&MachineId, &MachineRecord)| (id.clone(), r.api.clone()))
                .collect();
            if tx.send(peers).is_err() {
                return;
            }
        }
    });
    rx
}

/// Asks one flotted's API whether it reaches etcd.
pub async fn ask_peer(addr: &str, deadline: Duration) -> PeerAnswer {
    match tokio::time::timeout(deadline, ask(addr)).await {
        Err(_) => PeerAnswer::NoAnswer(format!("no answer from {addr} within {deadline:?}")),
        Ok(Err(why)) => PeerAnswer::NoAnswer(format!("{addr}: {why}")),
        Ok(Ok(c)) if c.reaches_etcd => PeerAnswer::Reaches,
        Ok(Ok(_)) => PeerAnswer::CutOff,
    }
}

async fn ask(addr: &str) -> Result<wire::EtcdContact, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(wire::ETCD_CONTACT)
        .header(hyper::header::HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    connection.abort();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))
}

/// The guard of one registration: cancels its token when the agent must fence. Dropping it
/// stops the guard.
pub(super) struct Guard {
    fenced: CancellationToken,
    /// True while the guard's latest verdict is to keep the units (etcd down for everyone);
    /// false again once etcd answers a renewal.
    kept: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Guard {
    pub(super) fn spawn(
        registry: Registry,
        lease: Lease,
        contact: Arc<watch::Sender<Contact>>,
        peers: watch::Receiver<Peers>,
        policy: FencePolicy,
    ) -> Guard {
        let fenced = CancellationToken::new();
        let kept = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(guard(
            registry,
            lease,
            contact,
            peers,
            policy,
            fenced.clone(),
            kept.clone(),
        ));
        Guard { fenced, kept, task }
    }

    pub(super) fn token(&self) -> CancellationToken {
        self.fenced.clone()
    }

    /// Whether the units are kept through a silence of etcd that every machine shares: a
    /// lease lost then was expired by an etcd back from an outage (a single etcd thawed
    /// expires every lease at once), not because this machine alone was cut off.
    pub(super) fn kept(&self) -> bool {
        self.kept.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn guard(
    registry: Registry,
    lease: Lease,
    contact: Arc<watch::Sender<Contact>>,
    peers: watch::Receiver<Peers>,
    policy: FencePolicy,
    fenced: CancellationToken,
    kept_flag: Arc<AtomicBool>,
) {
    if policy == FencePolicy::Never {
        return;
    }
    let after = fence_after(lease.ttl());
    let ask_within = renew_interval(lease.ttl()).min(Duration::from_secs(1));
    let mut seen = contact.subscribe();
    let mut kept: Option<String> = None;
    loop {
        let renewed = seen.borrow_and_update().renewed;
        let deadline = renewed + after;
        if Instant::now() < deadline {
            kept = None;
            kept_flag.store(false, Ordering::Release);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                changed = seen.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let peers_now = peers.borrow().clone();
        let asked = join_all(peers_now.iter().map(|(id, api)| async move {
            let answer = match api {
                None => PeerAnswer::NoAddress,
                Some(addr) => ask_peer(addr, ask_within).await,
            };
            (id.clone(), answer)
        }));
        let (own, answers) = tokio::join!(renew_within(&registry, &lease, ask_within), asked);
        match own {
            Ok(sent) => {
                // Not cut off after all: the keep-alive's own stream was only slow to recover.
                contact.send_modify(|c| c.renewed_at(sent));
                kept = None;
                kept_flag.store(false, Ordering::Release);
                continue;
            }
            // The keep-alive reports it, and the agent stops as for any lost lease.
            Err(RegistryError::LeaseGone(_)) => return,
            Err(_) => {}
        }
        let silent = renewed.elapsed();
        match decide(policy, &answers) {
            Verdict::Fence(why) => {
                tracing::warn!(silent = ?silent, lease_ttl = ?lease.ttl(), reason = %why, "cut off from etcd: fencing (stopping this machine's non-global units)");
                fenced.cancel();
                return;
            }
            Verdict::Keep(why) => {
                kept_flag.store(true, Ordering::Release);
                if kept.as_ref() != Some(&why) {
                    tracing::warn!(silent = ?silent, reason = %why, "etcd unreachable; units keep running");
                    kept = Some(why);
                }
                tokio::select! {
                    _ = tokio::time::sleep(ask_within.max(Duration::from_millis(200))) => {}
                    changed = seen.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

/// Renews `lease` once, trying again until `within` has passed: a failure that comes fast
/// (a member that is down, or has no leader) has moved the etcd channel to the next endpoint,
/// which may well answer while a peer's answer is awaited.
async fn renew_within(
    registry: &Registry,
    lease: &Lease,
    within: Duration,
) -> Result<Instant, RegistryError> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match registry.renew_once(lease, left).await {
            Ok(sent) => return Ok(sent),
            Err(e @ RegistryError::LeaseGone(_)) => return Err(e),
            Err(e)
                if deadline.saturating_duration_since(Instant::now())
                    < Duration::from_millis(50) =>
            {
                return Err(e);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

impl<M: UnitManager> Agent<M> {
    /// Fences: stops every unit this agent manages but the global ones at once, whatever its
    /// view of them says (a pass cut short may have sent a start it did not record; systemd
    /// runs the calls of one connection in order, so the stop comes after it), then re-reads
    /// the units directory and systemd, and converges on the global units alone.
    pub(super) async fn fence_stop(&mut self) {
        let names: Vec<UnitName> = self
            .managed()
            .into_iter()
            .filter(|n| self.desired.get(n).is_none_or(|e| !e.global))
            .collect();
        let started = std::time::Instant::now();
        let results = join_all(names.iter().map(|n| self.systemd.stop(n))).await;
        for (name, result) in names.iter().zip(results) {
            if let Err(e) = result {
                tracing::debug!(unit = %name, error = %e, "fencing: stop refused");
            }
        }
        tracing::warn!(units = names.len(), took = ?started.elapsed(), "fenced: stop jobs queued");
        match self.units.scan() {
            Ok(on_disk) => {
                for (name, o) in self.observed.iter_mut() {
                    o.file = on_disk.get(name).copied();
                }
                for (name, hash) in on_disk {
                    self.observed.entry(name).or_default().file = Some(hash);
                }
            }
            Err(e) => tracing::warn!(error = %e, "fencing: cannot read the units directory"),
        }
        self.refresh(names).await;
        self.self_fence().await;
    }

    /// Resolves once etcd answers a renewal sent after `since`.
    pub(super) async fn contact_back(&self, since: Instant) {
        let mut seen = self.config.contact.subscribe();
        let _ = seen.wait_for(|c| !c.failing && c.renewed >= since).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_fences_well_before_its_ttl_and_renews_several_times_before() {
        for (ttl, fence, renew) in [
            (2, 1000, 250),
            (3, 1500, 375),
            (4, 2000, 500),
            (10, 8000, 2000),
            (30, 24000, 6000),
            (60, 48000, 12000),
        ] {
            let ttl = Duration::from_secs(ttl);
            assert_eq!(fence_after(ttl), Duration::from_millis(fence), "{ttl:?}");
            assert_eq!(renew_interval(ttl), Duration::from_millis(renew), "{ttl:?}");
            assert!(ttl - fence_after(ttl) >= (ttl / 5).min(ttl / 2));
            assert!(renew_interval(ttl) * 4 <= fence_after(ttl));
        }
    }

    fn id(n: u8) -> MachineId {
        MachineId::new(&format!("{n:032x}")).unwrap()
    }

    #[test]
    fn the_verdict_follows_the_policy_and_the_peers_answers() {
        use FencePolicy::*;
        use PeerAnswer::*;
        let no = || NoAnswer("timed out".into());
        let fence = true;
        let keep = false;
        for (policy, answers, fences, why) in [
            (Peers, vec![], keep, "no other machine"),
            (Peers, vec![Reaches], fence, "reaches etcd"),
            (Peers, vec![CutOff, Reaches], fence, "reaches etcd"),
            (Peers, vec![no(), Reaches], fence, "reaches etcd"),
            (Peers, vec![CutOff], keep, "down for everyone"),
            (Peers, vec![CutOff, CutOff], keep, "none of the 2"),
            (Peers, vec![CutOff, no()], fence, "no evidence"),
            (Peers, vec![no(), no()], fence, "timed out"),
            (
                Peers,
                vec![CutOff, NoAddress],
                fence,
                "publishes no API address",
            ),
            (Always, vec![], fence, "always"),
            (Always, vec![CutOff], fence, "always"),
            (Never, vec![Reaches], keep, "never"),
            (Never, vec![], keep, "never"),
        ] {
            let answers: Vec<(MachineId, PeerAnswer)> = answers
                .into_iter()
                .enumerate()
                .map(|(i, a)| (id(i as u8 + 1), a))
                .collect();
            let verdict = decide(policy, &answers);
            let (fenced, text) = match &verdict {
                Verdict::Fence(t) => (true, t),
                Verdict::Keep(t) => (false, t),
            };
            assert_eq!(fenced, fences, "{policy} {answers:?}: {verdict:?}");
            assert!(text.contains(why), "{policy} {answers:?}: {text}");
        }
    }

    #[test]
    fn policies_parse_and_print() {
        for p in [FencePolicy::Peers, FencePolicy::Always, FencePolicy::Never] {
            assert_eq!(p.to_string().parse::<FencePolicy>(), Ok(p));
        }
        assert!("Peers".parse::<FencePolicy>().is_err());
    }
}
