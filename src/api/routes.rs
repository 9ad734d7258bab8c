//! The path table: fleet v1 under `/fleet/v1` and `/v1-alpha`, flotte's additions under
//! `/flotte/v1`, and the gate every request passes first.

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, SERVER};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::registry::{Contact, Registry};
use crate::wire::{self, FLEET_PREFIXES, Resource};

use super::backend::{LocalMachine, Peers};
use super::request::check_host;
use super::{
    ApiError, catalog, changes, discovery_doc, drains, events, journal, leader, machines, plan,
    services, sets, states, status, ui, units,
};

/// What handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    pub registry: Registry,
    /// The latest revision of a unit-related change (`Registry::watch_changes`).
    pub changes: watch::Receiver<i64>,
    /// The declared services' instances, followed through one watch (`catalog::follow`).
    pub catalog: watch::Receiver<std::sync::Arc<crate::catalog::View>>,
    pub shutdown: CancellationToken,
    /// The unit and state lists last built, for the next pages of the same listing.
    pub unit_list: super::pagination::ListCache<crate::wire::Unit>,
    pub state_list: super::pagination::ListCache<crate::wire::UnitState>,
    /// This machine, whose units' status and journal this API reads itself.
    pub local: Option<LocalMachine>,
    /// How to forward status and journal requests to the other machines' APIs.
    pub peers: Peers,
}

/// What the gate knows of this machine: whether its agent is registered and, in flotted,
/// whether its lease renewals reach etcd (an API without an agent, in tests and benchmarks,
/// has no contact to report).
#[derive(Clone)]
pub struct Gate {
    pub registered: watch::Receiver<bool>,
    pub contact: Option<watch::Receiver<Contact>>,
}

impl From<watch::Receiver<bool>> for Gate {
    fn from(registered: watch::Receiver<bool>) -> Gate {
        Gate {
            registered,
            contact: None,
        }
    }
}

impl Gate {
    /// Why requests cannot be served now, if they cannot.
    fn refusal(&self) -> Option<ApiError> {
        if let Some(contact) = &self.contact {
            let c = *contact.borrow();
            if c.failing {
                return Some(ApiError::EtcdUnreachable(c.renewed.elapsed()));
            }
        }
        (!*self.registered.borrow()).then_some(ApiError::NotRegistered)
    }

    /// The answer of `GET /flotte/v1/etcd-contact`.
    fn contact(&self) -> wire::EtcdContact {
        let c = self.contact.as_ref().map(|c| *c.borrow());
        wire::EtcdContact {
            reaches_etcd: c.is_some_and(|c| !c.failing) && *self.registered.borrow(),
            silent_ms: c.map_or(0, |c| c.renewed.elapsed().as_millis() as u64),
        }
    }
}

