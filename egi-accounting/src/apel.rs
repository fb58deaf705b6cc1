//! apel (in progress)
