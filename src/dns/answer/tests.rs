use super::*;
use crate::registry::Health;
use crate::resources::Resources;
use crate::unit::{ServiceName, UnitName};

fn machine(c: char) -> MachineId {
    MachineId::new(&c.to_string().repeat(32)).unwrap()
}

fn instance(
    service: &str,
    m: char,
    address: &str,
    port: u16,
    tags: &[&str],
    health: Health,
) -> InstanceRecord {
    InstanceRecord {
        service: ServiceName::new(service).unwrap(),
        machine: machine(m),
        hostname: format!("host-{m}"),
        address: address.into(),
        port,
        tags: tags.iter().map(|t| ServiceName::new(t).unwrap()).collect(),
        unit: UnitName::new(&format!("{service}@{port}.service")).unwrap(),
        health,
    }
}

fn machine_record(m: char, hostname: &str, ip: &str) -> MachineRecord {
    MachineRecord {
        id: machine(m),
        ip: ip.into(),
        metadata: Default::default(),
        version: "0".into(),
        api: None,
        hostname: hostname.into(),
        capacity: Some(Resources::ZERO),
    }
}

/// web on machines a, b (tagged v2) and c (failing its check), and a second one on a; db on
/// a, IPv6 only; api on c, not checked yet; machines a, b, c and d (an IPv6 address and a
/// dotted hostname).
fn view() -> View {
    let instances = [
        instance("web", 'a', "10.0.0.1", 8001, &["http"], Health::Passing),
        instance(
            "web",
            'b',
            "10.0.0.2",
            8002,
            &["http", "v2"],
            Health::Passing,
        ),
        instance("web", 'c', "10.0.0.3", 8003, &["http"], Health::Critical),
        instance("web", 'a', "10.0.0.1", 8004, &[], Health::Passing),
        instance("db", 'a', "fd00::1", 5432, &[], Health::Passing),
        instance("api", 'c', "10.0.0.3", 9000, &[], Health::Unknown),
    ];
    View {
        catalog: Arc::new(catalog::View {
            revision: 42,
            instances: instances.into_iter().map(|i| (i.id(), i)).collect(),
            changed: Default::default(),
        }),
        machines: [
            machine_record('a', "host-a", "10.0.0.1"),
            machine_record('b', "host-b", "10.0.0.2"),
            machine_record('c', "host-c", "10.0.0.3"),
            machine_record('d', "web1.example.com", "fd00::4"),
        ]
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect(),
        ready: true,
    }
}

const SOA_TEXT: &str = "flotte. 5 IN SOA ns.flotte. hostmaster.flotte. 42 3600 600 86400 5";

/// Code, answers (sorted), whether the SOA comes, additionals (sorted).
type Expected = (
    ResponseCode,
    &'static [&'static str],
    bool,
    &'static [&'static str],
);

fn check(view: &View, qname: &str, qtype: RecordType, expected: Expected) {
    let a = answer(
        view,
        &Name::from_ascii(qname).unwrap(),
        qtype,
        DNSClass::IN,
        5,
    );
    let text = |records: &[Record]| {
        let mut v: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        v.sort();
        v
    };
    let (code, answers, soa, additionals) = expected;
    assert_eq!(a.code, code, "{qname} {qtype}: code");
    assert_eq!(text(&a.answers), answers, "{qname} {qtype}: answers");
    assert_eq!(
        a.soa.as_ref().map(|r| r.to_string()),
        soa.then(|| SOA_TEXT.to_owned()),
        "{qname} {qtype}: SOA"
    );
    assert_eq!(
        text(&a.additionals),
        additionals,
        "{qname} {qtype}: additionals"
    );
}

