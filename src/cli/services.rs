//! `services [PREFIX]`: what is announced under a prefix, as a table or JSON; with `--watch`,
//! one line per change until interrupted. Reads etcd directly, as `announce` writes it. As
//! text, the declared services' instances (`[X-Flotte-Service]`, registered by the agents)
//! follow in a table of their own (not with `--no-legend`, whose output scripts read as one
//! table); with `--declared`, only they are shown (also as JSON).

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use super::etcd::{EtcdArgs, host_settings};
use super::fields::{self, Fields, ServiceField, one_line};
use super::{CliError, Console, ListArgs, OutputFormat};
use crate::backoff::Backoff;
use crate::discovery;
use crate::registry::{InstanceRecord, Registry, Update};

#[derive(Debug, Clone, Args)]
pub struct ServicesArgs {
    /// Show the keys under this prefix
    #[arg(default_value = "/services/", value_parser = parse_prefix)]
    pub prefix: String,
    #[command(flatten)]
    pub list: ListArgs,
    /// Columns to print: key, value, ttl, machine, unit, hostname
    #[arg(long, default_value = fields::DEFAULT_SERVICE_FIELDS, value_parser = fields::parse_fields::<ServiceField>)]
    pub fields: Fields<ServiceField>,
    /// Instead of a table, print a line per key (`put KEY VALUE`), then one per change (`put`
    /// again, or `delete KEY`) until interrupted; with --output json, one object per line
    #[arg(long)]
    pub watch: bool,
    /// Show only the declared services' instances (`[X-Flotte-Service]`), with their health
    #[arg(long, conflicts_with = "watch")]
    pub declared: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

fn parse_prefix(text: &str) -> Result<String, String> {
    if text.starts_with('/') {
        Ok(text.to_owned())
    } else {
        Err(format!("prefix `{text}` must start with `/`"))
    }
}

pub(super) async fn run(console: &mut Console<'_>, args: &ServicesArgs) -> Result<(), CliError> {
    let host = host_settings(&args.etcd, console.err)?;
    let registry = Registry::connect(&host.etcd).await?;
    if args.watch {
        return watch(console, &registry, args).await;
    }
    let (instances, _) = registry.instances_at().await?;
    let instances: Vec<InstanceRecord> = instances.into_iter().map(|(_, r)| r).collect();
    if args.declared {
        let text = match args.list.output {
            OutputFormat::Text => instance_table(&instances, args.list.detail()),
            OutputFormat::Json => {
                let mut json = serde_json::to_string_pretty(&instances)
                    .expect("instance records always serialize");
                json.push('\n');
                json
            }
        };
        console.out.write_all(text.as_bytes())?;
        return Ok(());
    }
    let services = discovery::services(&registry, &args.prefix).await?;
    let listing = fields::services(&args.fields, &services, args.list.detail());
    let text = match args.list.output {
        OutputFormat::Text => listing.to_text(args.list.legend()),
        OutputFormat::Json => listing.to_json(),
    };
    console.out.write_all(text.as_bytes())?;
    // A second table only for a reader: `--no-legend` output, for scripts, is one table.
    if args.list.output == OutputFormat::Text && !args.list.no_legend && !instances.is_empty() {
        writeln!(console.out)?;
        console
            .out
            .write_all(instance_table(&instances, args.list.detail()).as_bytes())?;
    }
    Ok(())
}

/// The declared services' instances as a table, in etcd's order (service, machine, unit).
pub fn instance_table(instances: &[InstanceRecord], detail: fields::Detail) -> String {
    let mut rows = vec![
        [
            "SERVICE", "ADDRESS", "HEALTH", "MACHINE", "HOSTNAME", "UNIT", "TAGS",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in instances {
        let tags: Vec<&str> = r.tags.iter().map(|t| t.as_str()).collect();
        rows.push(vec![
            r.service.to_string(),
            format!("{}:{}", r.address, r.port),
            r.health.as_str().to_owned(),
            fields::machine_id(r.machine.as_str(), detail),
            one_line(&r.hostname),
            r.unit.to_string(),
            if tags.is_empty() {
                "-".to_owned()
            } else {
                tags.join(",")
            },
        ]);
    }
    super::table::render(&rows)
}

/// Follows the prefix until SIGINT or SIGTERM. A failed watch is resumed with backoff where it
/// stood (or listed again, and the difference printed), saying so on stderr.
async fn watch(
    console: &mut Console<'_>,
    registry: &Registry,
    args: &ServicesArgs,
) -> Result<(), CliError> {
    let mut term = signal(SignalKind::terminate()).map_err(CliError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Signals)?;
    let mut watch = registry.watch_services(&args.prefix);
    let mut mirror = Mirror::default();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let update = tokio::select! {
            update = watch.next() => update,
            _ = term.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        };
        match update {
            Ok(update) => {
                backoff.reset();
                for change in mirror.apply(update) {
                    writeln!(console.out, "{}", change.line(args.list.output))?;
                }
                console.out.flush()?;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                writeln!(
                    console.err,
                    "flottectl: {e}; watching again in {:.1} s",
                    delay.as_secs_f64()
                )?;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = term.recv() => return Ok(()),
                    _ = interrupt.recv() => return Ok(()),
                }
            }
        }
    }
}

/// One change of `--watch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Change {
    Put { key: String, value: String },
    Delete { key: String },
}

