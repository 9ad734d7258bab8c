//! The HTTP API against a real etcd, driven over HTTP on its unix socket and TCP (with TLS):
//! every status code and bad input, pagination, the change long poll; and end to end on a
//! one-host cluster.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotte::api::{self, ApiSettings, Listeners, ServeError, TlsFiles};
use flotte::isolated::Etcd;
use flotte::machine::{MachineId, Metadata};
use flotte::registry::{
    EngineWrite, EtcdSettings, Lease, MachineRecord, PlacementRecord, ReasonRecord, Registry,
    UnitStateRecord,
};
use flotte::unit::{DesiredState, Target, UnitFile, UnitName, UnitOption};
use flotte::wire;

use crate::support::{Pki, within};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_util::sync::CancellationToken;

// ---- a server of our own on a fresh etcd ----

struct TestApi {
    registry: Registry,
    registered: watch::Sender<bool>,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<()>,
    socket: PathBuf,
    tcp: SocketAddr,
    etcd_url: String,
    _dir: tempfile::TempDir,
    _etcd: Etcd,
}

async fn start() -> TestApi {
    start_with(|_| None).await
}

/// Starts etcd and the API on a socket in a directory that does not exist yet and on
/// 127.0.0.1:0; `tls` may write certificates into the directory and return their files.
async fn start_with(tls: impl FnOnce(&std::path::Path) -> Option<TlsFiles>) -> TestApi {
    let dir = tempfile::Builder::new()
        .prefix("flotte-api-")
        .tempdir()
        .unwrap();
    let etcd = Etcd::start(&dir.path().join("etcd"))
        .await
        .expect("etcd starts");
    let registry = Registry::connect(&EtcdSettings {
        endpoints: vec![etcd.client_url().to_owned()],
        ..EtcdSettings::default()
    })
    .await
    .unwrap();
    let settings = ApiSettings {
        socket: dir.path().join("run/flotte/flotte.sock"),
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        tls: tls(dir.path()),
    };
    let listeners = Listeners::bind(&settings).await.unwrap();
    let tcp = listeners.tcp_addrs()[0];
    let (registered, ready) = watch::channel(true);
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(api::serve(
        listeners,
        std::future::ready(Some(registry.clone())),
        ready,
        shutdown.clone(),
    ));
    TestApi {
        registry,
        registered,
        shutdown,
        served,
        socket: settings.socket,
        tcp,
        etcd_url: etcd.client_url().to_owned(),
        _dir: dir,
        _etcd: etcd,
    }
}

// ---- HTTP/1.1 over any stream ----

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is no JSON ({e}): {}", self.text()))
    }

    /// The message of fleet's error body, checked: JSON, the status repeated as `code`, and a
    /// non-empty message that starts lowercase.
    fn error(&self) -> String {
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{self:?}"
        );
        let body: wire::ErrorBody = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {}", self.text()));
        assert_eq!(body.error.code, self.status);
        let first = body.error.message.chars().next();
        assert!(
            first.is_some_and(|c| !c.is_uppercase()),
            "message `{}` must be non-empty and start lowercase",
            body.error.message
        );
        body.error.message
    }
}

/// One HTTP/1.1 exchange on `io`; an error (or no answer within 20 s) is returned as text.
async fn try_send<I>(
    io: I,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "flotte");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{method} {path}: no answer within 20 s")))
}

type Headers = &'static [(&'static str, &'static str)];

const JSON: Headers = &[("content-type", "application/json")];

impl TestApi {
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let stream = UnixStream::connect(&self.socket).await.unwrap();
        try_send(stream, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], "").await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.send("PUT", path, JSON, &body.to_string()).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], "").await
    }

    async fn patch(&self, body: Value) -> Reply {
        self.send("PATCH", "/fleet/v1/machines", JSON, &body.to_string())
            .await
    }

    /// etcd's current revision: unchanged when nothing at all was written.
    async fn revision(&self) -> i64 {
        self.registry.units().await.unwrap().1
    }

    async fn lease(&self) -> Lease {
        self.registry
            .grant_lease(Duration::from_secs(120))
            .await
            .unwrap()
    }
}

// ---- fixtures ----

fn machine(c: char) -> MachineId {
    MachineId::new(&c.to_string().repeat(32)).unwrap()
}

fn unit(name: &str) -> UnitName {
    UnitName::new(name).unwrap()
}

fn sleeper(seconds: u32) -> Value {
    json!([{"section": "Service", "name": "ExecStart", "value": format!("/bin/sleep {seconds}")}])
}

fn file(seconds: u32) -> UnitFile {
    UnitFile::from_options(vec![UnitOption::new(
        "Service",
        "ExecStart",
        &format!("/bin/sleep {seconds}"),
    )])
    .unwrap()
}

fn state(file: &UnitFile, current: Target, active: &str) -> UnitStateRecord {
    UnitStateRecord {
        hash: file.hash(),
        current,
        load: "loaded".into(),
        active: active.into(),
        sub: if active == "active" {
            "running"
        } else {
            "dead"
        }
        .into(),
        message: None,
        started: 0,
    }
}

