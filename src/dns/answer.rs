//! What flotted answers for one question, as a pure function of the watched view: the zone
//! `flotte.` and its names.
//!
//! | name | answers |
//! |---|---|
//! | `NAME.service.flotte` | A / AAAA: the addresses of the healthy instances of service `NAME`; SRV as below |
//! | `TAG.NAME.service.flotte` | the same, of the healthy instances tagged `TAG` |
//! | `_NAME._tcp.service.flotte` | SRV: one per healthy instance, its port and target `HOSTNAME.node.flotte` (with that name's addresses as additional records) |
//! | `HOSTNAME.node.flotte` | A / AAAA: the address of the machine with that hostname (or that machine ID) |
//! | `flotte` | SOA |
//!
//! A service, tag or machine that is not there is NXDOMAIN, with the zone's SOA (RFC 2308)
//! whose minimum is the TTL; a known name without records of the asked type (a service whose
//! instances all fail their check, AAAA of an IPv4-only service) is an empty answer with the
//! SOA. A service counts as there while any instance of it is registered, healthy or not, so
//! that a failing check empties the answer rather than denying the name. Names outside the
//! zone are refused: flotted is no recursive resolver.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::catalog;
use crate::machine::MachineId;
use crate::registry::{InstanceRecord, MachineRecord};

/// The zone flotted is authoritative for.
pub static ZONE: LazyLock<Name> = LazyLock::new(|| name("flotte."));
static SOA_MNAME: LazyLock<Name> = LazyLock::new(|| name("ns.flotte."));
static SOA_RNAME: LazyLock<Name> = LazyLock::new(|| name("hostmaster.flotte."));

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid constant name")
}

/// What the answers are made of: the instances and the machines, as watched.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub catalog: Arc<catalog::View>,
    pub machines: BTreeMap<MachineId, MachineRecord>,
    /// Both watches delivered their first listing: until then every answer is SERVFAIL
    /// (try again), never a denial.
    pub ready: bool,
}

/// The answer to one question, before it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The zone's SOA in the authority section: with NXDOMAIN and empty answers.
    pub soa: Option<Record>,
    pub additionals: Vec<Record>,
}

impl Answer {
    fn code(code: ResponseCode) -> Answer {
        Answer {
            code,
            answers: Vec::new(),
            soa: None,
            additionals: Vec::new(),
        }
    }
}

/// What a name in the zone means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject<'a> {
    Apex,
    /// `service.flotte` or `node.flotte`: names with nothing of their own below the apex.
    Empty,
    /// `NAME.service.flotte` or `TAG.NAME.service.flotte`.
    Service {
        service: &'a str,
        tag: Option<&'a str>,
    },
    /// `_NAME._tcp.service.flotte`.
    ServiceSrv {
        service: &'a str,
    },
    /// `HOSTNAME.node.flotte` (a hostname may have dots of its own).
    Node {
        host: String,
    },
    Unknown,
}

/// Reads a name's labels below the zone (already lowercase), from the zone down.
fn subject<'a>(labels: &'a [String]) -> Subject<'a> {
    let down: Vec<&str> = labels.iter().rev().map(String::as_str).collect();
    match down.as_slice() {
        [] => Subject::Apex,
        ["service"] | ["node"] => Subject::Empty,
        ["service", service] => Subject::Service { service, tag: None },
        ["service", "_tcp", service] => match service.strip_prefix('_') {
            Some(service) => Subject::ServiceSrv { service },
            None => Subject::Unknown,
        },
        ["service", service, tag] if !tag.starts_with('_') => Subject::Service {
            service,
            tag: Some(tag),
        },
        ["node", ..] => Subject::Node {
            host: labels[..labels.len() - 1].join("."),
        },
        _ => Subject::Unknown,
    }
}

