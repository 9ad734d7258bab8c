//! flottectl's HTTP client of flotted's API (also flotted's, forwarding a status or journal
//! request to another machine): fleet v1 under `/fleet/v1` and flotte's additions under
//! `/flotte/v1`, over a unix socket, TCP or TLS, with the paths and query
//! parameters `wire` builds. Answers about units come back as `view`'s typed values. Every
//! request opens its own connection: a CLI makes few requests, and a fresh connection never
//! meets one the server closed meanwhile.

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::endpoint::Endpoint;
use super::tls::{self, TlsError, TlsFiles};
use super::view::{self, ViewError};
use crate::unit::{DesiredState, UnitName};
use crate::wire::{self, CHANGES_MAX_WAIT, FLEET_V1, Resource, param};

/// How to reach the API and how long a request may take.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub endpoint: Endpoint,
    pub request_timeout: Duration,
    pub tls: TlsFiles,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {endpoint} failed: {source}")]
    Handshake {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("{endpoint} did not answer {method} {path} within {after:?} (see --request-timeout)")]
    Timeout {
        endpoint: String,
        method: Method,
        path: String,
        after: Duration,
    },
    #[error("{method} {path} on {endpoint} failed: {source}")]
    Http {
        endpoint: String,
        method: Method,
        path: String,
        source: hyper::Error,
    },
    #[error("{method} {path}: the server answered {status}: {message}")]
    Api {
        method: Method,
        path: String,
        status: StatusCode,
        message: String,
    },
    #[error("{method} {path}: the answer is not what fleet's API sends: {why}")]
    Decode {
        method: Method,
        path: String,
        why: String,
    },
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("the endpoint host `{0}` is not a valid TLS server name")]
    ServerName(String),
}

enum Transport {
    Unix(PathBuf),
    Tcp {
        authority: String,
    },
    Tls {
        authority: String,
        name: ServerName<'static>,
        connector: TlsConnector,
    },
}

pub struct Client {
    endpoint: String,
    transport: Transport,
    timeout: Duration,
    /// A flotted forwarding a status or journal request to the machine that answers it
    /// (`wire::FORWARDED_HEADER`).
    forwarded: bool,
}

