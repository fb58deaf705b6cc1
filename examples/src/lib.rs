//! The library half of the example binaries: [`gateway`], a notebook gateway composed only
//! from the public APIs of egi-checkin, egi-spawner, egi-monitoring and egi-accounting, split
//! into one module per concern so a team can start from it.

pub mod gateway;
