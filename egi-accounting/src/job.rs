//! job (in progress)
