//! The etcd key layout, in one place: every key flotte reads or writes is built and parsed here.
//!
//! ```text
//! <prefix>machines/<machine>            machine record           agent, under its lease
//! <prefix>metadata/<machine>/<key>      metadata override        API
//! <prefix>drains/<machine>              drain mark               API (no lease: outlives agents)
//! <prefix>units/<unit>                  content hash + desired   API
//! <prefix>content/<hash>                options list or text     API; engine collects garbage
//! <prefix>schedule/<machine>/<unit>     hash + target + global   engine, fenced
//! <prefix>placement/<unit>              machines                 engine, same transaction
//! <prefix>reasons/<unit>                why it is not placed     engine
//! <prefix>states/<unit>/<machine>       systemd state            agent, under its lease
//! <prefix>election/engine               engine election          etcd's election API
//! <prefix>announcers/<lease>            who announced a service  `flottectl announce`, its lease
//! <prefix>sets/<set>                   units an apply created   API (`flottectl apply --set`)
//! <prefix>instances/<service>/<machine>/<unit>
//!                                       a declared service's     agent, under its lease
//!                                       instance and its health
//! ```

use super::instances::InstanceId;
use crate::machine::MachineId;
use crate::unit::{ServiceName, UnitHash, UnitName};

/// Key builder and parser for one key prefix (`/flotte/` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("etcd key prefix `{0}` must start and end with `/`")]
pub struct PrefixError(pub String);