async fn register(api: &TestApi, id: &MachineId, metadata: &str, lease: &Lease) {
    let record = MachineRecord {
        id: id.clone(),
        ip: "10.0.0.1".into(),
        metadata: Metadata::parse_list(metadata).unwrap(),
        version: "9.9.9".into(),
        api: None,
        hostname: format!("host-{}", &id.as_str()[..1]),
        capacity: None,
    };
    api.registry.register_machine(&record, lease).await.unwrap();
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_answered_503_until_the_agent_registered() {
    let api = start().await;
    api.registered.send_replace(false);
    for path in ["/fleet/v1/units", "/fleet/v1/machines?alt=json", "/nowhere"] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 503, "{path}");
        assert_eq!(
            reply.error(),
            "this machine has not registered in the cluster yet; retry in a moment"
        );
    }
    api.registered.send_replace(true);
    let reply = api.get("/fleet/v1/units").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "{}", "an empty list leaves its fields out");
    let server = reply.headers.get("server").unwrap().to_str().unwrap();
    assert_eq!(server, concat!("flotted/", env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread")]
async fn units_are_created_updated_replaced_and_destroyed_with_fleets_status_codes() {
    let api = start().await;
    let name = unit("web.service");

    let reply = api
        .put(
            "/fleet/v1/units/web.service?alt=json",
            json!({"desiredState": "loaded", "options": sleeper(1)}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert!(reply.body.is_empty());
    let (record, _) = api.registry.unit(&name).await.unwrap().unwrap();
    assert_eq!(record.desired, DesiredState::Loaded);
    assert_eq!(record.hash, file(1).hash());

    let reply = api.get("/fleet/v1/units/web.service?alt=json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({
            "name": "web.service",
            "options": sleeper(1),
            "desiredState": "loaded",
            "currentState": "inactive",
        })
    );

    // A new desired state alone, then with the same options: both are updates.
    let reply = api
        .put(
            "/v1-alpha/units/web.service",
            json!({"desiredState": "launched"}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let reply = api
        .put(
            "/fleet/v1/units/web.service",
            json!({"name": "web.service", "desiredState": "inactive", "options": sleeper(1)}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let (record, _) = api.registry.unit(&name).await.unwrap().unwrap();
    assert_eq!(record.desired, DesiredState::Inactive);

    // Different options replace the unit, keeping its desired state unless told.
    let reply = api
        .put(
            "/fleet/v1/units/web.service",
            json!({"options": sleeper(2)}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let (record, _) = api.registry.unit(&name).await.unwrap().unwrap();
    assert_eq!(record.hash, file(2).hash());
    assert_eq!(record.desired, DesiredState::Inactive);
    assert_eq!(
        api.get("/fleet/v1/units").await.json()["units"][0]["options"],
        sleeper(2)
    );

    // An instance and a template; the template stays inactive.
    let reply = api
        .put(
            "/fleet/v1/units/app@.service",
            json!({"desiredState": "inactive", "options": sleeper(3)}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    // fleet's client escapes `@` in paths.
    let reply = api
        .put(
            "/fleet/v1/units/app%401.service",
            json!({"desiredState": "launched", "options": sleeper(3)}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let names: Vec<Value> = api.get("/fleet/v1/units").await.json()["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert_eq!(names, ["app@.service", "app@1.service", "web.service"]);

    let reply = api.delete("/fleet/v1/units/web.service").await;
    assert_eq!(reply.status, 204);
    assert!(api.registry.unit(&name).await.unwrap().is_none());
    for (method, path) in [
        ("DELETE", "/fleet/v1/units/web.service"),
        ("GET", "/fleet/v1/units/web.service"),
    ] {
        let reply = api.send(method, path, &[], "").await;
        assert_eq!(reply.status, 404, "{method} {path}");
        assert_eq!(reply.error(), "unit `web.service` does not exist");
    }
    let reply = api.get("/fleet/v1/units/..service").await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().starts_with("unit name `..service` is not"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_put_is_refused_with_its_status_and_writes_nothing() {
    let api = start().await;
    let reply = api
        .put(
            "/fleet/v1/units/old.service",
            json!({"desiredState": "loaded", "options": sleeper(1)}),
        )
        .await;
    assert_eq!(reply.status, 201);
    let template = json!({"options": sleeper(1)}).to_string();
    let huge = json!({"options": [{"section": "Service", "name": "ExecStart", "value": "x".repeat(3 << 20)}]})
        .to_string();
    let cases: Vec<(&str, Headers, String, u16, &str)> = vec![
        (
            "new.service",
            &[],
            template.clone(),
            415,
            "content type none is not accepted: send application/json",
        ),
        (
            "new.service",
            &[("content-type", "text/plain")],
            template.clone(),
            415,
            "content type `text/plain` is not accepted: send application/json",
        ),
        (
            "new.service",
            JSON,
            "{\"options\": [".to_owned(),
            400,
            "unable to decode body: ",
        ),
        ("new.service", JSON, huge, 413, "the request body is larger than"),
        (
            "new.service",
            JSON,
            json!({"name": "other.service", "options": sleeper(1)}).to_string(),
            400,
            "unit name `new.service` in the URL differs from name `other.service` in the request body",
        ),
        (
            "new.txt",
            JSON,
            template.clone(),
            400,
            "unit name `new.txt` is not a valid systemd unit name",
        ),
        (
            "new.service",
            JSON,
            json!({"options": [{"section": "Service", "name": "ExecStart", "value": "a\nb"}]})
                .to_string(),
            400,
            "invalid options of unit `new.service`: option 0: value `a\\nb` of `ExecStart`",
        ),
        (
            "new.service",
            JSON,
            json!({"options": [{"section": "X-Fleet", "name": "MachineOf", "value": "../x"}]})
                .to_string(),
            400,
            "invalid [X-Fleet] options of unit `new.service`: ",
        ),
        (
            "new.service",
            JSON,
            json!({"desiredState": "running", "options": sleeper(1)}).to_string(),
            400,
            "invalid desiredState: state `running` is not one of inactive, loaded, launched",
        ),
        (
            "new@.service",
            JSON,
            json!({"desiredState": "launched", "options": sleeper(1)}).to_string(),
            400,
            "unit `new@.service` is a template: its desiredState can only be inactive, not launched",
        ),
        (
            "new.service",
            JSON,
            json!({"desiredState": "launched"}).to_string(),
            409,
            "unit `new.service` does not exist and the request has no options to create it from",
        ),
        (
            "old.service",
            JSON,
            json!({"options": sleeper(1)}).to_string(),
            409,
            "unit `old.service` exists: give a desiredState to update it",
        ),
        (
            "old.service",
            JSON,
            json!({"desiredState": "launched", "options": [{"section": "Service", "name": "", "value": "x"}]})
                .to_string(),
            400,
            "invalid options of unit `old.service`: option 0: option name `` is empty",
        ),
    ];
    for (name, headers, body, status, message) in cases {
        let before = api.revision().await;
        let path = format!("/fleet/v1/units/{name}");
        let reply = api.send("PUT", &path, headers, &body).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.text());
        let got = reply.error();
        assert!(got.starts_with(message), "{name}: `{got}`");
        assert_eq!(api.revision().await, before, "{name}: nothing is written");
    }
    let (record, _) = api
        .registry
        .unit(&unit("old.service"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.desired, DesiredState::Loaded);
}

#[tokio::test(flavor = "multi_thread")]
async fn units_list_in_pages_of_100_with_fleets_tokens() {
    let api = start().await;
    let writes = (0..250).map(|i| {
        let registry = api.registry.clone();
        async move {
            registry
                .put_unit(
                    &unit(&format!("u{i:03}.service")),
                    &file(1),
                    DesiredState::Inactive,
                )
                .await
                .unwrap()
        }
    });
    futures_util::future::join_all(writes).await;

    let mut names = Vec::new();
    let mut path = "/fleet/v1/units?alt=json".to_owned();
    let mut tokens = Vec::new();
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page: wire::UnitPage = serde_json::from_slice(&page.body).unwrap();
        names.extend(page.units.into_iter().map(|u| u.name));
        if page.next_page_token.is_empty() {
            break;
        }
        tokens.push(page.next_page_token.clone());
        path = format!(
            "/fleet/v1/units?alt=json&nextPageToken={}",
            page.next_page_token.replace('=', "%3D")
        );
    }
    // URL-safe base64 of limit 100 then page 2 (or 3), little-endian u16s.
    assert_eq!(tokens, ["ZAACAA==", "ZAADAA=="]);
    let expected: Vec<String> = (0..250).map(|i| format!("u{i:03}.service")).collect();
    assert_eq!(names, expected);

    let page = api.get("/fleet/v1/units?nextPageToken=ZAAEAA%3D%3D").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.text(), "{}", "past the end: an empty page");
    for token in ["bogus", "CgACAA%3D%3D", "ZAAAAA%3D%3D"] {
        for resource in ["units", "machines", "state"] {
            let reply = api
                .get(&format!("/fleet/v1/{resource}?nextPageToken={token}"))
                .await;
            assert_eq!(reply.status, 400, "{resource} {token}");
            assert!(reply.error().starts_with("invalid value `"));
        }
    }
}

/// The server keeps a listing's units for its next pages only while etcd's revision stays
/// the same: a unit submitted between two pages is on the page it sorts into.
#[tokio::test(flavor = "multi_thread")]
async fn a_unit_submitted_between_two_pages_is_on_the_later_page() {
    let api = start().await;
    let put = |name: String| {
        let registry = api.registry.clone();
        async move {
            registry
                .put_unit(&unit(&name), &file(1), DesiredState::Inactive)
                .await
                .unwrap()
        }
    };
    futures_util::future::join_all((0..150).map(|i| put(format!("u{i:03}.service")))).await;
    let names = |reply: &Reply| -> (Vec<String>, String) {
        assert_eq!(reply.status, 200, "{}", reply.text());
        let page: wire::UnitPage = serde_json::from_slice(&reply.body).unwrap();
        (
            page.units.into_iter().map(|u| u.name).collect(),
            page.next_page_token,
        )
    };
    let (first, token) = names(&api.get("/fleet/v1/units").await);
    assert_eq!(first.len(), 100);
    // Submitted after the first page, which the server kept the whole listing for.
    put("u149a.service".to_owned()).await;
    let later = format!(
        "/fleet/v1/units?nextPageToken={}",
        token.replace('=', "%3D")
    );
    let (second, next) = names(&api.get(&later).await);
    assert_eq!(second.len(), 51, "{second:?}");
    assert_eq!(second.last().unwrap(), "u149a.service");
    assert!(next.is_empty());
    // Unchanged since: the same pages again.
    let (again, _) = names(&api.get("/fleet/v1/units").await);
    assert_eq!(again, first);
    let (again, _) = names(&api.get(&later).await);
    assert_eq!(again, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn units_show_their_placement_current_state_and_reason() {
    let api = start().await;
    let lease = api.lease().await;
    let leadership = api.registry.campaign(&lease, &machine('e')).await.unwrap();
    for (name, desired) in [
        ("global.service", DesiredState::Launched),
        ("placed.service", DesiredState::Launched),
        ("stuck.service", DesiredState::Launched),
    ] {
        api.registry
            .put_unit(&unit(name), &file(1), desired)
            .await
            .unwrap();
    }
    let placement = |machines: Vec<MachineId>| PlacementRecord { machines };
    api.registry
        .apply(
            &leadership.fence,
            &[vec![
                EngineWrite::PutPlacement(
                    unit("global.service"),
                    placement(vec![machine('a'), machine('b')]),
                ),
                EngineWrite::PutPlacement(unit("placed.service"), placement(vec![machine('b')])),
                EngineWrite::PutReason(
                    unit("stuck.service"),
                    ReasonRecord {
                        reason: "no machine has region=mars".into(),
                    },
                ),
            ]],
        )
        .await
        .unwrap();
    for (name, m, current) in [
        ("global.service", 'b', Target::Launched),
        ("placed.service", 'b', Target::Loaded),
    ] {
        api.registry
            .put_state(
                &unit(name),
                &machine(m),
                &state(&file(1), current, "active"),
                &lease,
            )
            .await
            .unwrap();
    }
    let a = machine('a').to_string();
    let b = machine('b').to_string();
    let expected = [
        // The first machine of a global unit has reported nothing yet.
        json!({"name": "global.service", "currentState": "inactive", "machineID": a, "machineIDs": [a, b]}),
        json!({"name": "placed.service", "currentState": "loaded", "machineID": b, "machineIDs": [b]}),
        json!({"name": "stuck.service", "currentState": "inactive", "reason": "no machine has region=mars"}),
    ];
    let list = api.get("/fleet/v1/units").await.json();
    for (i, want) in expected.iter().enumerate() {
        let got = &list["units"][i];
        let one = api
            .get(&format!(
                "/fleet/v1/units/{}",
                want["name"].as_str().unwrap()
            ))
            .await
            .json();
        assert_eq!(&one, got, "GET one and the list agree");
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&got[field], value, "{}: {field}", want["name"]);
        }
        for absent in ["machineID", "machineIDs", "reason", "global"] {
            if want.get(absent).is_none() {
                assert!(
                    got.get(absent).is_none(),
                    "{}: {absent} left out",
                    want["name"]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_units_bad_data_does_not_break_listing_the_others() {
    let api = start().await;
    api.registry
        .put_unit(&unit("good.service"), &file(1), DesiredState::Loaded)
        .await
        .unwrap();
    let mut etcd = etcd_client::Client::connect([api.etcd_url.as_str()], None)
        .await
        .unwrap();
    let orphan = json!({"hash": file(9).hash().to_string(), "desired": "launched"});
    for (key, value) in [
        ("/flotte/units/garbage.service", "{not json".to_owned()),
        ("/flotte/units/orphan.service", orphan.to_string()),
        ("/flotte/states/good.service/nonsense", "{}".to_owned()),
        ("/flotte/placement/good.service", "[1, 2".to_owned()),
    ] {
        etcd.put(key, value, None).await.unwrap();
    }
    let list = api.get("/fleet/v1/units").await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(
        list.json(),
        json!({"units": [
            {"name": "good.service", "options": sleeper(1), "desiredState": "loaded", "currentState": "inactive"},
            {"name": "orphan.service", "desiredState": "launched", "currentState": "inactive"},
        ]})
    );
    let one = api.get("/fleet/v1/units/orphan.service").await;
    assert_eq!(one.status, 500);
    assert_eq!(
        one.error(),
        format!(
            "unit `orphan.service` cannot be read: its content {} is missing",
            file(9).hash()
        )
    );
    assert_eq!(api.get("/fleet/v1/state").await.text(), "{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn states_are_listed_sorted_filtered_and_one_by_name() {
    let api = start().await;
    let lease = api.lease().await;
    let records = [
        ("b.service", 'c', "failed"),
        ("a.service", 'd', "active"),
        ("b.service", 'a', "active"),
        ("a.service", 'c', "inactive"),
    ];
    for (name, m, active) in records {
        api.registry
            .put_state(
                &unit(name),
                &machine(m),
                &state(&file(1), Target::Launched, active),
                &lease,
            )
            .await
            .unwrap();
    }
    let listed = |reply: Reply| -> Vec<(String, String, String)> {
        let page: wire::UnitStatePage = serde_json::from_slice(&reply.body).unwrap();
        page.states
            .into_iter()
            .map(|s| {
                assert_eq!(s.hash, file(1).hash().to_string());
                assert_eq!(s.systemd_load_state, "loaded");
                (s.name, s.machine_id[..1].to_owned(), s.systemd_active_state)
            })
            .collect()
    };
    let t = |n: &str, m: &str, a: &str| (n.to_owned(), m.to_owned(), a.to_owned());
    assert_eq!(
        listed(api.get("/fleet/v1/state?alt=json").await),
        [
            t("a.service", "c", "inactive"),
            t("a.service", "d", "active"),
            t("b.service", "a", "active"),
            t("b.service", "c", "failed"),
        ]
    );
    let c = machine('c');
    assert_eq!(
        listed(api.get(&format!("/fleet/v1/state?machineID={c}")).await),
        [
            t("a.service", "c", "inactive"),
            t("b.service", "c", "failed")
        ]
    );
    assert_eq!(
        listed(api.get("/v1-alpha/state?unitName=b.service").await),
        [t("b.service", "a", "active"), t("b.service", "c", "failed")]
    );
    assert_eq!(
        listed(
            api.get(&format!("/fleet/v1/state?unitName=b.service&machineID={c}"))
                .await
        ),
        [t("b.service", "c", "failed")]
    );
    assert_eq!(
        api.get("/fleet/v1/state?unitName=none.service")
            .await
            .text(),
        "{}"
    );

    let one = api.get("/fleet/v1/state/b.service").await;
    assert_eq!(one.status, 200);
    let one: wire::UnitState = serde_json::from_slice(&one.body).unwrap();
    assert_eq!(
        (one.name.as_str(), one.machine_id.as_str()),
        ("b.service", machine('a').as_str())
    );
    let none = api.get("/fleet/v1/state/none.service").await;
    assert_eq!(none.status, 404);
    assert_eq!(
        none.error(),
        "unit `none.service` has no state on any machine"
    );
    assert_eq!(api.get("/fleet/v1/state/none").await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_show_effective_metadata_and_patch_takes_both_value_shapes() {
    let api = start().await;
    let lease = api.lease().await;
    register(&api, &machine('b'), "disk=hdd,region=eu", &lease).await;
    register(&api, &machine('a'), "region=us", &lease).await;
    let (a, b) = (machine('a').to_string(), machine('b').to_string());

    let reply = api
        .patch(json!([
            {"op": "replace", "path": format!("/{b}/metadata/disk"), "value": "ssd"},
            {"op": "add", "path": format!("/{a}/metadata/rack"), "value": {"value": "r7"}},
            {"op": "remove", "path": format!("/{b}/metadata/region")},
            // A machine that is not registered (yet) may be given metadata too.
            {"op": "add", "path": format!("/{}/metadata/role", machine('f')), "value": "edge"},
        ]))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let page = api.get("/fleet/v1/machines?alt=json").await;
    assert_eq!(page.status, 200);
    let page: wire::MachinePage = serde_json::from_slice(&page.body).unwrap();
    let shown: Vec<(String, String, String, String)> = page
        .machines
        .into_iter()
        .map(|m| {
            let metadata = m
                .metadata
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            (m.id, metadata, m.version, m.hostname)
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                a.clone(),
                "rack=r7,region=us".to_owned(),
                "9.9.9".to_owned(),
                "host-a".to_owned()
            ),
            (
                b.clone(),
                "disk=ssd".to_owned(),
                "9.9.9".to_owned(),
                "host-b".to_owned()
            ),
        ]
    );

    let before = api.revision().await;
    for (ops, message) in [
        (
            json!([{"op": "add", "path": format!("/{a}/metadata/ok"), "value": "x"},
                   {"op": "copy", "path": format!("/{a}/metadata/ok"), "value": "x"}]),
            "metadata operation 1: op `copy` is not add, remove or replace",
        ),
        (
            json!([{"op": "add", "path": format!("/{a}/metadata/ok")}]),
            "metadata operation 0: add of ",
        ),
        (
            json!([{"op": "add", "path": "/nope/metadata/ok", "value": "x"}]),
            "metadata operation 0: path `/nope/metadata/ok`: machine ID `nope`",
        ),
        (json!({"op": "add"}), "unable to decode body: "),
    ] {
        let reply = api.patch(ops).await;
        assert_eq!(reply.status, 400);
        let got = reply.error();
        assert!(got.starts_with(message), "{got}");
    }
    assert_eq!(
        api.revision().await,
        before,
        "rejected patches write nothing"
    );
    let reply = api.send("PUT", "/fleet/v1/machines", JSON, "[]").await;
    assert_eq!(reply.status, 405);
    assert_eq!(
        reply.error(),
        "method PUT is not allowed on `/fleet/v1/machines`: only GET and PATCH are supported on this resource"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_changes_long_poll_answers_when_behind_wakes_on_a_change_and_times_out() {
    let api = &start().await;
    let changes = |since: i64, timeout: u64| async move {
        let reply = api
            .get(&format!(
                "/flotte/v1/changes?since={since}&timeout={timeout}"
            ))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        serde_json::from_slice::<wire::Changes>(&reply.body)
            .unwrap()
            .revision
    };
    let now = within(
        "an answer to since=0",
        Duration::from_secs(10),
        changes(0, 60),
    )
    .await;
    assert!(now > 0);

    let started = Instant::now();
    let (woken, ()) = tokio::join!(changes(now, 60), async {
        let reply = api
            .put(
                "/fleet/v1/units/a.service",
                json!({"desiredState": "launched", "options": sleeper(1)}),
            )
            .await;
        assert_eq!(reply.status, 201);
    });
    assert!(woken > now, "woken at {woken}, after {now}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the change woke the poll before its timeout"
    );
    assert_eq!(
        within(
            "an answer when behind",
            Duration::from_secs(5),
            changes(now, 60)
        )
        .await,
        woken
    );

    // Metadata is not a unit change: the poll runs into its timeout, unchanged.
    let reply = api
        .patch(
            json!([{"op": "add", "path": format!("/{}/metadata/a", machine('a')), "value": "b"}]),
        )
        .await;
    assert_eq!(reply.status, 204);
    let started = Instant::now();
    assert_eq!(changes(woken, 1).await, woken);
    assert!(started.elapsed() >= Duration::from_millis(900));

    let reply = api.get("/flotte/v1/changes?since=soon").await;
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .error()
            .starts_with("invalid value `soon` of query parameter `since`")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_methods_and_the_discovery_document_behave_as_fleets() {
    let api = start().await;
    for (method, path, status, message) in [
        ("GET", "/nowhere", 404, "no resource at `/nowhere`"),
        (
            "GET",
            "/fleet/v1/units/",
            404,
            "no resource at `/fleet/v1/units/`",
        ),
        (
            "GET",
            "/fleet/v1/units/a/b",
            404,
            "no resource at `/fleet/v1/units/a/b`",
        ),
        (
            "POST",
            "/fleet/v1/units",
            405,
            "method POST is not allowed on `/fleet/v1/units`: only GET is supported on this resource",
        ),
        (
            "POST",
            "/v1-alpha/units/a.service",
            405,
            "method POST is not allowed on `/v1-alpha/units/a.service`: only GET, PUT and DELETE are supported on this resource",
        ),
        (
            "GET",
            "/fleet/v1",
            405,
            "method GET is not allowed on `/fleet/v1`: this is no resource; see /fleet/v1/discovery",
        ),
        (
            "GET",
            "/",
            405,
            "method GET is not allowed on `/`: this is no resource; see /fleet/v1/discovery",
        ),
    ] {
        let reply = api.send(method, path, &[], "").await;
        assert_eq!(reply.status, status, "{method} {path}");
        assert_eq!(reply.error(), message);
    }

    // Every method the discovery document lists is served, under both prefixes.
    let doc = api.get("/fleet/v1/discovery?alt=json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json(), api.get("/v1-alpha/discovery").await.json());
    let doc = doc.json();
    for resource in doc["resources"].as_object().unwrap().values() {
        for m in resource["methods"].as_object().unwrap().values() {
            let method = m["httpMethod"].as_str().unwrap();
            let path = m["path"]
                .as_str()
                .unwrap()
                .replace("{unitName}", "x.service");
            let paths = if path.starts_with('/') {
                vec![path]
            } else {
                vec![format!("/fleet/v1/{path}"), format!("/v1-alpha/{path}")]
            };
            for path in paths {
                let (headers, body) = match method {
                    "PUT" => (JSON, "{}"),
                    "PATCH" => (JSON, "[]"),
                    _ => (&[][..], ""),
                };
                let reply = api.send(method, &path, headers, body).await;
                assert!(
                    reply.status < 400
                        || !reply.error().starts_with("no resource") && reply.status != 405,
                    "{method} {path}: {}",
                    reply.text()
                );
            }
        }
    }

    // Plain TCP serves the same API.
    let stream = TcpStream::connect(api.tcp).await.unwrap();
    let reply = try_send(stream, "GET", "/fleet/v1/machines", &[], "")
        .await
        .unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "{}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_is_private_a_stale_one_is_replaced_and_a_live_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("flotte.sock");
    // A socket file left by a dead server.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let settings = ApiSettings {
        socket: socket.clone(),
        tcp: vec![],
        tls: None,
    };
    let listeners = Listeners::bind(&settings).await.unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    let again = Listeners::bind(&settings).await.err().unwrap();
    assert!(matches!(again, ServeError::SocketInUse(_)), "{again}");
    drop(listeners);

    let api = start().await;
    assert_eq!(api.get("/fleet/v1/units").await.status, 200);
    api.shutdown.cancel();
    let TestApi { served, socket, .. } = api;
    within("the server's shutdown", Duration::from_secs(10), served)
        .await
        .unwrap();
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_on_tcp_requires_a_client_certificate_signed_by_the_ca() {
    let pki = Pki::new();
    let api = start_with(|dir| {
        let (cert, key) = pki.issue(&["127.0.0.1"]);
        std::fs::write(dir.join("api.pem"), cert).unwrap();
        std::fs::write(dir.join("api.key"), key).unwrap();
        std::fs::write(dir.join("ca.pem"), pki.ca.pem()).unwrap();
        Some(TlsFiles {
            cert_file: dir.join("api.pem"),
            key_file: dir.join("api.key"),
            client_ca_file: Some(dir.join("ca.pem")),
        })
    })
    .await;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client = |identity: Option<(String, String)>| {
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone());
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        TlsConnector::from(Arc::new(config))
    };
    let addr = api.tcp;
    let call = |connector: TlsConnector| async move {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio::time::timeout(Duration::from_secs(20), connector.connect(name, tcp))
            .await
            .map_err(|_| "no TLS handshake within 20 s".to_owned())?
            .map_err(|e| e.to_string())?;
        try_send(tls, "GET", "/fleet/v1/units?alt=json", &[], "").await
    };

    let reply = call(client(Some(pki.issue(&["flottectl"])))).await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "{}"));

    let anonymous = call(client(None)).await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate is refused: {anonymous:?}"
    );
    let stranger = Pki::new();
    assert!(
        call(client(Some(stranger.issue(&["flottectl"]))))
            .await
            .is_err(),
        "a certificate of another CA is refused"
    );
    let plain = TcpStream::connect(api.tcp).await.unwrap();
    let plain = try_send(plain, "GET", "/fleet/v1/units", &[], "").await;
    assert!(plain.is_err(), "plain HTTP on a TLS port fails: {plain:?}");
    // The socket stays plain HTTP.
    assert_eq!(api.get("/fleet/v1/units").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unit_put_over_the_socket_is_launched_and_reported_active() {
    let t = crate::support::cluster("api-e2e", &[("host-1", "region=eu")], &[]).await;
    let socket = t.cluster.socket(0).to_owned();
    let send = |method: &'static str, path: String, body: Option<Value>| {
        let socket = socket.clone();
        async move {
            let stream = UnixStream::connect(&socket).await.unwrap();
            let (headers, body) = match &body {
                Some(b) => (JSON, b.to_string()),
                None => (&[][..], String::new()),
            };
            try_send(stream, method, &path, headers, &body)
                .await
                .unwrap()
        }
    };
    // The agent flags registration just after writing the machine the cluster waited for.
    flotte::isolated::wait_for(
        Duration::from_secs(10),
        || "the API to answer other than 503".to_owned(),
        || async {
            let reply = send("GET", "/fleet/v1/machines".into(), None).await;
            (reply.status != 503).then_some(())
        },
    )
    .await
    .unwrap();

    let options =
        json!([{"section": "Service", "name": "ExecStart", "value": "/bin/sleep 100000"}]);
    let reply = send(
        "PUT",
        "/fleet/v1/units/hello.service".into(),
        Some(json!({"desiredState": "launched", "options": options})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());

    let machine = t.cluster.machine_id(0).to_string();
    let mut since = 0;
    let mut last = (Value::Null, Value::Null);
    let launched = async {
        loop {
            let unit = send("GET", "/fleet/v1/units/hello.service".into(), None)
                .await
                .json();
            let states = send("GET", "/fleet/v1/state?unitName=hello.service".into(), None)
                .await
                .json();
            let done = unit["currentState"] == "launched"
                && unit["machineID"] == machine.as_str()
                && states["states"][0]["systemdActiveState"] == "active"
                && states["states"][0]["machineID"] == machine.as_str();
            last = (unit, states);
            if done {
                return;
            }
            // Wait for the next change rather than polling blindly.
            let reply = send(
                "GET",
                format!("/flotte/v1/changes?since={since}&timeout=10"),
                None,
            )
            .await;
            since = serde_json::from_slice::<wire::Changes>(&reply.body)
                .unwrap()
                .revision;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), launched)
        .await
        .is_err()
    {
        panic!("hello.service was not launched and active within 30 s; last seen: {last:#?}");
    }
}

// ---- the bad inputs of issue 12 ----

/// A unit of `count` options `A=` in section `X`: a file of 3 bytes a line, whose options
/// list is several times larger (issue 12's units).
fn tiny_options(count: usize) -> Value {
    Value::Array(vec![json!({"section": "X", "name": "A"}); count])
}

#[tokio::test(flavor = "multi_thread")]
async fn units_of_tens_of_thousands_of_tiny_options_are_stored_and_read_back() {
    let api = start().await;
    // 42,000 options made etcd answer "request is too large", 77,000 gRPC's "received message
    // larger than max", both as a 500, when contents were stored as options lists only.
    for count in [42_000, 77_000] {
        let name = format!("tiny-{count}.service");
        let body = json!({"desiredState": "loaded", "options": tiny_options(count)});
        let size = body.to_string().len();
        assert!(
            size < 2 << 20,
            "{count} options: the body of {size} bytes is within the API's limit"
        );
        let reply = api.put(&format!("/fleet/v1/units/{name}"), body).await;
        assert_eq!(reply.status, 201, "{count} options: {}", reply.text());
        let got = api.get(&format!("/fleet/v1/units/{name}")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        let got = got.json();
        assert_eq!(got["options"], tiny_options(count), "{count} options");
        assert_eq!(got["desiredState"], "loaded");
        let (record, _) = api.registry.unit(&unit(&name)).await.unwrap().unwrap();
        let file = api.registry.content(&record.hash).await.unwrap().unwrap();
        assert_eq!(file.options().len(), count);
        assert_eq!(file.hash(), record.hash, "the content is the hashed one");
    }
    let list = api.get("/fleet/v1/units").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["units"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_patches_need_json_and_keys_that_are_no_path_segments() {
    let api = start().await;
    let lease = api.lease().await;
    register(&api, &machine('a'), "region=us", &lease).await;
    let a = machine('a').to_string();
    let good = json!([{"op": "add", "path": format!("/{a}/metadata/disk"), "value": "ssd"}]);
    let dots = |key: &str| {
        json!([{"op": "add", "path": format!("/{a}/metadata/{key}"), "value": "x"}]).to_string()
    };
    let cases: Vec<(Headers, String, u16, String)> = vec![
        (
            &[("content-type", "text/plain")],
            good.to_string(),
            415,
            "content type `text/plain` is not accepted: send application/json".into(),
        ),
        (
            &[],
            good.to_string(),
            415,
            "content type none is not accepted: send application/json".into(),
        ),
        (
            JSON,
            dots(".."),
            400,
            format!(
                "metadata operation 0: path `/{a}/metadata/..`: metadata key `..` is invalid: \
                 a key of dots only reads as a path segment (`.`, `..`); include a letter, \
                 digit, `_` or `-`"
            ),
        ),
        (
            JSON,
            dots("."),
            400,
            format!(
                "metadata operation 0: path `/{a}/metadata/.`: metadata key `.` is invalid: \
                 a key of dots only reads as a path segment (`.`, `..`); include a letter, \
                 digit, `_` or `-`"
            ),
        ),
    ];
    for (headers, body, status, message) in cases {
        let before = api.revision().await;
        let reply = api
            .send("PATCH", "/fleet/v1/machines", headers, &body)
            .await;
        assert_eq!(reply.status, status, "{headers:?} {body}: {}", reply.text());
        assert_eq!(reply.error(), message);
        assert_eq!(api.revision().await, before, "{body}: nothing is written");
    }
    assert!(api.registry.metadata_overrides().await.unwrap().is_empty());
    let reply = api.patch(good).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let page = api.get("/fleet/v1/machines").await.json();
    assert_eq!(
        page["machines"][0]["metadata"],
        json!({"disk": "ssd", "region": "us"})
    );
}

/// Sends `request` as it is on a fresh socket connection and returns the status line and
/// the rest of what came back.
async fn raw_exchange(api: &TestApi, request: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = UnixStream::connect(&api.socket).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(
        &format!("an answer to {request:?}"),
        Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (status, rest) = answer.split_once("\r\n").unwrap_or((&answer, ""));
    (status.to_owned(), rest.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_1_1_request_without_one_valid_host_is_refused_with_400() {
    let api = start().await;
    let refused = [
        (
            "GET /fleet/v1/units HTTP/1.1\r\nConnection: close\r\n\r\n",
            "an HTTP/1.1 request needs a Host header (RFC 7230 §5.4)",
        ),
        (
            "GET /fleet/v1/units HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            "the request has 2 Host headers; send one (RFC 7230 §5.4)",
        ),
        (
            "GET /fleet/v1/units HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
            "Host header `a b` is not of the form host[:port] (RFC 7230 §5.4)",
        ),
    ];
    for (request, message) in refused {
        let (status, rest) = raw_exchange(&api, request).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{request:?}: {rest}");
        assert!(
            rest.contains(&format!(r#""message":"{message}""#)),
            "{request:?}: {rest}"
        );
    }
    // A PUT without Host changes nothing.
    let before = api.revision().await;
    let body = json!({"desiredState": "loaded", "options": sleeper(1)}).to_string();
    let put = format!(
        "PUT /fleet/v1/units/a.service HTTP/1.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, rest) = raw_exchange(&api, &put).await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{rest}");
    assert_eq!(api.revision().await, before, "nothing is written");
    for request in [
        "GET /fleet/v1/units HTTP/1.1\r\nHost: flotte\r\nConnection: close\r\n\r\n",
        "GET /fleet/v1/units HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        // HTTP/1.0 has no Host requirement.
        "GET /fleet/v1/units HTTP/1.0\r\n\r\n",
    ] {
        let (status, rest) = raw_exchange(&api, request).await;
        assert!(status.ends_with(" 200 OK"), "{request:?}: {status} {rest}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drains_are_set_and_lifted_for_registered_machines_and_shown_with_them() {
    let api = start().await;
    let lease = api.lease().await;
    register(&api, &machine('a'), "", &lease).await;
    let a = machine('a').to_string();
    let path = format!("/flotte/v1/drains/{a}");
    assert_eq!(api.send("PUT", &path, &[], "").await.status, 201);
    assert_eq!(
        api.send("PUT", &path, &[], "").await.status,
        204,
        "already drained"
    );
    let page = api.get("/fleet/v1/machines").await.json();
    assert_eq!(page["machines"][0]["drained"], true);
    assert_eq!(api.delete(&path).await.status, 204);
    let page = api.get("/fleet/v1/machines").await.json();
    assert_eq!(
        page["machines"][0].get("drained"),
        None,
        "left out when false"
    );

    let before = api.revision().await;
    let cases = [
        (
            "DELETE",
            a.clone(),
            404,
            format!("machine {a} is not drained"),
        ),
        (
            "PUT",
            machine('b').to_string(),
            404,
            format!("machine {} is not registered in the cluster", machine('b')),
        ),
        (
            "PUT",
            "..".to_owned(),
            400,
            "invalid machine in the path: machine ID `..` is not 32 lowercase hexadecimal \
             characters"
                .to_owned(),
        ),
        (
            "GET",
            a.clone(),
            405,
            format!(
                "method GET is not allowed on `/flotte/v1/drains/{a}`: only PUT and DELETE \
                 are supported on this resource"
            ),
        ),
    ];
    for (method, id, status, message) in cases {
        let reply = api
            .send(method, &format!("/flotte/v1/drains/{id}"), &[], "")
            .await;
        assert_eq!(reply.status, status, "{method} {id}: {}", reply.text());
        assert_eq!(reply.error(), message);
    }
    assert_eq!(
        api.revision().await,
        before,
        "refused requests write nothing"
    );
}
