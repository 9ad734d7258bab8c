//! flotted's Prometheus metrics: the families the engine, agent, systemd adapter, registry and
//! API count into, in one process-wide registry, and its text exposition, which `GET /metrics`
//! serves on every API listener. Label values are closed sets (call and request kinds, states,
//! routes as declared), never unit names or keys, so that no family grows with the cluster.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The two text expositions Prometheus reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus's classic text format (0.0.4): what `curl` and `promtool check metrics` get.
    Text,
    /// OpenMetrics 1.0, for scrapers that ask for it (Prometheus does).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics only when named.
    pub fn for_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: &'static str,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route as declared (`/fleet/v1/units/{name}`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every family flotted exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_seconds: Histogram,
    pub placements: Counter,
    pub unplaceable: Gauge,
    pub leader: Gauge,
    pub units: Family<StateLabels, Gauge>,
    pub agent_actions: Family<ActionLabels, Counter>,
    pub systemd_seconds: Timings<CallLabels>,
    pub etcd_seconds: Timings<OpLabels>,
    pub etcd_errors: Family<OpLabels, Counter>,
    pub api_requests: Family<RequestLabels, Counter>,
    pub event_streams: Gauge,
    pub event_streams_lagged: Counter,
}

/// 1 ms to about 16 s: etcd and systemd answer in milliseconds, a stuck one in seconds.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flotte");
        let m = Metrics {
            reconciles: Counter::default(),
            reconcile_seconds: latency(),
            placements: Counter::default(),
            unplaceable: Gauge::default(),
            leader: Gauge::default(),
            units: Family::default(),
            agent_actions: Family::default(),
            systemd_seconds: Family::new_with_constructor(latency),
            etcd_seconds: Family::new_with_constructor(latency),
            etcd_errors: Family::default(),
            api_requests: Family::default(),
            event_streams: Gauge::default(),
            event_streams_lagged: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "engine_reconciles",
            "Reconcile passes of the engine while it leads",
            m.reconciles.clone(),
        );
        registry.register_with_unit(
            "engine_reconcile_duration",
            "How long a reconcile pass took, its writes to etcd included",
            Unit::Seconds,
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "engine_placements",
            "Placements the engine wrote (a unit placed or moved)",
            m.placements.clone(),
        );
        registry.register(
            "engine_unplaceable_units",
            "Units that should run but are placed nowhere, on the leading engine",
            m.unplaceable.clone(),
        );
        registry.register(
            "engine_leader",
            "1 while this machine's engine leads, else 0",
            m.leader.clone(),
        );
        registry.register(
            "engine_units",
            "Submitted units by desired state, on the leading engine",
            m.units.clone(),
        );
        registry.register(
            "agent_actions",
            "Actions the agent carried out on systemd and its units directory, by kind and result",
            m.agent_actions.clone(),
        );
        registry.register_with_unit(
            "systemd_call_duration",
            "How long systemd's manager took to answer a D-Bus call",
            Unit::Seconds,
            m.systemd_seconds.clone(),
        );
        registry.register_with_unit(
            "etcd_request_duration",
            "How long etcd took to answer a request (failed ones included)",
            Unit::Seconds,
            m.etcd_seconds.clone(),
        );
        registry.register(
            "etcd_request_errors",
            "etcd requests that failed or timed out",
            m.etcd_errors.clone(),
        );
        registry.register(
            "api_requests",
            "API requests answered, by route, method and status code",
            m.api_requests.clone(),
        );
        registry.register(
            "api_event_streams",
            "Event streams open now",
            m.event_streams.clone(),
        );
        registry.register(
            "api_event_streams_lagged",
            "Event streams ended because their client read too slowly",
            m.event_streams_lagged.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Every family, in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut text = String::new();
        match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)
            }
        }
        .expect("writing to a string cannot fail");
        text
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Counts one agent action of `kind` and its outcome.
pub fn agent_action(kind: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    get()
        .agent_actions
        .get_or_create(&ActionLabels { kind, result })
        .inc();
}

/// Counts agent actions of `kind` by their outcomes.
pub fn agent_actions<T, E>(kind: &'static str, results: &[Result<T, E>]) {
    for r in results {
        agent_action(kind, r.is_ok());
    }
}

/// Observes how long a systemd call takes, from now until the value is dropped (also when
/// the call's future is dropped before it finished).
#[must_use = "the call is timed until this is dropped"]
pub struct CallTimer {
    call: &'static str,
    started: Instant,
}

pub fn systemd_call(call: &'static str) -> CallTimer {
    CallTimer {
        call,
        started: Instant::now(),
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        get()
            .systemd_seconds
            .get_or_create(&CallLabels { call: self.call })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Records one etcd request of kind `op`: how long it took and whether it failed.
pub fn etcd_request(op: &'static str, started: Instant, ok: bool) {
    let m = get();
    let labels = OpLabels { op };
    m.etcd_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if !ok {
        m.etcd_errors.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_named_as_prometheus_wants_and_labelled_by_closed_sets() {
        agent_action("start", true);
        agent_actions::<(), ()>("stop", &[Ok(()), Err(())]);
        drop(systemd_call("StartUnit"));
        etcd_request("txn", Instant::now(), false);
        get()
            .api_requests
            .get_or_create(&RequestLabels {
                route: "/fleet/v1/units/{name}".into(),
                method: "PUT".into(),
                code: 204,
            })
            .inc();
        assert_eq!(Format::for_accept(None), Format::Text);
        assert_eq!(Format::for_accept(Some("*/*")), Format::Text);
        assert_eq!(
            Format::for_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        let text = get().encode(Format::Text);
        for line in [
            "# TYPE flotte_engine_reconciles_total counter",
            "# TYPE flotte_engine_reconcile_duration_seconds histogram",
            "flotte_agent_actions_total{kind=\"start\",result=\"ok\"} ",
            "flotte_engine_leader 0",
        ] {
            assert!(text.contains(line), "`{line}` missing from:\n{text}");
        }
        let text = get().encode(Format::OpenMetrics);
        for line in [
            "# TYPE flotte_engine_reconciles counter",
            "# TYPE flotte_engine_reconcile_duration_seconds histogram",
            "# UNIT flotte_engine_reconcile_duration_seconds seconds",
            "flotte_agent_actions_total{kind=\"start\",result=\"ok\"} ",
            "flotte_agent_actions_total{kind=\"stop\",result=\"error\"} ",
            "flotte_systemd_call_duration_seconds_count{call=\"StartUnit\"} ",
            "flotte_etcd_request_errors_total{op=\"txn\"} ",
            "flotte_api_requests_total{route=\"/fleet/v1/units/{name}\",method=\"PUT\",code=\"204\"} ",
            "flotte_engine_leader 0",
            "# EOF",
        ] {
            assert!(text.contains(line), "`{line}` missing from:\n{text}");
        }
    }
}
