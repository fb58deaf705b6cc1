//! `Status` bodies as kube-apiserver sends them, name validation, and small helpers.

use serde_json::{Value, json};

use super::resources::{NameRule, Res};

/// An API error: the HTTP code and the `Status` body the real server sends for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code (404, 409, ...).
    pub code: u16,
    /// `reason` of the Status (`NotFound`, `AlreadyExists`, `Conflict`, ...).
    pub reason: &'static str,
    /// `message` of the Status.
    pub message: String,
    /// `details` of the Status, if any.
    pub details: Option<Value>,
}

/// One `details.causes` entry of an `Invalid` error.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    pub(crate) reason: &'static str,
    pub(crate) field: String,
    /// Without the field prefix, e.g. `Invalid value: "x": ...`.
    pub(crate) message: String,
}

impl Cause {
    pub(crate) fn invalid(field: &str, value: &str, detail: &str) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.to_owned(),
            message: format!("Invalid value: {}: {detail}", Value::from(value)),
        }
    }

    pub(crate) fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.to_owned(),
            message: format!("Forbidden: {detail}"),
        }
    }

    pub(crate) fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            reason: "FieldValueRequired",
            field: field.to_owned(),
            message,
        }
    }
}

fn details(res: &Res, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": res.plural});
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

impl ApiError {
    /// 404 `pods "x" not found`.
    pub(crate) fn not_found(res: &Res, name: &str) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", res.qualified()),
            details: Some(details(res, name)),
        }
    }

    /// 409 `pods "x" already exists`.
    pub(crate) fn already_exists(res: &Res, name: &str) -> Self {
        Self {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", res.qualified()),
            details: Some(details(res, name)),
        }
    }

    /// 409 Conflict `Operation cannot be fulfilled on pods "x": <why>`.
    pub(crate) fn conflict(res: &Res, name: &str, why: &str) -> Self {
        Self {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                res.qualified()
            ),
            details: Some(details(res, name)),
        }
    }

    /// 409 Conflict for a stale `metadata.resourceVersion`.
    pub(crate) fn modified(res: &Res, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 403 `pods "x" is forbidden: <why>`.
    pub(crate) fn forbidden(res: &Res, name: &str, why: &str) -> Self {
        Self {
            code: 403,
            reason: "Forbidden",
            message: format!("{} \"{name}\" is forbidden: {why}", res.qualified()),
            details: Some(details(res, name)),
        }
    }

    /// 422 Invalid `Pod "x" is invalid: <causes>`.
    pub(crate) fn invalid(res: &Res, name: &str, causes: &[Cause]) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut d = json!({
            "name": name,
            "kind": res.kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        });
        if !res.group.is_empty() {
            d["group"] = json!(res.group);
        }
        let kind = if res.group.is_empty() {
            res.kind.to_owned()
        } else {
            format!("{}.{}", res.kind, res.group)
        };
        Self {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} \"{name}\" is invalid: {joined}"),
            details: Some(d),
        }
    }

    /// 400 BadRequest.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    /// 405 MethodNotAllowed.
    pub(crate) fn method_not_allowed() -> Self {
        Self {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".to_owned(),
            details: None,
        }
    }

    /// 404 for an unknown path.
    pub(crate) fn no_route() -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".to_owned(),
            details: Some(json!({})),
        }
    }

    /// 503 while the server restarts.
    pub(crate) fn unavailable() -> Self {
        Self {
            code: 503,
            reason: "ServiceUnavailable",
            message: "the apiserver is restarting".to_owned(),
            details: None,
        }
    }

    /// 415 for a patch type that is not supported.
    pub(crate) fn unsupported_media(content_type: &str) -> Self {
        Self {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type})"
            ),
            details: None,
        }
    }

    /// 410 Expired `too old resource version: N (M)`.
    pub(crate) fn expired(asked: u64, oldest: u64) -> Self {
        Self {
            code: 410,
            reason: "Expired",
            message: format!("too old resource version: {asked} ({oldest})"),
            details: None,
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// A `Success` Status for a deletion.
pub(crate) fn success(res: &Res, name: &str, uid: &str) -> Value {
    let mut d = details(res, name);
    d["uid"] = json!(uid);
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The validation errors of an object name (empty when valid).
pub(crate) fn validate_name(rule: NameRule, name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                errors.push("must be no more than 253 characters".to_owned());
            }
            if !name.split('.').all(is_label) {
                errors.push(SUBDOMAIN_MSG.to_owned());
            }
        }
        NameRule::Label | NameRule::Dns1035 => {
            if name.len() > 63 {
                errors.push("must be no more than 63 characters".to_owned());
            }
            if rule == NameRule::Label && !is_label(name) {
                errors.push(LABEL_MSG.to_owned());
            }
            if rule == NameRule::Dns1035
                && !(is_label(name) && name.as_bytes()[0].is_ascii_lowercase())
            {
                errors.push(DNS1035_MSG.to_owned());
            }
        }
    }
    errors
}