/// The answer to `qname`/`qtype`/`qclass` from `view`, each record with `ttl` seconds.
pub fn answer(view: &View, qname: &Name, qtype: RecordType, qclass: DNSClass, ttl: u32) -> Answer {
    let qname = qname.to_lowercase();
    if !ZONE.zone_of(&qname) {
        return Answer::code(ResponseCode::Refused);
    }
    if qclass != DNSClass::IN && qclass != DNSClass::ANY {
        return Answer::code(ResponseCode::Refused);
    }
    if !view.ready {
        return Answer::code(ResponseCode::ServFail);
    }
    let below = qname.num_labels() - ZONE.num_labels();
    let labels: Vec<String> = qname
        .iter()
        .take(usize::from(below))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let soa = soa_record(view, ttl);
    let found = |answers: Vec<Record>, additionals: Vec<Record>| Answer {
        code: ResponseCode::NoError,
        soa: answers.is_empty().then(|| soa.clone()),
        answers,
        additionals,
    };
    let nxdomain = Answer {
        code: ResponseCode::NXDomain,
        answers: Vec::new(),
        soa: Some(soa.clone()),
        additionals: Vec::new(),
    };
    match subject(&labels) {
        Subject::Apex => match qtype {
            RecordType::SOA | RecordType::ANY => Answer {
                code: ResponseCode::NoError,
                answers: vec![soa.clone()],
                soa: None,
                additionals: Vec::new(),
            },
            _ => found(Vec::new(), Vec::new()),
        },
        Subject::Empty => found(Vec::new(), Vec::new()),
        Subject::Unknown => nxdomain,
        Subject::Service { service, tag } => {
            let Some(instances) = instances(view, service, tag) else {
                return nxdomain;
            };
            match qtype {
                RecordType::SRV => {
                    let (answers, additionals) = srv(&qname, &instances, ttl);
                    found(answers, additionals)
                }
                _ => found(
                    addresses(
                        &qname,
                        instances.iter().map(|i| i.address.as_str()),
                        qtype,
                        ttl,
                    ),
                    Vec::new(),
                ),
            }
        }
        Subject::ServiceSrv { service } => {
            let Some(instances) = instances(view, service, None) else {
                return nxdomain;
            };
            match qtype {
                RecordType::SRV | RecordType::ANY => {
                    let (answers, additionals) = srv(&qname, &instances, ttl);
                    found(answers, additionals)
                }
                _ => found(Vec::new(), Vec::new()),
            }
        }
        Subject::Node { host } => {
            let machines = nodes(view, &host);
            if machines.is_empty() {
                return nxdomain;
            }
            found(
                addresses(&qname, machines.iter().map(|m| m.ip.as_str()), qtype, ttl),
                Vec::new(),
            )
        }
    }
}

/// The healthy instances of `service` (tagged `tag`, if given), in key order; `None` when no
/// instance of it (with that tag) is registered at all.
fn instances<'a>(
    view: &'a View,
    service: &str,
    tag: Option<&str>,
) -> Option<Vec<&'a InstanceRecord>> {
    let all: Vec<&InstanceRecord> = view
        .catalog
        .instances
        .values()
        .filter(|i| i.service.as_str() == service)
        .filter(|i| tag.is_none_or(|t| i.tags.iter().any(|x| x.as_str() == t)))
        .collect();
    if all.is_empty() {
        return None;
    }
    Some(all.into_iter().filter(|i| i.health.is_healthy()).collect())
}

/// The machines a node name means: those with that hostname (case aside), or that ID.
fn nodes<'a>(view: &'a View, host: &str) -> Vec<&'a MachineRecord> {
    view.machines
        .values()
        .filter(|m| m.hostname.eq_ignore_ascii_case(host) || m.id.as_str() == host)
        .collect()
}

/// A and AAAA records of the distinct addresses (`qtype` A, AAAA or ANY), in order; an
/// address that does not parse is left out.
fn addresses<'a>(
    owner: &Name,
    addresses: impl Iterator<Item = &'a str>,
    qtype: RecordType,
    ttl: u32,
) -> Vec<Record> {
    let mut seen = BTreeSet::new();
    addresses
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .filter(|ip| seen.insert(*ip))
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(owner.clone(), ttl, rdata))
        .collect()
}

/// One SRV record per distinct (machine, port), with target `HOSTNAME.node.flotte` (the
/// machine ID where the hostname is not a usable name), and the targets' addresses.
fn srv(owner: &Name, instances: &[&InstanceRecord], ttl: u32) -> (Vec<Record>, Vec<Record>) {
    let mut seen = BTreeSet::new();
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for i in instances {
        let Some(target) = node_name(&i.hostname).or_else(|| node_name(i.machine.as_str())) else {
            continue;
        };
        if !seen.insert((target.clone(), i.port)) {
            continue;
        }
        answers.push(Record::from_rdata(
            owner.clone(),
            ttl,
            RData::SRV(SRV::new(1, 1, i.port, target.clone())),
        ));
        // The instance's own address: the one it is reached at, whatever the machine
        // record says.
        for r in addresses(
            &target,
            std::iter::once(i.address.as_str()),
            RecordType::ANY,
            ttl,
        ) {
            if !additionals.contains(&r) {
                additionals.push(r);
            }
        }
    }
    (answers, additionals)
}

/// `HOST.node.flotte.`, if `host` makes a valid name.
fn node_name(host: &str) -> Option<Name> {
    if host.is_empty() || host.ends_with('.') {
        return None;
    }
    Name::from_ascii(format!("{}.node.flotte.", host.to_ascii_lowercase())).ok()
}

/// The zone's SOA: its serial the instances' revision (the low 32 bits), its minimum (the
/// negative-caching TTL) the answers' TTL.
fn soa_record(view: &View, ttl: u32) -> Record {
    Record::from_rdata(
        ZONE.clone(),
        ttl,
        RData::SOA(SOA::new(
            SOA_MNAME.clone(),
            SOA_RNAME.clone(),
            view.catalog.revision as u32,
            3600,
            600,
            86_400,
            ttl,
        )),
    )
}

#[cfg(test)]
mod tests;
