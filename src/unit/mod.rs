//! The unit-file model: names, the options list, content hashes, `[X-Fleet]` requirements,
//! `[X-Flotte-Service]` declarations and template instances. No I/O.

mod desired;
mod file;
mod name;
mod requirements;
mod service;
mod specifier;

pub use desired::{DesiredState, StateError, Target};
pub use file::{
    Flaw, HashError, MAX_FILE_SIZE, OptionError, OptionField, OptionProblem, ParseError,
    ParseProblem, ParsedUnit, UnitFile, UnitHash, UnitOption,
};
pub use name::{NameError, NameProblem, UnitName, UnitType};
pub use requirements::{
    Checked, CompareOp, ConflictPattern, MachineIdPattern, MetadataCondition, Rejected,
    RequirementError, RequirementWarning, Requirements, conflict_between,
};
pub use service::{
    Check, DEFAULT_CHECK_INTERVAL, SERVICE_SECTION, ServiceDeclaration, ServiceError, ServiceName,
    ServiceNameError,
};