/// The 422 for an invalid name, if it is invalid.
pub(crate) fn check_name(res: &Res, name: &str) -> Result<(), ApiError> {
    let errors = validate_name(res.name_rule, name);
    if errors.is_empty() {
        return Ok(());
    }
    let causes: Vec<Cause> = errors
        .iter()
        .map(|e| Cause::invalid("metadata.name", name, e))
        .collect();
    Err(ApiError::invalid(res, name, &causes))
}

/// Now as RFC 3339 with seconds (`Time`).
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A random version 4 UUID.
pub(crate) fn uuid() -> String {
    let n = fastrand::u128(..);
    let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `n` random hex digits.
pub(crate) fn hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
        .collect()
}

/// The 5 random characters `generateName` appends (the apiserver's alphabet).
pub(crate) fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Standard base64 (for `stringData`).
pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Bytes of a resource quantity (`10Gi`, `500M`, `1.5Gi`, `100m`), for comparisons.
pub(crate) fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::super::resources::{NAMESPACES, PODS, RESOURCES};
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name(NameRule::Subdomain, "jupyter-user.x").is_empty());
        assert!(!validate_name(NameRule::Subdomain, "Bad_Name").is_empty());
        assert!(!validate_name(NameRule::Subdomain, "-a").is_empty());
        assert!(!validate_name(NameRule::Subdomain, "a..b").is_empty());
        assert!(!validate_name(NameRule::Label, "a.b").is_empty());
        assert!(validate_name(NameRule::Label, "123-abc").is_empty());
        assert!(!validate_name(NameRule::Dns1035, "1abc").is_empty());
        assert!(!validate_name(NameRule::Label, &"a".repeat(64)).is_empty());
        assert!(validate_name(NameRule::Subdomain, &"a".repeat(253)).is_empty());
    }

    #[test]
    fn invalid_name_status() {
        let e = check_name(&RESOURCES[PODS], "Bad_Name").unwrap_err();
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["details"]["kind"], "Pod");
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueInvalid");
        let msg = s["message"].as_str().unwrap();
        assert!(msg.starts_with("Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{msg}");
        assert!(check_name(&RESOURCES[NAMESPACES], "ok-ns").is_ok());
    }

    #[test]
    fn status_bodies() {
        let s = ApiError::not_found(&RESOURCES[PODS], "x").to_status();
        assert_eq!(s["message"], "pods \"x\" not found");
        assert_eq!(s["details"], json!({"name": "x", "kind": "pods"}));
        let s = ApiError::already_exists(&RESOURCES[super::super::resources::STORAGECLASSES], "y")
            .to_status();
        assert_eq!(
            s["message"],
            "storageclasses.storage.k8s.io \"y\" already exists"
        );
        assert_eq!(s["details"]["group"], "storage.k8s.io");
        let s = ApiError::modified(&RESOURCES[PODS], "x").to_status();
        assert_eq!(s["code"], 409);
        assert_eq!(s["reason"], "Conflict");
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .ends_with("please apply your changes to the latest version and try again")
        );
        assert_eq!(
            ApiError::expired(3, 10).to_status()["message"],
            "too old resource version: 3 (10)"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi!"), "aGkh");
        assert_eq!(base64(b"h"), "aA==");
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("10G"), Some(1e10));
        assert!(parse_quantity("2Gi").unwrap() > parse_quantity("1500Mi").unwrap());
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("x"), None);
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(name_suffix().len(), 5);
    }
}
