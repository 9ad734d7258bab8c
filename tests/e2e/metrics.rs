//! `GET /metrics` of a real flotted on a one-host cluster: valid for Prometheus's own
//! `promtool check metrics` (Debian's `prometheus` package, which `packaging/run-tests`
//! installs), and its counters move when a unit is submitted and started; and a real
//! Prometheus, from the same package, scraping a flotted's TCP listener.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use flotte::unit::DesiredState::Launched;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// `GET /metrics` over the API socket: the content type and the text.
async fn scrape(socket: &Path) -> (String, String) {
    let response = http_get(
        tokio::net::UnixStream::connect(socket).await.unwrap(),
        "flotte",
        flotte::wire::METRICS,
    )
    .await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample written exactly `series` (`name{labels}`), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// Runs `promtool check metrics` on `text`: its exit status and what it said.
async fn promtool(text: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's prometheus package; packaging/run-tests installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_count_a_unit_started() {
    let t = cluster("metrics", &[("host-1", "")], &[]).await;
    let socket = t.cluster.socket(0).to_owned();
    let (_, before) = scrape(&socket).await;

    submit(
        &t.registry,
        "web.service",
        "[Service]\nExecStart=/bin/sleep 100000\n",
        Launched,
    )
    .await;
    await_active(&t.registry, &["web.service"], DEADLINE).await;
    let (content_type, after) = scrape(&socket).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");

    let (ok, said) = promtool(&after).await;
    assert!(ok, "promtool check metrics failed: {said}\n{after}");
    eprintln!(
        "promtool check metrics: passed{}",
        if said.trim().is_empty() {
            String::new()
        } else {
            format!(" ({})", said.trim())
        }
    );

    eprintln!(
        "{}",
        after
            .lines()
            .filter(|l| {
                (l.contains("agent_actions") || l.starts_with("flotte_engine_"))
                    && !l.contains("_bucket")
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    let moved = |series: &str| {
        let b = sample(&before, series).unwrap_or(0.0);
        let a = sample(&after, series).unwrap_or_else(|| panic!("no {series} in:\n{after}"));
        assert!(a > b, "{series} did not move: {b} before, {a} after");
    };
    moved("flotte_agent_actions_total{kind=\"start\",result=\"ok\"}");
    moved("flotte_agent_actions_total{kind=\"load\",result=\"ok\"}");
    moved("flotte_engine_placements_total");
    moved("flotte_engine_reconciles_total");
    moved("flotte_systemd_call_duration_seconds_count{call=\"StartUnit\"}");
    moved("flotte_etcd_request_duration_seconds_count{op=\"txn\"}");
    assert_eq!(sample(&after, "flotte_engine_leader"), Some(1.0));
    assert_eq!(
        sample(&after, "flotte_engine_units{state=\"launched\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&after, "flotte_engine_unplaceable_units"), Some(0.0));
    assert!(
        !after.contains("web.service"),
        "no unit name is a label value:\n{after}"
    );
}

/// `GET path` on a TCP address: the status and the body.
async fn get_tcp(addr: &str, path: &str) -> (u16, String) {
    let response = http_get(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        addr,
        path,
    )
    .await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_flotted_and_reads_its_families() {
    let t = cluster(
        "prometheus",
        &[("host-1", "")],
        &[("listen_tcp", "127.0.0.1:0")],
    )
    .await;
    // The machine record publishes where the API listens over TCP.
    let target = t
        .registry
        .machines()
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| m.api)
        .expect("the machine publishes its API's TCP address");
    let target = target.trim_start_matches("http://").to_owned();

    let dir = tempfile::Builder::new()
        .prefix("flotte-prometheus-")
        .tempdir()
        .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: flotted\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let _prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus runs (Debian's prometheus package; packaging/run-tests installs it)");

    // Prometheus's own API says when it scraped flotted; asking it is the only way to know.
    let query = "/api/v1/query?query=flotte_engine_leader%7Bjob%3D%22flotted%22%7D";
    let mut last = String::new();
    let scraped = tokio::time::timeout(DEADLINE, async {
        loop {
            if tokio::net::TcpStream::connect(&web).await.is_ok() {
                let (status, body) = get_tcp(&web, query).await;
                if status == 200 && body.contains(r#","1"]"#) {
                    return body;
                }
                last = get_tcp(&web, "/api/v1/targets").await.1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let answer = scraped.unwrap_or_else(|_| {
        panic!(
            "prometheus did not scrape flotte_engine_leader 1 from {target} within {DEADLINE:?}; its targets: {last}; its log: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        )
    });
    eprintln!("prometheus: {answer}");
    let (_, targets) = get_tcp(&web, "/api/v1/targets").await;
    assert!(
        targets.contains(r#""health":"up""#) && targets.contains(r#""lastError":"""#),
        "{targets}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_while_etcd_is_still_out_of_reach() {
    let dir = tempfile::Builder::new()
        .prefix("flotte-metrics-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("flotte.sock");
    let listeners = flotte::api::Listeners::bind(&flotte::api::ApiSettings {
        socket: socket.clone(),
        tcp: vec![],
        tls: None,
    })
    .await
    .unwrap();
    let (_registered, ready) = tokio::sync::watch::channel(false);
    let shutdown = tokio_util::sync::CancellationToken::new();
    // No registry ever comes: every other request is a 503.
    let served = tokio::spawn(flotte::api::serve(
        listeners,
        std::future::pending::<Option<flotte::registry::Registry>>(),
        ready,
        shutdown.clone(),
    ));
    let (content_type, text) = scrape(&socket).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let (ok, said) = promtool(&text).await;
    assert!(ok, "promtool check metrics failed: {said}\n{text}");
    assert!(text.contains("# TYPE flotte_engine_leader gauge"), "{text}");
    shutdown.cancel();
    within("the server's shutdown", DEADLINE, served)
        .await
        .unwrap();
}
