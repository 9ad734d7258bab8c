//! The pure scheduler: where each unit should run, and why a unit cannot be placed. No I/O.
