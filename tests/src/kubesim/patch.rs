//! JSON merge patch (RFC 7386), strategic merge patch (for the fields notebook pods use) and
//! JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of a list field in strategic merge patch, if it merges by key.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "secrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Lists of scalars merged as sets.
fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Applies a strategic merge patch: a merge patch whose lists of containers, volumes, env,
/// volume mounts, ports, conditions and owner references merge by their key, with the
/// `$patch: replace|delete`, `$deleteFromPrimitiveList/` directives; `$setElementOrder/` and
/// `$retainKeys` are accepted and ignored.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(o) if o.get("$patch").and_then(Value::as_str) == Some("delete") => {
                t.remove(k);
            }
            Value::Array(items) => {
                if let Some(key) = merge_key(k, items) {
                    let cur = t
                        .entry(k.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    merge_list(cur, items, key)?;
                } else if merges_primitives(k) {
                    let cur = t
                        .entry(k.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if !cur.is_array() {
                        *cur = Value::Array(Vec::new());
                    }
                    let list = cur.as_array_mut().expect("array");
                    for i in items {
                        if !list.contains(i) {
                            list.push(i.clone());
                        }
                    }
                } else {
                    t.insert(k.clone(), strip_directives(v));
                }
            }
            Value::Object(_) => {
                strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v)?;
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(cur: &mut Value, items: &[Value], key: &str) -> Result<(), String> {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *cur = Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .map(strip_directives)
                .collect(),
        );
        return Ok(());
    }
    if !cur.is_array() {
        *cur = Value::Array(Vec::new());
    }
    let list = cur.as_array_mut().expect("array");
    for item in items {
        let Some(kv) = item.get(key) else {
            return Err(format!(
                "map: {item} does not contain declared merge key: {key}"
            ));
        };
        let pos = list.iter().position(|x| x.get(key) == Some(kv));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            list.retain(|x| x.get(key) != Some(kv));
            continue;
        }
        match pos {
            Some(i) => strategic_merge(&mut list[i], item)?,
            None => list.push(strip_directives(item)),
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(Vec<String>, String), String> {
    if path.is_empty() {
        return Err("cannot operate on the document root".to_owned());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer: {path}"));
    };
    let mut parts: Vec<String> = rest.split('/').map(unescape).collect();
    let last = parts.pop().unwrap_or_default();
    Ok((parts, last))
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    parts: &[String],
    path: &str,
) -> Result<&'a mut Value, String> {
    let mut v = doc;
    for p in parts {
        v = match v {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: \"{path}\""))?;
    }
    Ok(v)
}

fn get_pointer(doc: &Value, path: &str) -> Result<Value, String> {
    doc.pointer(path)
        .cloned()
        .ok_or_else(|| format!("doc is missing path: \"{path}\""))
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parts, last) = split_pointer(path)?;
    match parent_mut(doc, &parts, path)? {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| format!("doc is missing key: {path}")),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(format!("unable to remove nonexistent index: {path}")),
        },
        _ => Err(format!("doc is missing path: \"{path}\"")),
    }
}

fn add_at(doc: &mut Value, path: &str, value: Value, replace: bool) -> Result<(), String> {
    let (parts, last) = split_pointer(path)?;
    match parent_mut(doc, &parts, path)? {
        Value::Object(m) => {
            if replace && !m.contains_key(&last) {
                return Err(format!("doc is missing key: {path}"));
            }
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" && !replace {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index: {path}"))?;
            if replace {
                let slot = a
                    .get_mut(i)
                    .ok_or_else(|| format!("unable to replace nonexistent index: {path}"))?;
                *slot = value;
            } else if i <= a.len() {
                a.insert(i, value);
            } else {
                return Err(format!("unable to access invalid index: {i}"));
            }
            Ok(())
        }
        _ => Err(format!("doc is missing path: \"{path}\"")),
    }
}