/// A request's answer: its status and body, read whole.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Client {
    pub fn new(settings: &ClientSettings) -> Result<Client, ClientError> {
        let transport = match &settings.endpoint {
            Endpoint::Unix(path) => Transport::Unix(path.clone()),
            Endpoint::Http(hp) => Transport::Tcp {
                authority: hp.authority(),
            },
            Endpoint::Https(hp) => Transport::Tls {
                authority: hp.authority(),
                name: ServerName::try_from(hp.host.clone())
                    .map_err(|_| ClientError::ServerName(hp.host.clone()))?,
                connector: tls::connector(&settings.tls)?,
            },
        };
        Ok(Client {
            endpoint: settings.endpoint.to_string(),
            transport,
            timeout: settings.request_timeout,
            forwarded: false,
        })
    }

    /// Marks every request as forwarded by a flotted (`wire::FORWARDED_HEADER`): the server
    /// answers for its own machine, or refuses, and never forwards it again.
    pub fn forwarded(mut self) -> Client {
        self.forwarded = true;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every machine, over all pages.
    pub async fn machines(&self) -> Result<Vec<wire::Machine>, ClientError> {
        let path = Resource::Machines.path(FLEET_V1);
        self.all_pages(&path, &[], |p: wire::MachinePage| {
            (p.machines, p.next_page_token)
        })
        .await
    }

    /// Every unit, over all pages.
    pub async fn units(&self) -> Result<Vec<view::Unit>, ClientError> {
        let path = Resource::Units.path(FLEET_V1);
        let units = self
            .all_pages(&path, &[], |p: wire::UnitPage| (p.units, p.next_page_token))
            .await?;
        typed(&path, units)
    }

    /// One unit, or `None` when the registry has none of that name.
    pub async fn unit(&self, name: &UnitName) -> Result<Option<view::Unit>, ClientError> {
        let path = unit_path(name);
        let answer = self.call(Method::GET, &path, None, Duration::ZERO).await?;
        match answer.status {
            StatusCode::OK => {
                let unit: wire::Unit = decode(Method::GET, &path, &answer.body)?;
                typed(&path, [unit]).map(|mut units| units.pop())
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(api_error(Method::GET, &path, &answer)),
        }
    }

    /// Creates or replaces a unit (its options) or changes its desired state (no options).
    pub async fn put_unit(&self, unit: &wire::Unit) -> Result<(), ClientError> {
        self.put_unit_at(unit, None).await
    }

    /// `put_unit`, refused (409) unless the unit is still at `revision` (0: there is none).
    pub async fn put_unit_at(
        &self,
        unit: &wire::Unit,
        revision: Option<i64>,
    ) -> Result<(), ClientError> {
        let params: Vec<(&str, String)> = revision
            .map(|r| (param::MOD_REVISION, r.to_string()))
            .into_iter()
            .collect();
        let name_path = wire::with_query(&Resource::Units.item(FLEET_V1, &unit.name), &params);
        let body = json(unit);
        let answer = self
            .call(Method::PUT, &name_path, Some(body), Duration::ZERO)
            .await?;
        match answer.status {
            StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(()),
            _ => Err(api_error(Method::PUT, &name_path, &answer)),
        }
    }

    pub async fn set_desired(
        &self,
        name: &UnitName,
        desired: DesiredState,
    ) -> Result<(), ClientError> {
        self.put_unit(&wire::Unit {
            name: name.to_string(),
            desired_state: desired.to_string(),
            ..wire::Unit::default()
        })
        .await
    }

    /// Deletes a unit; `false` when there was none of that name.
    pub async fn delete_unit(&self, name: &UnitName) -> Result<bool, ClientError> {
        let path = unit_path(name);
        let answer = self
            .call(Method::DELETE, &path, None, Duration::ZERO)
            .await?;
        match answer.status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(api_error(Method::DELETE, &path, &answer)),
        }
    }

    /// A dry run of an apply (`POST /flotte/v1/plan`): where the proposed units would be
    /// placed, and the units as stored with their revisions.
    pub async fn plan(&self, request: &wire::PlanRequest) -> Result<wire::PlanAnswer, ClientError> {
        let path = wire::PLAN;
        let answer = self
            .call(Method::POST, path, Some(json(request)), Duration::ZERO)
            .await?;
        match answer.status {
            StatusCode::OK => decode(Method::POST, path, &answer.body),
            _ => Err(api_error(Method::POST, path, &answer)),
        }
    }

    /// Records a set's units if it is still at `write.mod_revision`; the set as written.
    pub async fn put_set(
        &self,
        name: &str,
        write: &wire::SetWrite,
    ) -> Result<wire::SetAnswer, ClientError> {
        let path = wire::set_path(name);
        let answer = self
            .call(Method::PUT, &path, Some(json(write)), Duration::ZERO)
            .await?;
        match answer.status {
            StatusCode::OK => decode(Method::PUT, &path, &answer.body),
            _ => Err(api_error(Method::PUT, &path, &answer)),
        }
    }

    /// A declared service's instances once its index moved past `index`, or after `wait`
    /// (the catalog's blocking query).
    pub async fn service_instances(
        &self,
        name: &str,
        index: i64,
        wait: Duration,
    ) -> Result<wire::ServiceInstances, ClientError> {
        let path = wire::blocking_query(&wire::catalog_path(name), index, wait);
        let answer = self.call(Method::GET, &path, None, wait).await?;
        match answer.status {
            StatusCode::OK => decode(Method::GET, &path, &answer.body),
            _ => Err(api_error(Method::GET, &path, &answer)),
        }
    }

    /// Drains a machine (flotte's `PUT /flotte/v1/drains/ID`); `false` when it already was.
    pub async fn drain(&self, machine: &str) -> Result<bool, ClientError> {
        let path = wire::drain_path(machine);
        let answer = self.call(Method::PUT, &path, None, Duration::ZERO).await?;
        match answer.status {
            StatusCode::CREATED => Ok(true),
            StatusCode::NO_CONTENT => Ok(false),
            _ => Err(api_error(Method::PUT, &path, &answer)),
        }
    }

    /// Undrains a machine; `false` when it was not drained.
    pub async fn undrain(&self, machine: &str) -> Result<bool, ClientError> {
        let path = wire::drain_path(machine);
        let answer = self
            .call(Method::DELETE, &path, None, Duration::ZERO)
            .await?;
        match answer.status {
            StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(api_error(Method::DELETE, &path, &answer)),
        }
    }

    /// Unit states, one per unit and machine; only `unit`'s when given.
    pub async fn unit_states(
        &self,
        unit: Option<&UnitName>,
    ) -> Result<Vec<view::UnitState>, ClientError> {
        let (path, states) = self.wire_states(unit).await?;
        typed(&path, states)
    }

    async fn wire_states(
        &self,
        unit: Option<&UnitName>,
    ) -> Result<(String, Vec<wire::UnitState>), ClientError> {
        let path = Resource::State.path(FLEET_V1);
        let filter: Vec<(&str, String)> = unit
            .map(|u| (param::UNIT_NAME, u.to_string()))
            .into_iter()
            .collect();
        let states = self
            .all_pages(&path, &filter, |p: wire::UnitStatePage| {
                (p.states, p.next_page_token)
            })
            .await?;
        Ok((path, states))
    }

    /// The cluster's revision once it is past `since`, or after `wait` without a change
    /// (flotte's long-poll; `wait` is capped at `wire::CHANGES_MAX_WAIT`, as the server would).
    pub async fn changes(&self, since: i64, wait: Duration) -> Result<i64, ClientError> {
        // Whole seconds on the wire; a wait below a second still waits one, never zero, so a
        // caller with little time left does not spin.
        let secs = wait
            .as_secs_f64()
            .ceil()
            .clamp(1.0, CHANGES_MAX_WAIT.as_secs_f64()) as u64;
        let path = wire::changes_path(since, Duration::from_secs(secs));
        let answer = self
            .call(Method::GET, &path, None, Duration::from_secs(secs))
            .await?;
        if answer.status != StatusCode::OK {
            return Err(api_error(Method::GET, &path, &answer));
        }
        decode::<wire::Changes>(Method::GET, &path, &answer.body).map(|c| c.revision)
    }

    async fn all_pages<P: DeserializeOwned, T>(
        &self,
        base: &str,
        query: &[(&str, String)],
        split: impl Fn(P) -> (Vec<T>, String),
    ) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let mut params: Vec<(&str, String)> = query.to_vec();
            if !token.is_empty() {
                params.push((param::NEXT_PAGE_TOKEN, token.clone()));
            }
            let path = wire::with_query(base, &params);
            let answer = self.call(Method::GET, &path, None, Duration::ZERO).await?;
            if answer.status != StatusCode::OK {
                return Err(api_error(Method::GET, &path, &answer));
            }
            let (page, next) = split(decode(Method::GET, &path, &answer.body)?);
            items.extend(page);
            if next.is_empty() {
                return Ok(items);
            }
            if next == token {
                return Err(ClientError::Decode {
                    method: Method::GET,
                    path,
                    why: "the server handed out the same page token twice".into(),
                });
            }
            token = next;
        }
    }

    /// One request on a fresh connection, bounded by the request timeout plus `extra` (the
    /// time a long-poll is allowed to hold the answer back).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: Duration,
    ) -> Result<Answer, ClientError> {
        let after = self.timeout + extra;
        match tokio::time::timeout(after, self.exchange(method.clone(), path, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Timeout {
                endpoint: self.endpoint.clone(),
                method,
                path: path.to_owned(),
                after,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let response = self.open(method.clone(), path, body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| self.http_error(&method, path, source))?
            .to_bytes();
        Ok(Answer { status, body })
    }

    fn http_error(&self, method: &Method, path: &str, source: hyper::Error) -> ClientError {
        ClientError::Http {
            endpoint: self.endpoint.clone(),
            method: method.clone(),
            path: path.to_owned(),
            source,
        }
    }

    /// A unit's status on the machines it is placed on (`machine` alone when given).
    pub async fn unit_status(
        &self,
        name: &UnitName,
        machine: Option<&str>,
    ) -> Result<wire::UnitStatus, ClientError> {
        let path = wire::unit_status_path(name.as_str(), machine);
        let answer = self.call(Method::GET, &path, None, Duration::ZERO).await?;
        if answer.status != StatusCode::OK {
            return Err(api_error(Method::GET, &path, &answer));
        }
        decode(Method::GET, &path, &answer.body)
    }

    /// A unit's journal as the API sends it: open once this returns (connecting and the
    /// answer's head bounded by the request timeout), its body read with `Journal::next`.
    pub async fn journal(
        &self,
        name: &UnitName,
        query: &wire::JournalQuery,
    ) -> Result<Journal, ClientError> {
        let path = wire::unit_journal_path(name.as_str(), query);
        let opened = async { self.open_stream(&path).await };
        let body = self.within_timeout(&path, opened).await?;
        Ok(Journal {
            body,
            path,
            endpoint: self.endpoint.clone(),
        })
    }

    /// Follows the cluster's events after `since` (from now without it): the stream is open
    /// once this returns, its `started` line read. Connecting and the answer's head are bounded
    /// by the request timeout; the events come as they happen.
    pub async fn events(&self, since: Option<i64>) -> Result<Events, ClientError> {
        let path = wire::events_path(since);
        let opened = async {
            let mut reader = EventReader {
                body: self.open_stream(&path).await?,
                buffer: Vec::new(),
                path: path.clone(),
                endpoint: self.endpoint.clone(),
            };
            match reader.next().await? {
                Some(wire::Event {
                    revision,
                    kind: wire::EventKind::Started,
                }) => Ok((reader, revision)),
                other => Err(ClientError::Decode {
                    method: Method::GET,
                    path: path.clone(),
                    why: format!("the stream began with {other:?}, not a started line"),
                }),
            }
        };
        let (reader, revision) = self.within_timeout(&path, opened).await?;
        Ok(Events { reader, revision })
    }

    /// GETs a streamed answer: its body once the head says 200, else the API's error.
    async fn open_stream(&self, path: &str) -> Result<Incoming, ClientError> {
        let response = self.open(Method::GET, path, None).await?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|source| self.http_error(&Method::GET, path, source))?
                .to_bytes();
            return Err(api_error(Method::GET, path, &Answer { status, body }));
        }
        Ok(response.into_body())
    }

    /// `opening` (a GET of `path`) bounded by the request timeout.
    async fn within_timeout<T>(
        &self,
        path: &str,
        opening: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.timeout, opening)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout {
                    endpoint: self.endpoint.clone(),
                    method: Method::GET,
                    path: path.to_owned(),
                    after: self.timeout,
                })
            })
    }

    /// Sends one request on a fresh connection and returns the answer's head; its body is
    /// read by the caller.
    async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let connect_error = |source| ClientError::Connect {
            endpoint: self.endpoint.clone(),
            source,
        };
        match &self.transport {
            Transport::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(connect_error)?;
                self.send(stream, "localhost", method, path, body).await
            }
            Transport::Tcp { authority } => {
                let stream = tokio::net::TcpStream::connect(authority.as_str())
                    .await
                    .map_err(connect_error)?;
                self.send(stream, authority, method, path, body).await
            }
            Transport::Tls {
                authority,
                name,
                connector,
            } => {
                let stream = tokio::net::TcpStream::connect(authority.as_str())
                    .await
                    .map_err(connect_error)?;
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|source| ClientError::Handshake {
                        endpoint: self.endpoint.clone(),
                        source,
                    })?;
                self.send(stream, authority, method, path, body).await
            }
        }
    }

    async fn send<S>(
        &self,
        stream: S,
        host: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<Incoming>, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http_error = |source| self.http_error(&method, path, source);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(http_error)?;
        // The connection task ends with the exchange: the sender is dropped below.
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if self.forwarded {
            request = request.header(wire::FORWARDED_HEADER, "1");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Decode {
                method: method.clone(),
                path: path.to_owned(),
                why: format!("cannot build the request: {e}"),
            })?;
        sender.send_request(request).await.map_err(http_error)
    }
}

