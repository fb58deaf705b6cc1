//! Units of the size fields. APEL's schema has none; the portal reads cASO's.

use crate::error::{Error, Result};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// How byte counts are written into `Memory`, `Disk`, `NetworkInbound` and `NetworkOutbound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Units {
    /// cASO's units, what the EGI accounting portal expects (default): Memory in MB,
    /// Disk and network in GB, binary multiples as OpenStack flavors count them
    /// (1 MB = 2^20 bytes), rounded to the nearest integer.
    #[default]
    Caso,
    /// Plain bytes, as the Python notebooks tool sends them (for compatibility).
    Bytes,
}

impl Units {
    /// Parses `caso` (or `mb`) and `bytes`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "caso" | "mb" => Ok(Self::Caso),
            "bytes" | "b" => Ok(Self::Bytes),
            other => Err(Error::Config(format!(
                "units {other:?}: expected caso or bytes"
            ))),
        }
    }

    /// `Memory` from bytes.
    pub fn memory(self, bytes: f64) -> f64 {
        match self {
            Units::Caso => (bytes / MIB).round(),
            Units::Bytes => bytes.round(),
        }
    }

    /// `Disk`, `NetworkInbound` and `NetworkOutbound` from bytes.
    pub fn volume(self, bytes: f64) -> f64 {
        match self {
            Units::Caso => (bytes / GIB).round(),
            Units::Bytes => bytes.round(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caso_units_are_mb_and_gb() {
        assert_eq!(Units::Caso.memory(2.0 * MIB), 2.0);
        assert_eq!(Units::Caso.memory(1.5 * MIB), 2.0);
        assert_eq!(Units::Caso.memory(0.4 * MIB), 0.0);
        assert_eq!(Units::Caso.volume(3.0 * GIB + 1.0), 3.0);
        assert_eq!(Units::Bytes.memory(1234.4), 1234.0);
        assert_eq!(Units::Bytes.volume(5.0 * GIB), 5.0 * GIB);
    }

    #[test]
    fn units_parse() {
        assert_eq!(Units::parse("bytes").unwrap(), Units::Bytes);
        assert_eq!(Units::parse(" CASO ").unwrap(), Units::Caso);
        assert!(Units::parse("kb").is_err());
    }
}
