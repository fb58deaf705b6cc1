//! The library half of the example binaries: [`gateway`], a notebook gateway composed only
//! from the public APIs of egi-checkin, egi-spawner, egi-monitoring and egi-accounting, split
//! into one module per concern so a team can start from it.

pub mod gateway;

/// An error and its sources, `: `-separated, for one message (the crates' messages never
/// repeat their sources). Every example binary reports its errors this way.
pub fn with_sources(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
