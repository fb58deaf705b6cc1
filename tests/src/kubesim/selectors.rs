//! Label and field selectors, with the real server's syntax and errors.

use serde_json::Value;

use super::resources::{EVENTS, NAMESPACES, PODS, RESOURCES, SECRETS};
use super::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed label selector (terms ANDed).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<(String, Op)>);

fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 316
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(terms));
        }
        let bad = |t: &str| {
            ApiError::bad_request(format!(
                "unable to parse requirement: found '{t}', expected: identifier"
            ))
        };
        for raw in split_terms(s) {
            let t = raw.trim();
            if t.is_empty() {
                return Err(bad(t));
            }
            let term = if let Some(k) = t.strip_prefix('!') {
                (k.trim().to_owned(), Op::NotExists)
            } else if let Some((k, v)) = t.split_once(" notin ") {
                (
                    k.trim().to_owned(),
                    Op::NotIn(set_values(v).ok_or_else(|| bad(t))?),
                )
            } else if let Some((k, v)) = t.split_once(" in ") {
                (
                    k.trim().to_owned(),
                    Op::In(set_values(v).ok_or_else(|| bad(t))?),
                )
            } else if let Some((k, v)) = t.split_once("!=") {
                (k.trim().to_owned(), Op::Ne(v.trim().to_owned()))
            } else if let Some((k, v)) = t.split_once("==") {
                (k.trim().to_owned(), Op::Eq(v.trim().to_owned()))
            } else if let Some((k, v)) = t.split_once('=') {
                (k.trim().to_owned(), Op::Eq(v.trim().to_owned()))
            } else {
                (t.to_owned(), Op::Exists)
            };
            if !valid_key(&term.0) {
                return Err(bad(&term.0));
            }
            terms.push(term);
        }
        Ok(Self(terms))
    }

    /// Whether the object's labels match.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.0.iter().all(|(k, op)| {
            let v = labels.get(k).and_then(Value::as_str);
            match op {
                Op::Eq(x) => v == Some(x.as_str()),
                Op::Ne(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
            }
        })
    }
}

/// A parsed field selector (terms ANDed).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

fn supported(res: usize, field: &str) -> bool {
    if field == "metadata.name" || (field == "metadata.namespace" && RESOURCES[res].namespaced) {
        return true;
    }
    match res {
        PODS => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        EVENTS => {
            field.starts_with("involvedObject.")
                && matches!(
                    &field["involvedObject.".len()..],
                    "kind"
                        | "namespace"
                        | "name"
                        | "uid"
                        | "apiVersion"
                        | "resourceVersion"
                        | "fieldPath"
                )
                || matches!(field, "reason" | "reportingComponent" | "source" | "type")
        }
        SECRETS => field == "type",
        NAMESPACES => field == "status.phase",
        _ => false,
    }
}

fn field_value(obj: &Value, field: &str) -> String {
    let path = if field == "source" {
        "source.component"
    } else {
        field
    };
    let mut v = obj;
    for part in path.split('.') {
        v = &v[part];
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ if field == "spec.hostNetwork" => "false".to_owned(),
        _ => String::new(),
    }
}

impl FieldSelector {
    /// Parses `a=b,c!=d` for resource `res`; unsupported fields give the real 400.
    pub(crate) fn parse(res: usize, s: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(terms));
        }
        for t in s.split(',') {
            let t = t.trim();
            let (k, eq, v) = if let Some((k, v)) = t.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = t.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = t.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{t}'"
                )));
            };
            let k = k.trim();
            if !supported(res, k) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            terms.push((k.to_owned(), eq, v.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether the object matches.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(k, eq, v)| (field_value(obj, k) == *v) == *eq)
    }

    /// The name if the selector pins `metadata.name=x` (for a fast path).
    pub(crate) fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, eq, _)| k == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }
}

/// Both selectors of a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selectors {
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Selectors {
    /// Whether the object matches both.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(labels: &Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selectors() {
        let p = pod(&json!({"app": "x", "tier": "web"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&p);
        assert!(m(""));
        assert!(m("app=x"));
        assert!(m("app==x"));
        assert!(!m("app=y"));
        assert!(m("app!=y"));
        assert!(m("missing!=y"));
        assert!(m("app in (x, z)"));
        assert!(!m("app in (z)"));
        assert!(m("app notin (z)"));
        assert!(m("missing notin (z)"));
        assert!(m("tier"));
        assert!(!m("!tier"));
        assert!(m("!missing"));
        assert!(m("app=x,tier in (web,db),!missing"));
        assert!(!m("app=x,tier=db"));
        assert!(LabelSelector::parse("app in x").is_err());
        assert!(LabelSelector::parse("a,,b").is_err());
        assert!(LabelSelector::parse("bad key=x").is_err());
    }

    #[test]
    fn field_selectors() {
        let p = pod(&json!({}));
        let m = |s: &str| FieldSelector::parse(PODS, s).unwrap().matches(&p);
        assert!(m("metadata.name=p"));
        assert!(!m("metadata.name!=p"));
        assert!(m(
            "metadata.namespace=ns,spec.nodeName=n1,status.phase=Running"
        ));
        assert!(m("status.phase!=Pending"));
        assert!(m("spec.hostNetwork=false"));
        let e = FieldSelector::parse(PODS, "spec.foo=x").unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "field label not supported: spec.foo");
        assert!(FieldSelector::parse(SECRETS, "type=Opaque").is_ok());
        assert!(FieldSelector::parse(SECRETS, "status.phase=x").is_err());
        let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "uid": "u"}, "source": {"component": "kubelet"}});
        let f = FieldSelector::parse(
            EVENTS,
            "involvedObject.kind=Pod,involvedObject.uid=u,source=kubelet",
        )
        .unwrap();
        assert!(f.matches(&ev));
        assert_eq!(
            FieldSelector::parse(PODS, "metadata.name=p")
                .unwrap()
                .pinned_name(),
            Some("p")
        );
    }
}