/// An open event stream (`Client::events`): its lines, parsed.
pub struct EventReader {
    body: Incoming,
    buffer: Vec<u8>,
    path: String,
    endpoint: String,
}

/// An event stream and the revision its events follow.
pub struct Events {
    pub reader: EventReader,
    /// The `started` line's revision: events after it follow.
    pub revision: i64,
}

impl EventReader {
    /// The next line; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<wire::Event>, ClientError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| ClientError::Decode {
                        method: Method::GET,
                        path: self.path.clone(),
                        why: format!("an event line is no event: {e}"),
                    });
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(ClientError::Http {
                        endpoint: self.endpoint.clone(),
                        method: Method::GET,
                        path: self.path.clone(),
                        source,
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// An open journal (`Client::journal`): its body as it comes.
pub struct Journal {
    body: Incoming,
    path: String,
    endpoint: String,
}

impl Journal {
    /// The next piece of the body (whole lines or not); `None` once the server ended it.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(ClientError::Http {
                        endpoint: self.endpoint.clone(),
                        method: Method::GET,
                        path: self.path.clone(),
                        source,
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

fn unit_path(name: &UnitName) -> String {
    Resource::Units.item(FLEET_V1, name.as_str())
}

/// The typed views of a `GET path` answer's items; one fleet's API would not send fails it.
fn typed<W, V: TryFrom<W, Error = ViewError>>(
    path: &str,
    items: impl IntoIterator<Item = W>,
) -> Result<Vec<V>, ClientError> {
    items
        .into_iter()
        .map(V::try_from)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientError::Decode {
            method: Method::GET,
            path: path.to_owned(),
            why: e.to_string(),
        })
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("wire types always serialize")
}

fn decode<T: DeserializeOwned>(method: Method, path: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        method,
        path: path.to_owned(),
        why: e.to_string(),
    })
}