pub fn router(api: Api, registered: impl Into<Gate>) -> Router {
    let gate_state: Gate = registered.into();
    let contact_gate = gate_state.clone();
    let mut router = Router::new();
    for prefix in FLEET_PREFIXES {
        router = router
            .route(
                &Resource::Machines.path(prefix),
                get(machines::list)
                    .patch(machines::patch)
                    .fallback(refuse("only GET and PATCH are supported on this resource")),
            )
            .route(
                &Resource::Units.path(prefix),
                get(units::list).fallback(refuse(ONLY_GET)),
            )
            .route(
                &Resource::Units.item_route(prefix),
                get(units::get)
                    .put(units::put)
                    .delete(units::delete)
                    .fallback(refuse(
                        "only GET, PUT and DELETE are supported on this resource",
                    )),
            )
            .route(
                &Resource::State.path(prefix),
                get(states::list).fallback(refuse(ONLY_GET)),
            )
            .route(
                &Resource::State.item_route(prefix),
                get(states::get).fallback(refuse(ONLY_GET)),
            )
            .route(
                &Resource::Discovery.path(prefix),
                get(discovery_doc::get).fallback(refuse(ONLY_GET)),
            )
            // As fleet: the API's root is no resource, whatever the method.
            .route(prefix, any(refuse(NO_METHOD)));
    }
    router
        .route(wire::CHANGES, get(changes::wait).fallback(refuse(ONLY_GET)))
        .route(wire::EVENTS, get(events::stream).fallback(refuse(ONLY_GET)))
        .route(
            &wire::unit_status_route(),
            get(status::get).fallback(refuse(ONLY_GET)),
        )
        .route(
            &wire::unit_journal_route(),
            get(journal::get).fallback(refuse(ONLY_GET)),
        )
        .route(
            &wire::drain_route(),
            put(drains::put)
                .delete(drains::delete)
                .fallback(refuse("only PUT and DELETE are supported on this resource")),
        )
        .route(wire::LEADER, get(leader::get).fallback(refuse(ONLY_GET)))
        .route(
            wire::PLAN,
            post(plan::post).fallback(refuse("only POST is supported on this resource")),
        )
        .route(
            &wire::set_route(),
            put(sets::put).fallback(refuse("only PUT is supported on this resource")),
        )
        .route(
            wire::SERVICES,
            get(services::list).fallback(refuse(ONLY_GET)),
        )
        .route(wire::CATALOG, get(catalog::list).fallback(refuse(ONLY_GET)))
        .route(
            &wire::catalog_route(),
            get(catalog::get).fallback(refuse(ONLY_GET)),
        )
        .merge(ui::routes())
        .route("/", any(refuse(NO_METHOD)))
        .fallback(|uri: Uri| async move { ApiError::NoRoute(uri.path().to_owned()) })
        .with_state(api)
        .layer(middleware::from_fn_with_state(gate_state, gate))
        .route(wire::METRICS, get(metrics).fallback(refuse(ONLY_GET)))
        .route(
            wire::ETCD_CONTACT,
            get(move || {
                let body = contact_gate.contact();
                async move { axum::Json(body) }
            })
            .fallback(refuse(ONLY_GET)),
        )
}

/// The routes before flotted reached etcd: a 503 for every request.
pub fn unavailable() -> Router {
    let (_, never_registered) = watch::channel(false);
    Router::new()
        .fallback(|| async { ApiError::NotRegistered })
        .layer(middleware::from_fn_with_state(
            Gate::from(never_registered),
            gate,
        ))
        .route(wire::METRICS, get(metrics).fallback(refuse(ONLY_GET)))
}

/// `GET /metrics`: flotted's Prometheus metrics, before the agent registered too (and
/// without the gate: a flotted that cannot reach etcd is the one to look at).
async fn metrics(headers: HeaderMap) -> Response {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::for_accept(accept);
    let text = crate::metrics::get().encode(format);
    ([(CONTENT_TYPE, format.content_type())], text).into_response()
}

const ONLY_GET: &str = "only GET is supported on this resource";
const NO_METHOD: &str = "this is no resource; see /fleet/v1/discovery";

/// A handler answering 405 with why.
fn refuse(
    allowed: &'static str,
) -> impl Fn(Method, Uri) -> std::future::Ready<ApiError> + Clone + Send + Sync + 'static {
    move |method: Method, uri: Uri| {
        std::future::ready(ApiError::MethodNotAllowed {
            method,
            path: uri.path().to_owned(),
            allowed,
        })
    }
}

/// Refuses a request with a missing or bad `Host` (400), then answers 503 until this
/// machine's agent registered: before that, the machine is not part of the cluster its API
/// would speak for. Marks every answer with flotted's version.
async fn gate(State(state): State<Gate>, request: Request, next: Next) -> Response {
    let refusal = state.refusal();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().to_string();
    let mut response = if let Err(e) = check_host(request.version(), request.headers()) {
        e.into_response()
    } else if let Some(refusal) = refusal {
        refusal.into_response()
    } else {
        next.run(request).await
    };
    response
        .headers_mut()
        .insert(SERVER, HeaderValue::from_static(SERVER_NAME));
    let code = response.status().as_u16();
    let labels = crate::metrics::RequestLabels {
        route,
        method,
        code,
    };
    crate::metrics::get()
        .api_requests
        .get_or_create(&labels)
        .inc();
    response
}

const SERVER_NAME: &str = concat!("flotted/", env!("CARGO_PKG_VERSION"));