/// Applies an RFC 6902 JSON patch.
pub(crate) fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let Value::Array(ops) = ops else {
        return Err("json patch must be an array of operations".to_owned());
    };
    for op in ops {
        let path = op["path"].as_str().ok_or("missing path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("missing value for {path}"))
        };
        match op["op"].as_str().unwrap_or("") {
            "add" => add_at(doc, path, value()?, false)?,
            "replace" => add_at(doc, path, value()?, true)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "test" => {
                if get_pointer(doc, path)? != value()? {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "move" => {
                let from = op["from"].as_str().ok_or("missing from")?;
                let v = remove_at(doc, from)?;
                add_at(doc, path, v, false)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("missing from")?;
                let v = get_pointer(doc, from)?;
                add_at(doc, path, v, false)?;
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut t,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            t,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
        // RFC 7386 appendix examples.
        let mut t = json!({"a": [{"b": "c"}]});
        merge_patch(&mut t, &json!({"a": [1]}));
        assert_eq!(t, json!({"a": [1]}));
        let mut t = json!(["a", "b"]);
        merge_patch(&mut t, &json!({"a": "b"}));
        assert_eq!(t, json!({"a": "b"}));
    }

    #[test]
    fn strategic() {
        let mut pod = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]}, "spec": {"containers": [
            {"name": "notebook", "image": "old", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "volumeMounts": [{"name": "home", "mountPath": "/home"}], "args": ["a", "b"]},
            {"name": "side", "image": "s"}
        ]}});
        let patch = json!({
            "metadata": {"labels": {"b": "2"}, "finalizers": ["y"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "notebook"}, {"name": "side"}],
                "containers": [
                    {"name": "notebook", "image": "new", "env": [{"name": "B", "value": "3"}, {"name": "A", "$patch": "delete"}, {"name": "C", "value": "4"}],
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}], "args": ["c"]},
                    {"name": "side", "$patch": "delete"}
                ]
            }
        });
        strategic_merge(&mut pod, &patch).unwrap();
        assert_eq!(pod["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(pod["metadata"]["finalizers"], json!(["x", "y"]));
        let c = &pod["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 1);
        assert_eq!(c[0]["image"], "new");
        assert_eq!(
            c[0]["env"],
            json!([{"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(c[0]["volumeMounts"].as_array().unwrap().len(), 2);
        assert_eq!(c[0]["args"], json!(["c"]));
        assert!(pod["spec"].get("$setElementOrder/containers").is_none());

        let mut svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        strategic_merge(
            &mut svc,
            &json!({"spec": {"ports": [{"port": 443, "name": "https"}]}}),
        )
        .unwrap();
        assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 2);
        let mut m = json!({"metadata": {"finalizers": ["a", "b"]}, "x": {"y": 1}});
        strategic_merge(&mut m, &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}, "x": {"$patch": "delete"}})).unwrap();
        assert_eq!(m, json!({"metadata": {"finalizers": ["b"]}}));
        let mut r = json!({"spec": {"volumes": [{"name": "a"}]}});
        strategic_merge(
            &mut r,
            &json!({"spec": {"volumes": [{"name": "b"}, {"$patch": "replace"}]}}),
        )
        .unwrap();
        assert_eq!(r["spec"]["volumes"], json!([{"name": "b"}]));
        assert!(strategic_merge(&mut r, &json!({"spec": {"volumes": [{"x": 1}]}})).is_err());
    }

    #[test]
    fn json_patches() {
        let mut d = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 2, 3]});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
                {"op": "remove", "path": "/l/0"},
                {"op": "add", "path": "/l/-", "value": 4},
                {"op": "test", "path": "/l/0", "value": 2},
                {"op": "copy", "from": "/l/0", "path": "/c"},
                {"op": "move", "from": "/c", "path": "/m"}
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"metadata": {"labels": {"a": "x", "b/c": "2"}}, "l": [2, 3, 4], "m": 2})
        );
        assert!(json_patch(&mut d, &json!([{"op": "test", "path": "/m", "value": 3}])).is_err());
        assert!(
            json_patch(
                &mut d,
                &json!([{"op": "replace", "path": "/nope", "value": 3}])
            )
            .is_err()
        );
        assert!(json_patch(&mut d, &json!([{"op": "remove", "path": "/l/9"}])).is_err());
    }
}