impl Keys {
    pub fn new(prefix: &str) -> Result<Keys, PrefixError> {
        if prefix.starts_with('/') && prefix.ends_with('/') && !prefix.contains("//") {
            Ok(Keys {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(PrefixError(prefix.to_owned()))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn machines(&self) -> String {
        format!("{}machines/", self.prefix)
    }

    pub fn machine(&self, id: &MachineId) -> String {
        format!("{}{id}", self.machines())
    }

    pub fn metadata(&self) -> String {
        format!("{}metadata/", self.prefix)
    }

    pub fn metadata_key(&self, id: &MachineId, key: &str) -> String {
        format!("{}{id}/{key}", self.metadata())
    }

    pub fn drains(&self) -> String {
        format!("{}drains/", self.prefix)
    }

    pub fn drain(&self, id: &MachineId) -> String {
        format!("{}{id}", self.drains())
    }

    pub fn units(&self) -> String {
        format!("{}units/", self.prefix)
    }

    pub fn unit(&self, name: &UnitName) -> String {
        format!("{}{name}", self.units())
    }

    pub fn set(&self, name: &super::SetName) -> String {
        format!("{}sets/{name}", self.prefix)
    }

    pub fn contents(&self) -> String {
        format!("{}content/", self.prefix)
    }

    pub fn content(&self, hash: &UnitHash) -> String {
        format!("{}{hash}", self.contents())
    }

    pub fn schedules(&self) -> String {
        format!("{}schedule/", self.prefix)
    }

    /// Everything placed on one machine: what its agent watches.
    pub fn schedule_of(&self, machine: &MachineId) -> String {
        format!("{}{machine}/", self.schedules())
    }

    pub fn schedule(&self, machine: &MachineId, unit: &UnitName) -> String {
        format!("{}{unit}", self.schedule_of(machine))
    }

    pub fn placements(&self) -> String {
        format!("{}placement/", self.prefix)
    }

    pub fn placement(&self, unit: &UnitName) -> String {
        format!("{}{unit}", self.placements())
    }

    pub fn reasons(&self) -> String {
        format!("{}reasons/", self.prefix)
    }

    pub fn reason(&self, unit: &UnitName) -> String {
        format!("{}{unit}", self.reasons())
    }

    pub fn states(&self) -> String {
        format!("{}states/", self.prefix)
    }

    pub fn states_of(&self, unit: &UnitName) -> String {
        format!("{}{unit}/", self.states())
    }

    pub fn state(&self, unit: &UnitName, machine: &MachineId) -> String {
        format!("{}{machine}", self.states_of(unit))
    }

    /// Who announced the service keys under a lease (`flottectl announce`).
    pub fn announcer(&self, lease: i64) -> String {
        format!("{}announcers/{lease:x}", self.prefix)
    }

    pub fn instances(&self) -> String {
        format!("{}instances/", self.prefix)
    }

    pub fn instance(&self, id: &InstanceId) -> String {
        format!(
            "{}{}/{}/{}",
            self.instances(),
            id.service,
            id.machine,
            id.unit
        )
    }

    pub fn election(&self) -> String {
        format!("{}election/engine", self.prefix)
    }

    /// Where etcd's election API keeps the candidates of `election()`: one key per
    /// campaigning lease (`<election>/<lease>`); the oldest leads.
    pub fn election_candidates(&self) -> String {
        format!("{}/", self.election())
    }

    pub fn is_election_candidate(&self, key: &[u8]) -> bool {
        Self::rest(key, &self.election_candidates()).is_some_and(|lease| !lease.is_empty())
    }

    fn rest<'k>(key: &'k [u8], prefix: &str) -> Option<&'k str> {
        std::str::from_utf8(key).ok()?.strip_prefix(prefix)
    }

    pub fn parse_machine(&self, key: &[u8]) -> Option<MachineId> {
        MachineId::new(Self::rest(key, &self.machines())?).ok()
    }

    pub fn parse_drain(&self, key: &[u8]) -> Option<MachineId> {
        MachineId::new(Self::rest(key, &self.drains())?).ok()
    }

    pub fn parse_metadata(&self, key: &[u8]) -> Option<(MachineId, String)> {
        let (id, k) = Self::rest(key, &self.metadata())?.split_once('/')?;
        crate::machine::validate_key(k).ok()?;
        Some((MachineId::new(id).ok()?, k.to_owned()))
    }

    pub fn parse_unit(&self, key: &[u8]) -> Option<UnitName> {
        UnitName::new(Self::rest(key, &self.units())?).ok()
    }

    pub fn parse_content(&self, key: &[u8]) -> Option<UnitHash> {
        Self::rest(key, &self.contents())?.parse().ok()
    }

    pub fn parse_schedule(&self, key: &[u8]) -> Option<(MachineId, UnitName)> {
        let (m, u) = Self::rest(key, &self.schedules())?.split_once('/')?;
        Some((MachineId::new(m).ok()?, UnitName::new(u).ok()?))
    }

    pub fn parse_placement(&self, key: &[u8]) -> Option<UnitName> {
        UnitName::new(Self::rest(key, &self.placements())?).ok()
    }

    pub fn parse_reason(&self, key: &[u8]) -> Option<UnitName> {
        UnitName::new(Self::rest(key, &self.reasons())?).ok()
    }

    pub fn parse_instance(&self, key: &[u8]) -> Option<InstanceId> {
        let mut parts = Self::rest(key, &self.instances())?.splitn(3, '/');
        Some(InstanceId {
            service: ServiceName::new(parts.next()?).ok()?,
            machine: MachineId::new(parts.next()?).ok()?,
            unit: UnitName::new(parts.next()?).ok()?,
        })
    }

    pub fn parse_state(&self, key: &[u8]) -> Option<(UnitName, MachineId)> {
        let (u, m) = Self::rest(key, &self.states())?.split_once('/')?;
        Some((UnitName::new(u).ok()?, MachineId::new(m).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> MachineId {
        MachineId::new(&c.to_string().repeat(32)).unwrap()
    }

    #[test]
    fn keys_are_built_and_parsed_back() {
        let k = Keys::new("/flotte/").unwrap();
        let m = id('a');
        let u = UnitName::new("web@1.service").unwrap();
        assert_eq!(k.machine(&m), format!("/flotte/machines/{m}"));
        assert_eq!(k.parse_machine(k.machine(&m).as_bytes()), Some(m.clone()));
        assert_eq!(
            k.schedule(&m, &u),
            format!("/flotte/schedule/{m}/web@1.service")
        );
        assert_eq!(
            k.parse_schedule(k.schedule(&m, &u).as_bytes()),
            Some((m.clone(), u.clone()))
        );
        assert_eq!(
            k.parse_state(k.state(&u, &m).as_bytes()),
            Some((u.clone(), m.clone()))
        );
        assert_eq!(k.parse_unit(k.unit(&u).as_bytes()), Some(u.clone()));
        assert_eq!(
            k.parse_placement(k.placement(&u).as_bytes()),
            Some(u.clone())
        );
        assert_eq!(k.parse_reason(k.reason(&u).as_bytes()), Some(u.clone()));
        assert_eq!(
            k.parse_metadata(k.metadata_key(&m, "disk").as_bytes()),
            Some((m.clone(), "disk".to_owned()))
        );
        assert_eq!(k.drain(&m), format!("/flotte/drains/{m}"));
        assert_eq!(k.parse_drain(k.drain(&m).as_bytes()), Some(m.clone()));
        assert_eq!(k.parse_drain(b"/flotte/drains/nope"), None);
        let h: UnitHash = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        assert_eq!(k.parse_content(k.content(&h).as_bytes()), Some(h));
        assert!(k.is_election_candidate(b"/flotte/election/engine/694d7a2b1c3e4f05"));
        assert!(!k.is_election_candidate(b"/flotte/election/engine/"));
        assert!(!k.is_election_candidate(b"/flotte/election/engine"));
        let i = InstanceId {
            service: ServiceName::new("web").unwrap(),
            machine: m.clone(),
            unit: u.clone(),
        };
        assert_eq!(
            k.instance(&i),
            format!("/flotte/instances/web/{m}/web@1.service")
        );
        assert_eq!(k.parse_instance(k.instance(&i).as_bytes()), Some(i));
        for bad in [
            format!("/flotte/instances/Web/{m}/web@1.service"),
            format!("/flotte/instances/web/{m}/"),
            format!("/flotte/instances/web/{m}/a/b.service"),
            "/flotte/instances/web/nope/web.service".to_owned(),
        ] {
            assert_eq!(k.parse_instance(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn foreign_or_malformed_keys_parse_to_nothing() {
        let k = Keys::new("/flotte/").unwrap();
        let cases: &[&[u8]] = &[
            b"/other/machines/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"/flotte/machines/not-an-id",
            b"/flotte/units/../etc.service",
            b"/flotte/units/\xff.service",
            b"/flotte/schedule/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"/flotte/states/web.service/",
        ];
        for key in cases {
            assert!(k.parse_machine(key).is_none());
            assert!(k.parse_unit(key).is_none());
            assert!(k.parse_schedule(key).is_none());
            assert!(k.parse_state(key).is_none());
        }
    }

    #[test]
    fn prefixes_must_be_absolute_directories() {
        assert!(Keys::new("/flotte/").is_ok());
        assert!(Keys::new("/a/b/").is_ok());
        for bad in ["flotte/", "/flotte", "", "/a//b/"] {
            assert_eq!(
                Keys::new(bad).unwrap_err().to_string(),
                format!("etcd key prefix `{bad}` must start and end with `/`")
            );
        }
    }
}