impl Change {
    /// `put<TAB>KEY<TAB>VALUE` or `delete<TAB>KEY`, control characters escaped; or a JSON
    /// object on one line: `{"event":"put","key":...,"value":...}`.
    pub fn line(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => serde_json::to_string(self).expect("changes always serialize"),
            OutputFormat::Text => match self {
                Change::Put { key, value } => {
                    format!("put\t{}\t{}", one_line(key), one_line(value))
                }
                Change::Delete { key } => format!("delete\t{}", one_line(key)),
            },
        }
    }
}

/// What the watch has shown so far, so that a fresh list (at the start, and after etcd
/// compacted the history a resumed watch needed) prints only what changed.
#[derive(Debug, Default)]
pub struct Mirror {
    known: BTreeMap<String, String>,
}

impl Mirror {
    pub fn apply(&mut self, update: Update<String, String>) -> Vec<Change> {
        match update {
            Update::Reset(items) => {
                let fresh: BTreeMap<String, String> = items.into_iter().collect();
                let mut changes: Vec<Change> = self
                    .known
                    .keys()
                    .filter(|k| !fresh.contains_key(*k))
                    .map(|key| Change::Delete { key: key.clone() })
                    .collect();
                changes.extend(
                    fresh
                        .iter()
                        .filter(|(k, v)| self.known.get(*k) != Some(v))
                        .map(|(key, value)| Change::Put {
                            key: key.clone(),
                            value: value.clone(),
                        }),
                );
                self.known = fresh;
                changes
            }
            Update::Changes(changes) => changes
                .into_iter()
                .filter_map(|(key, value)| match value {
                    Some(value) => {
                        self.known.insert(key.clone(), value.clone());
                        Some(Change::Put { key, value })
                    }
                    // A deletion of a key never shown (one a reset already dropped) is no news.
                    None => self.known.remove(&key).map(|_| Change::Delete { key }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_a_table_of_their_own_with_health() {
        use crate::machine::MachineId;
        use crate::registry::Health;
        use crate::unit::{ServiceName, UnitName};
        let record = |n: u8, health, tags: &[&str]| InstanceRecord {
            service: ServiceName::new("web").unwrap(),
            machine: MachineId::new(&char::from(b'a' + n).to_string().repeat(32)).unwrap(),
            hostname: format!("host-{n}"),
            address: format!("127.0.1.{n}"),
            port: 8000 + u16::from(n),
            tags: tags.iter().map(|t| ServiceName::new(t).unwrap()).collect(),
            unit: UnitName::new(&format!("web@{n}.service")).unwrap(),
            health,
        };
        let table = instance_table(
            &[
                record(1, Health::Passing, &["v2", "blue"]),
                record(2, Health::Critical, &[]),
            ],
            fields::Detail::Short,
        );
        assert_eq!(
            table,
            "SERVICE\tADDRESS\t\tHEALTH\t\tMACHINE\t\tHOSTNAME\tUNIT\t\tTAGS\n\
             web\t127.0.1.1:8001\tpassing\t\tbbbbbbbb...\thost-1\t\tweb@1.service\tv2,blue\n\
             web\t127.0.1.2:8002\tcritical\tcccccccc...\thost-2\t\tweb@2.service\t-\n"
        );
    }

    fn put(key: &str, value: &str) -> Change {
        Change::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn delete(key: &str) -> Change {
        Change::Delete { key: key.into() }
    }

    fn reset(items: &[(&str, &str)]) -> Update<String, String> {
        Update::Reset(
            items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_watch_shows_what_is_there_then_each_change() {
        let mut mirror = Mirror::default();
        assert_eq!(
            mirror.apply(reset(&[("/s/a", "1"), ("/s/b", "2")])),
            [put("/s/a", "1"), put("/s/b", "2")]
        );
        let changes = Update::Changes(vec![
            ("/s/a".to_string(), None),
            ("/s/c".to_string(), Some("3".to_string())),
            ("/s/never-seen".to_string(), None),
        ]);
        assert_eq!(mirror.apply(changes), [delete("/s/a"), put("/s/c", "3")]);
    }

    #[test]
    fn a_fresh_list_after_compaction_shows_only_the_difference() {
        let mut mirror = Mirror::default();
        mirror.apply(reset(&[("/s/a", "1"), ("/s/b", "2"), ("/s/c", "3")]));
        assert_eq!(
            mirror.apply(reset(&[("/s/a", "1"), ("/s/b", "20"), ("/s/d", "4")])),
            [delete("/s/c"), put("/s/b", "20"), put("/s/d", "4")]
        );
        assert_eq!(
            mirror.apply(reset(&[("/s/a", "1"), ("/s/b", "20"), ("/s/d", "4")])),
            []
        );
    }

    #[test]
    fn change_lines_are_tab_separated_or_json_with_control_characters_escaped() {
        let value = "{\"host\": \"host-1\",\n\"port\": 8080}";
        assert_eq!(
            put("/s/web", value).line(OutputFormat::Text),
            "put\t/s/web\t{\"host\": \"host-1\",\\n\"port\": 8080}"
        );
        assert_eq!(delete("/s/web").line(OutputFormat::Text), "delete\t/s/web");
        assert_eq!(
            put("/s/web", value).line(OutputFormat::Json),
            r#"{"event":"put","key":"/s/web","value":"{\"host\": \"host-1\",\n\"port\": 8080}"}"#
        );
        assert_eq!(
            delete("/s/web").line(OutputFormat::Json),
            r#"{"event":"delete","key":"/s/web"}"#
        );
    }
}