#[test]
fn names_in_the_zone_answer_from_the_view() {
    use RecordType::*;
    use ResponseCode::*;
    let v = view();
    let cases: &[(&str, RecordType, Expected)] = &[
        // Healthy instances only, each address once.
        (
            "web.service.flotte.",
            A,
            (
                NoError,
                &[
                    "web.service.flotte. 5 IN A 10.0.0.1",
                    "web.service.flotte. 5 IN A 10.0.0.2",
                ],
                false,
                &[],
            ),
        ),
        // In any case.
        (
            "WEB.Service.FLOTTE.",
            A,
            (
                NoError,
                &[
                    "web.service.flotte. 5 IN A 10.0.0.1",
                    "web.service.flotte. 5 IN A 10.0.0.2",
                ],
                false,
                &[],
            ),
        ),
        ("web.service.flotte.", AAAA, (NoError, &[], true, &[])),
        (
            "v2.web.service.flotte.",
            A,
            (
                NoError,
                &["v2.web.service.flotte. 5 IN A 10.0.0.2"],
                false,
                &[],
            ),
        ),
        (
            "http.web.service.flotte.",
            A,
            (
                NoError,
                &[
                    "http.web.service.flotte. 5 IN A 10.0.0.1",
                    "http.web.service.flotte. 5 IN A 10.0.0.2",
                ],
                false,
                &[],
            ),
        ),
        ("blue.web.service.flotte.", A, (NXDomain, &[], true, &[])),
        (
            "_web._tcp.service.flotte.",
            SRV,
            (
                NoError,
                &[
                    "_web._tcp.service.flotte. 5 IN SRV 1 1 8001 host-a.node.flotte.",
                    "_web._tcp.service.flotte. 5 IN SRV 1 1 8002 host-b.node.flotte.",
                    "_web._tcp.service.flotte. 5 IN SRV 1 1 8004 host-a.node.flotte.",
                ],
                false,
                &[
                    "host-a.node.flotte. 5 IN A 10.0.0.1",
                    "host-b.node.flotte. 5 IN A 10.0.0.2",
                ],
            ),
        ),
        ("_web._tcp.service.flotte.", A, (NoError, &[], true, &[])),
        ("web._tcp.service.flotte.", SRV, (NXDomain, &[], true, &[])),
        (
            "_nope._tcp.service.flotte.",
            SRV,
            (NXDomain, &[], true, &[]),
        ),
        (
            "v2.web.service.flotte.",
            SRV,
            (
                NoError,
                &["v2.web.service.flotte. 5 IN SRV 1 1 8002 host-b.node.flotte."],
                false,
                &["host-b.node.flotte. 5 IN A 10.0.0.2"],
            ),
        ),
        (
            "db.service.flotte.",
            AAAA,
            (
                NoError,
                &["db.service.flotte. 5 IN AAAA fd00::1"],
                false,
                &[],
            ),
        ),
        ("db.service.flotte.", A, (NoError, &[], true, &[])),
        (
            "db.service.flotte.",
            ANY,
            (
                NoError,
                &["db.service.flotte. 5 IN AAAA fd00::1"],
                false,
                &[],
            ),
        ),
        // Every instance failing or unchecked: an empty answer, not a denial.
        ("api.service.flotte.", A, (NoError, &[], true, &[])),
        ("web.service.flotte.", TXT, (NoError, &[], true, &[])),
        ("nope.service.flotte.", A, (NXDomain, &[], true, &[])),
        ("a.b.web.service.flotte.", A, (NXDomain, &[], true, &[])),
        (
            "host-b.node.flotte.",
            A,
            (
                NoError,
                &["host-b.node.flotte. 5 IN A 10.0.0.2"],
                false,
                &[],
            ),
        ),
        (
            "HOST-B.node.flotte.",
            A,
            (
                NoError,
                &["host-b.node.flotte. 5 IN A 10.0.0.2"],
                false,
                &[],
            ),
        ),
        (
            "cccccccccccccccccccccccccccccccc.node.flotte.",
            A,
            (
                NoError,
                &["cccccccccccccccccccccccccccccccc.node.flotte. 5 IN A 10.0.0.3"],
                false,
                &[],
            ),
        ),
        (
            "web1.example.com.node.flotte.",
            AAAA,
            (
                NoError,
                &["web1.example.com.node.flotte. 5 IN AAAA fd00::4"],
                false,
                &[],
            ),
        ),
        (
            "web1.example.com.node.flotte.",
            A,
            (NoError, &[], true, &[]),
        ),
        ("host-z.node.flotte.", A, (NXDomain, &[], true, &[])),
        ("flotte.", SOA, (NoError, &[SOA_TEXT], false, &[])),
        ("flotte.", A, (NoError, &[], true, &[])),
        ("service.flotte.", A, (NoError, &[], true, &[])),
        ("node.flotte.", A, (NoError, &[], true, &[])),
        ("other.flotte.", A, (NXDomain, &[], true, &[])),
        // Not ours: refused, with nothing.
        ("example.com.", A, (Refused, &[], false, &[])),
        ("flotte.example.", A, (Refused, &[], false, &[])),
        (".", NS, (Refused, &[], false, &[])),
    ];
    for (qname, qtype, expected) in cases {
        check(&v, qname, *qtype, *expected);
    }
}

#[test]
fn nothing_is_denied_before_the_first_listing_nor_answered_outside_class_in() {
    check(
        &View::default(),
        "web.service.flotte.",
        RecordType::A,
        (ResponseCode::ServFail, &[], false, &[]),
    );
    let name = Name::from_ascii("web.service.flotte.").unwrap();
    let a = answer(&view(), &name, RecordType::A, DNSClass::CH, 5);
    assert_eq!(a.code, ResponseCode::Refused);
}

#[test]
fn every_record_has_the_configured_ttl() {
    let name = Name::from_ascii("_web._tcp.service.flotte.").unwrap();
    let a = answer(&view(), &name, RecordType::SRV, DNSClass::IN, 0);
    assert!(!a.answers.is_empty());
    assert!(
        a.answers.iter().chain(&a.additionals).all(|r| r.ttl == 0),
        "{a:?}"
    );
}
