//! [`Warning`]: what configuration loading ignored, guessed or overrode, returned as values.
//!
//! Loading is pure and runs before logging is set up (the log level is itself a setting), so
//! it logs nothing: the caller logs [`crate::config::Config::warnings`] once logging is up.

use std::fmt;
use std::path::PathBuf;

/// Something in the configuration that was ignored, guessed or overridden. The run goes on;
/// the caller reports it (the `accounting` binary logs each one once logging is up).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// The configuration file does not exist: the environment and the defaults are used
    /// alone, as the Python tool does (its `ConfigParser.read` skips missing files).
    MissingFile {
        /// The file that was asked for.
        path: PathBuf,
    },
    /// `verbose` (or `VERBOSE`) is not a boolean: taken as false, as the Python tool does.
    VerboseNotBoolean {
        /// The value given.
        value: String,
    },
    /// `notebooks_db` is set but this tool keeps no SQLite copy.
    NotebooksDbIgnored,
    /// `[prometheus] password` without `user`: no basic authentication is sent.
    PasswordWithoutUser,
    /// A `[VO]` value is listed under two VOs: the later line of the section wins, as in the
    /// Python tool (whose mapping dictionary is filled in file order).
    VoValueTwice {
        /// The pod value listed twice.
        value: String,
        /// The VO of the earlier line, overridden.
        dropped: String,
        /// The VO of the later line, used.
        kept: String,
    },
    /// A key this tool does not know in a section it reads (a typo, or a key of another
    /// version): ignored.
    UnknownKey {
        /// The section.
        section: String,
        /// The key, lowercased.
        key: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::MissingFile { path } => write!(
                f,
                "configuration file {} does not exist: using the environment and defaults only",
                path.display()
            ),
            Warning::VerboseNotBoolean { value } => {
                write!(f, "verbose = {value:?} is not a boolean: taken as false")
            }
            Warning::NotebooksDbIgnored => {
                f.write_str("notebooks_db is set but this tool keeps no SQLite copy: ignored")
            }
            Warning::PasswordWithoutUser => f.write_str(
                "[prometheus] password is set without user: no basic authentication is sent",
            ),
            Warning::VoValueTwice {
                value,
                dropped,
                kept,
            } => write!(
                f,
                "[VO] section: {value:?} is listed under both {dropped:?} and {kept:?}: \
                 {kept:?} (the later line) is used, as the Python tool does"
            ),
            Warning::UnknownKey { section, key } => {
                write!(f, "[{section}] {key}: unknown key, ignored")
            }
        }
    }
}
