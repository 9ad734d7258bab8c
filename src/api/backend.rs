//! What the API answers from: etcd (the registry), this machine's systemd and journal for the
//! units that run here, and the other machines' flotted for the units that run there (their
//! machine records publish their API's TCP address; the request goes to it with this API's
//! TLS settings).

use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::client::{Client, ClientError, ClientSettings};
use crate::cli::endpoint::{Endpoint, HostPort};
use crate::cli::tls::TlsFiles as ClientTls;
use crate::journal;
use crate::machine::MachineId;
use crate::registry::{MachineRecord, Registry};
use crate::systemd::Systemd;

use super::{ApiError, TlsFiles};

/// What the API serves from once flotted reached etcd (and systemd).
#[derive(Clone)]
pub struct Backend {
    pub registry: Registry,
    /// This machine; `None` for an API that runs no agent (tests, benchmarks), which forwards
    /// every status and journal request.
    pub local: Option<LocalMachine>,
}

impl From<Registry> for Backend {
    fn from(registry: Registry) -> Backend {
        Backend {
            registry,
            local: None,
        }
    }
}

/// This machine, for the requests it answers itself.
#[derive(Clone)]
pub struct LocalMachine {
    pub id: MachineId,
    pub hostname: String,
    pub systemd: Systemd,
    /// How journalctl finds this machine's units (from `systemd_bus`).
    pub journal: journal::Scope,
    /// This flotted's `placement_strategy`, which dry runs (`POST /flotte/v1/plan`) place by.
    pub strategy: crate::schedule::Strategy,
}

/// How this API reaches the others: over TLS when its own TCP listeners use TLS (a cluster's
/// machines are set up alike), trusting `api_client_cafile` (the cluster's CA; the system's
/// CAs without it) and presenting its own certificate, which a peer requiring client
/// certificates checks against the same CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    tls: Option<ClientTls>,
}

/// How long a forwarded request (or a forwarded journal's head) may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

impl Peers {
    pub fn new(tls: Option<&TlsFiles>) -> Peers {
        Peers {
            tls: tls.map(|t| ClientTls {
                ca: t.client_ca_file.clone(),
                cert: Some(t.cert_file.clone()),
                key: Some(t.key_file.clone()),
            }),
        }
    }

    /// A client of `machine`'s API, marking its requests as forwarded.
    pub fn client(&self, machine: &MachineRecord) -> Result<Client, ApiError> {
        let endpoint = endpoint(machine, self.tls.is_some())?;
        let settings = ClientSettings {
            endpoint,
            request_timeout: PEER_TIMEOUT,
            tls: self.tls.clone().unwrap_or_default(),
        };
        Client::new(&settings)
            .map(Client::forwarded)
            .map_err(|e| peer_error(machine, e))
    }
}

/// Where `machine`'s API is reached: its published TCP address, with the machine's address
/// in place of an unspecified one (`listen_tcp=0.0.0.0:8080` publishes `0.0.0.0:8080`).
pub fn endpoint(machine: &MachineRecord, tls: bool) -> Result<Endpoint, ApiError> {
    let no_address = || ApiError::NoPeerAddress {
        machine: machine.id.clone(),
        hostname: machine.hostname.clone(),
    };
    let published = machine.api.as_deref().ok_or_else(no_address)?;
    let bare = published
        .strip_prefix("http://")
        .or_else(|| published.strip_prefix("https://"))
        .unwrap_or(published);
    let addr: SocketAddr = bare
        .trim_end_matches('/')
        .parse()
        .map_err(|_| no_address())?;
    let host = if addr.ip().is_unspecified() {
        machine.ip.clone()
    } else {
        addr.ip().to_string()
    };
    let target = HostPort {
        host,
        port: addr.port(),
    };
    Ok(if tls {
        Endpoint::Https(target)
    } else {
        Endpoint::Http(target)
    })
}

/// A failed forward: the peer's own refusal keeps its status and message; anything else is
/// the peer's flotted being out of reach.
pub fn peer_error(machine: &MachineRecord, e: ClientError) -> ApiError {
    match e {
        ClientError::Api {
            status, message, ..
        } => ApiError::PeerRefused {
            hostname: machine.hostname.clone(),
            status,
            message,
        },
        other => ApiError::Peer {
            machine: machine.id.clone(),
            hostname: machine.hostname.clone(),
            why: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Metadata;

    fn record(api: Option<&str>) -> MachineRecord {
        MachineRecord {
            id: MachineId::new(&"c".repeat(32)).unwrap(),
            ip: "10.0.0.3".into(),
            metadata: Metadata::default(),
            version: "0.1.0".into(),
            api: api.map(str::to_owned),
            hostname: "host-3".into(),
            capacity: None,
        }
    }

    #[test]
    fn a_peer_is_reached_at_its_published_address_or_its_ip_for_an_unspecified_one() {
        for (api, tls, expected) in [
            (Some("10.0.0.3:8080"), false, Ok("http://10.0.0.3:8080")),
            (Some("10.0.0.3:8443"), true, Ok("https://10.0.0.3:8443")),
            (Some("0.0.0.0:8080"), false, Ok("http://10.0.0.3:8080")),
            (Some("[::]:8080"), false, Ok("http://10.0.0.3:8080")),
            (Some("[fd00::3]:8080"), false, Ok("http://[fd00::3]:8080")),
            (
                Some("http://127.0.0.1:4001"),
                false,
                Ok("http://127.0.0.1:4001"),
            ),
            (None, false, Err(())),
            (Some("somewhere"), false, Err(())),
        ] {
            let got = endpoint(&record(api), tls).map(|e| e.to_string());
            match expected {
                Ok(e) => assert_eq!(got.unwrap(), e, "{api:?}"),
                Err(()) => {
                    let e = got.unwrap_err().to_string();
                    assert!(e.contains("host-3") && e.contains("listen_tcp"), "{e}");
                }
            }
        }
    }

    #[test]
    fn peers_present_this_apis_certificate_and_trust_its_client_ca() {
        assert_eq!(Peers::new(None), Peers::default());
        let peers = Peers::new(Some(&TlsFiles {
            cert_file: "/etc/flotte/api.pem".into(),
            key_file: "/etc/flotte/api.key".into(),
            client_ca_file: Some("/etc/flotte/ca.pem".into()),
        }));
        assert_eq!(
            peers.tls,
            Some(ClientTls {
                ca: Some("/etc/flotte/ca.pem".into()),
                cert: Some("/etc/flotte/api.pem".into()),
                key: Some("/etc/flotte/api.key".into()),
            })
        );
    }
}
