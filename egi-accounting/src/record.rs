//! record (in progress)