/// The server's `{"error":{"message"}}`, or as much of the body as makes sense without it.
fn api_error(method: Method, path: &str, answer: &Answer) -> ClientError {
    let message = match serde_json::from_slice::<wire::ErrorBody>(&answer.body) {
        Ok(e) => e.error.message,
        Err(_) => {
            let text = String::from_utf8_lossy(&answer.body);
            let text = text.trim();
            if text.is_empty() {
                "no error message".to_owned()
            } else {
                text.chars().take(200).collect()
            }
        }
    };
    ClientError::Api {
        method,
        path: path.to_owned(),
        status: answer.status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_carry_the_servers_message() {
        let answer = Answer {
            status: StatusCode::CONFLICT,
            body: Bytes::from_static(br#"{"error":{"code":409,"message":"unit does not exist and options field empty"}}"#),
        };
        assert_eq!(
            api_error(Method::PUT, "/fleet/v1/units/a.service", &answer).to_string(),
            "PUT /fleet/v1/units/a.service: the server answered 409 Conflict: unit does not exist and options field empty"
        );
        let answer = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: Bytes::new(),
        };
        assert_eq!(
            api_error(Method::GET, "/fleet/v1/units", &answer).to_string(),
            "GET /fleet/v1/units: the server answered 502 Bad Gateway: no error message"
        );
    }

    #[tokio::test]
    async fn a_connection_failure_names_the_endpoint_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("none.sock");
        let client = Client::new(&ClientSettings {
            endpoint: Endpoint::Unix(socket.clone()),
            request_timeout: Duration::from_secs(3),
            tls: TlsFiles::default(),
        })
        .unwrap();
        let e = client.units().await.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot connect to unix://{}: ", socket.display())),
            "{e}"
        );
        assert!(e.contains("No such file or directory"), "{e}");
    }
}
