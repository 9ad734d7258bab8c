//! The unit-file model: names, the options list, content hashes, `[X-Fleet]` requirements and
//! template instances. No I/O.

mod name;
mod requirements;
mod state;

pub use name::{NameError, NameProblem, UnitName, UnitType};
pub use requirements::{
    CompareOp, ConflictPattern, MachineIdPattern, MetadataCondition, Requirements, conflict_between,
};
pub use state::DesiredState;
