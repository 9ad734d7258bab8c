//! `machine.env`: what units on this machine may read about it with `EnvironmentFile=`.

use super::AgentConfig;

/// `machine.env` beside the units directory: this machine's ID, address, hostname and
/// metadata for units to read with `EnvironmentFile=` (as CoreOS units read
/// `/etc/environment`), e.g. to bind a server to `${FLOTTE_HOST_IP}`. The `FLOTTE_HOST_`
/// prefix keeps these apart from flotted's `FLOTTE_<SETTING>` variables. `ETCDCTL_API` and
/// `ETCDCTL_ENDPOINTS` point a unit's plain `etcdctl` at the cluster's etcd (a sidekick that
/// announces its service without flottectl); etcd's TLS files and credentials are not passed
/// on, as they are flotted's secrets, not every unit's.
pub(super) fn machine_env(config: &AgentConfig) -> String {
    let mut text = format!(
        "FLOTTE_HOST_ID={}\nFLOTTE_HOST_IP={}\nFLOTTE_HOST_NAME={}\nFLOTTE_HOST_METADATA={}\n",
        config.machine_id, config.public_ip, config.hostname, config.metadata
    );
    for (key, value) in config.metadata.iter() {
        // Metadata keys may hold `.` and `-`, which environment variable names may not.
        let name: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        text.push_str(&format!("FLOTTE_HOST_METADATA_{name}={value}\n"));
    }
    text.push_str(&format!(
        "ETCDCTL_API=3\nETCDCTL_ENDPOINTS={}\n",
        config.etcd_endpoints.join(",")
    ));
    text
}

pub(super) fn write_machine_env(config: &AgentConfig) -> std::io::Result<()> {
    let path = config.units_directory.with_file_name("machine.env");
    let text = machine_env(config);
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::machine::{MachineId, Metadata};

    #[test]
    fn machine_env_names_the_machine_its_metadata_and_the_clusters_etcd_for_etcdctl() {
        let config = AgentConfig {
            machine_id: MachineId::new("0123456789abcdef0123456789abcdef").unwrap(),
            public_ip: "10.0.0.2".into(),
            metadata: Metadata::parse_list("region=eu,rack.no=7").unwrap(),
            hostname: "node-2".into(),
            version: "0.1.0".into(),
            api: None,
            ttl: Duration::from_secs(10),
            units_directory: "/run/flotte/units".into(),
            etcd_endpoints: vec!["http://10.0.0.1:2379".into(), "http://10.0.0.3:2379".into()],
            resync: Duration::from_secs(300),
            running: Default::default(),
            fence_policy: super::super::FencePolicy::Peers,
            contact: std::sync::Arc::new(
                tokio::sync::watch::channel(crate::registry::Contact::now()).0,
            ),
            capacity: Default::default(),
        };
        assert_eq!(
            machine_env(&config),
            "FLOTTE_HOST_ID=0123456789abcdef0123456789abcdef\n\
             FLOTTE_HOST_IP=10.0.0.2\n\
             FLOTTE_HOST_NAME=node-2\n\
             FLOTTE_HOST_METADATA=rack.no=7,region=eu\n\
             FLOTTE_HOST_METADATA_RACK_NO=7\n\
             FLOTTE_HOST_METADATA_REGION=eu\n\
             ETCDCTL_API=3\n\
             ETCDCTL_ENDPOINTS=http://10.0.0.1:2379,http://10.0.0.3:2379\n"
        );
    }
}
