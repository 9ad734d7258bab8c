//! Connecting to etcd: endpoints, TLS and credentials, and a first read under the prefix so
//! that refused credentials or permissions show at start-up.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};

use super::kv::timed;
use super::{Keys, Registry, RegistryError};

/// How to reach etcd. `Default` is flotted's defaults (its `etcd_*` settings, see `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Registry {
    /// Connects and checks that etcd answers.
    pub async fn connect(settings: &EtcdSettings) -> Result<Registry, RegistryError> {
        let keys = Keys::new(&settings.prefix)?;
        // HTTP/2 pings notice a dead connection within seconds, so watches and keep-alives
        // fail over instead of hanging on a half-open TCP connection.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            // A member without a leader (cut off from its cluster, or electing) answers "no
            // leader" at once instead of holding the request, and ends the watches and
            // keep-alive streams it serves when it loses its leader; the channel then moves on
            // to the next endpoint (`channel`).
            .with_require_leader(true);
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = tls_options(settings)? {
            options = options.with_tls(tls);
        }
        let endpoints = settings.endpoints.join(",");
        // etcd answers refused credentials or permissions with these codes; anything else
        // on connecting means it could not be reached (or spoke no TLS we accept).
        let failed = |e: etcd_client::Error| match &e {
            etcd_client::Error::GRpcStatus(status)
                if matches!(
                    status.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::PermissionDenied
                        | tonic::Code::Unauthenticated
                ) =>
            {
                RegistryError::Refused {
                    endpoints: endpoints.clone(),
                    prefix: keys.prefix().to_owned(),
                    cause: status.message().to_owned(),
                }
            }
            // etcd-client's error does not expose its gRPC status as a source.
            etcd_client::Error::GRpcStatus(status) => RegistryError::Unreachable {
                endpoints: endpoints.clone(),
                cause: root_cause(status),
            },
            other => RegistryError::Unreachable {
                endpoints: endpoints.clone(),
                cause: root_cause(other),
            },
        };
        let connect = async {
            let mut client = Client::connect_with_balanced_channel(
                &settings.endpoints,
                Some(options),
                super::channel::Pinned,
            )
            .await
            .map_err(failed)?;
            client.status().await.map_err(failed)?;
            // A read under the prefix: refused credentials or permissions show here, at
            // start-up, rather than on the first real request.
            let only_one_key = GetOptions::new()
                .with_prefix()
                .with_keys_only()
                .with_limit(1);
            client
                .get(keys.prefix(), Some(only_one_key))
                .await
                .map_err(failed)?;
            Ok(Registry {
                client,
                keys: keys.clone(),
            })
        };
        timed("connect", format!("connecting to {endpoints}"), connect).await?
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"): what a user can act
/// on, without the layers of gRPC and HTTP/2 wrapping above it.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

fn tls_options(settings: &EtcdSettings) -> Result<Option<TlsOptions>, RegistryError> {
    let read = |what: &str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| RegistryError::File {
            what: format!("{what} {}", path.display()),
            source,
        })
    };
    let uses_tls = settings.endpoints.iter().any(|e| e.starts_with("https://"));
    if !uses_tls && settings.ca_file.is_none() && settings.cert_file.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &settings.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read("etcd_cafile", ca)?));
    }
    match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("etcd_certfile", cert)?,
                read("etcd_keyfile", key)?,
            ));
        }
        (None, None) => {}
        _ => return Err(RegistryError::HalfIdentity),
    }
    Ok(Some(tls))
}
