//! A process pod's files: its directory, its volumes as real directories, Secret and
//! ConfigMap contents written the kubelet's way, and the environment of its containers.
//!
//! Layout under the process root (see [`super::SimOptions::process_root`]):
//! - `pods/<namespace>/<pod>-<uid>/`: the pod's directory (working directory of its
//!   processes unless a mount is at the home path), holding `<container>.log`;
//! - `pods/<namespace>/<pod>-<uid>/volumes/<volume>/`: `emptyDir`, `secret`, `configMap` and
//!   every other volume source (left empty);
//! - `claims/<namespace>/<claim>/`: a `persistentVolumeClaim` volume, kept across pods (a
//!   file written in the home of one pod is there for the next pod with the same claim).
//!
//! Secret and ConfigMap volumes are written like the kubelet's atomic writer: the files go to
//! a fresh `..<timestamp>` directory, the `..data` symlink is swapped to it with a rename, and
//! each top-level name is a symlink through `..data`; a change of the object rewrites them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Shared;
use super::resources::SECRETS;
use super::store::meta_str;

/// The prefix of the environment variable telling a process where a mount is.
pub(crate) const MOUNT_ENV_PREFIX: &str = "KUBESIM_MOUNT_";

/// `KUBESIM_MOUNT_<mount path upper-cased, each run of other characters than A-Z and 0-9 as
/// one `_`, trimmed>`: `/var/run/secrets/egi.eu` gives `KUBESIM_MOUNT_VAR_RUN_SECRETS_EGI_EU`.
pub fn mount_env_name(mount_path: &str) -> String {
    let mut out = String::new();
    for c in mount_path.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_end_matches('_');
    if trimmed.is_empty() {
        format!("{MOUNT_ENV_PREFIX}ROOT")
    } else {
        format!("{MOUNT_ENV_PREFIX}{trimmed}")
    }
}

/// A Secret or ConfigMap volume whose files follow the object.
#[derive(Debug, Clone)]
struct Projected {
    dir: PathBuf,
    secret: bool,
    object: String,
    items: Value,
    /// resourceVersion last written ("" when the object was missing).
    written: String,
}

/// A process pod's directories.
#[derive(Debug, Clone)]
pub(crate) struct PodDirs {
    pub(crate) pod_dir: PathBuf,
    /// Volume name -> real directory.
    volumes: BTreeMap<String, PathBuf>,
    projected: Vec<Projected>,
    ns: String,
}

fn store_object(sh: &Shared, secret: bool, ns: &str, name: &str) -> Option<Value> {
    let res = if secret {
        SECRETS
    } else {
        super::resources::lookup("configmaps")?
    };
    sh.lock().get(res, ns, name).map(|o| (**o).clone())
}

/// The files of a Secret (base64 `data`) or ConfigMap (`data`, `binaryData`), as `items`
/// select them.
fn files_of(obj: &Value, secret: bool, items: &Value) -> Vec<(String, Vec<u8>)> {
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (field, b64) in [("data", secret), ("binaryData", true)] {
        for (k, v) in obj[field].as_object().into_iter().flatten() {
            let s = v.as_str().unwrap_or("");
            let bytes = if b64 {
                decode_base64(s).unwrap_or_default()
            } else {
                s.as_bytes().to_vec()
            };
            all.insert(k.clone(), bytes);
        }
    }
    match items.as_array() {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| {
                let data = all.get(i["key"].as_str()?)?;
                Some((i["path"].as_str()?.to_owned(), data.clone()))
            })
            .collect(),
        _ => all.into_iter().collect(),
    }
}

/// Standard base64 decoding (padding optional); `None` for invalid input.
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or(0));
        }
    }
    Some(out)
}

/// Writes `files` into `dir` the kubelet's way (see the module documentation).
fn write_atomic(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    use std::os::unix::fs::symlink;
    let stamp = format!(
        "..{}_{:06}",
        chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S"),
        fastrand::u32(..1_000_000)
    );
    let fresh = dir.join(&stamp);
    std::fs::create_dir_all(&fresh)?;
    for (path, data) in files {
        let p = fresh.join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, data)?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    let wanted: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|(p, _)| {
            p.trim_start_matches('/')
                .split('/')
                .next()
                .map(str::to_owned)
        })
        .collect();
    for top in &wanted {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(top), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !wanted.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old
        && old != Path::new(&stamp)
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

impl PodDirs {
    /// Creates the pod's directories and writes its Secret and ConfigMap volumes.
    pub(crate) fn prepare(sh: &Shared, root: &Path, pod: &Value) -> std::io::Result<PodDirs> {
        let ns = meta_str(pod, "namespace").to_owned();
        let pod_dir = root.join("pods").join(&ns).join(format!(
            "{}-{}",
            meta_str(pod, "name"),
            meta_str(pod, "uid")
        ));
        std::fs::create_dir_all(&pod_dir)?;
        let mut dirs = PodDirs {
            pod_dir,
            volumes: BTreeMap::new(),
            projected: Vec::new(),
            ns,
        };
        for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or("").to_owned();
            let dir = if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                root.join("claims").join(&dirs.ns).join(claim)
            } else {
                dirs.pod_dir.join("volumes").join(&name)
            };
            std::fs::create_dir_all(&dir)?;
            for (src, secret, key) in [("secret", true, "secretName"), ("configMap", false, "name")]
            {
                if let Some(object) = v[src][key].as_str() {
                    dirs.projected.push(Projected {
                        dir: dir.clone(),
                        secret,
                        object: object.to_owned(),
                        items: v[src]["items"].clone(),
                        written: "-".to_owned(),
                    });
                }
            }
            dirs.volumes.insert(name, dir);
        }
        dirs.refresh(sh);
        Ok(dirs)
    }

    /// Rewrites the Secret and ConfigMap volumes whose object changed since last written.
    pub(crate) fn refresh(&mut self, sh: &Shared) {
        for p in &mut self.projected {
            let obj = store_object(sh, p.secret, &self.ns, &p.object);
            let rv = obj
                .as_ref()
                .map(|o| meta_str(o, "resourceVersion").to_owned())
                .unwrap_or_default();
            if rv == p.written {
                continue;
            }
            let files = obj
                .as_ref()
                .map(|o| files_of(o, p.secret, &p.items))
                .unwrap_or_default();
            if write_atomic(&p.dir, &files).is_ok() {
                p.written = rv;
            }
        }
    }

    /// (mount path, real directory) of each volumeMount of container `c`, longest path first.
    pub(crate) fn mounts(&self, c: &Value) -> Vec<(String, PathBuf)> {
        let mut out: Vec<(String, PathBuf)> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let path = m["mountPath"].as_str()?.trim_end_matches('/').to_owned();
                let mut dir = self.volumes.get(m["name"].as_str()?)?.clone();
                if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
                    dir = dir.join(sub.trim_start_matches('/'));
                    let _ = std::fs::create_dir_all(&dir);
                }
                Some((path, dir))
            })
            .collect();
        out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        out
    }
}

/// `value` with a leading mount path replaced by its real directory.
pub(crate) fn rewrite_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (path, dir) in mounts {
        if let Some(rest) = value.strip_prefix(path.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
            && !path.is_empty()
        {
            return format!("{}{rest}", dir.display());
        }
    }
    value.to_owned()
}

/// Expands `$(VAR)` references to variables defined before (`$$` escapes), as Kubernetes does.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$(")
            && let Some(end) = t.find(')')
            && let Some((_, v)) = env.iter().rev().find(|(k, _)| k == &t[..end])
        {
            out.push_str(v);
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The environment of container `c` of `pod` (`envFrom`, then `env`): values with `$(VAR)`
/// expanded and mount paths rewritten, `secretKeyRef`/`configMapKeyRef` read from the store
/// now, `fieldRef` for metadata.name/namespace/uid/labels/annotations, spec.nodeName,
/// spec.serviceAccountName, status.podIP/hostIP.
pub(crate) fn container_env(
    sh: &Shared,
    pod: &Value,
    c: &Value,
    ip: &str,
    mounts: &[(String, PathBuf)],
) -> Vec<(String, String)> {
    let ns = meta_str(pod, "namespace");
    let mut env: Vec<(String, String)> = Vec::new();
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or("");
        for (src, secret) in [("secretRef", true), ("configMapRef", false)] {
            if let Some(name) = from[src]["name"].as_str()
                && let Some(obj) = store_object(sh, secret, ns, name)
            {
                for (k, data) in files_of(&obj, secret, &Value::Null) {
                    env.push((
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&data).into_owned(),
                    ));
                }
            }
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let from = &e["valueFrom"];
        let value = if let Some(v) = e["value"].as_str() {
            rewrite_path(&expand(v, &env), mounts)
        } else if let Some(key) = from["secretKeyRef"]["key"].as_str() {
            let obj = store_object(
                sh,
                true,
                ns,
                from["secretKeyRef"]["name"].as_str().unwrap_or(""),
            );
            let data = obj
                .map(|o| files_of(&o, true, &Value::Null))
                .unwrap_or_default();
            match data.into_iter().find(|(k, _)| k == key) {
                Some((_, d)) => String::from_utf8_lossy(&d).into_owned(),
                None => continue,
            }
        } else if let Some(key) = from["configMapKeyRef"]["key"].as_str() {
            let obj = store_object(
                sh,
                false,
                ns,
                from["configMapKeyRef"]["name"].as_str().unwrap_or(""),
            );
            match obj.and_then(|o| o["data"][key].as_str().map(str::to_owned)) {
                Some(v) => v,
                None => continue,
            }
        } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            field_ref(pod, path, ip)
        } else {
            String::new()
        };
        env.retain(|(k, _)| k != name);
        env.push((name.to_owned(), value));
    }
    env
}

fn field_ref(pod: &Value, path: &str, ip: &str) -> String {
    let m = &pod["metadata"];
    let bracket = |prefix: &str| path.strip_prefix(prefix)?.strip_suffix("']");
    let v = match path {
        "metadata.name" => &m["name"],
        "metadata.namespace" => &m["namespace"],
        "metadata.uid" => &m["uid"],
        "spec.nodeName" => &pod["spec"]["nodeName"],
        "spec.serviceAccountName" => &pod["spec"]["serviceAccountName"],
        "status.podIP" | "status.podIPs" => return ip.to_owned(),
        "status.hostIP" | "status.hostIPs" => return "192.168.49.2".to_owned(),
        _ => {
            if let Some(k) = bracket("metadata.labels['") {
                &m["labels"][k]
            } else if let Some(k) = bracket("metadata.annotations['") {
                &m["annotations"][k]
            } else {
                &Value::Null
            }
        }
    };
    v.as_str().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_names() {
        assert_eq!(
            mount_env_name("/var/run/secrets/egi.eu/"),
            "KUBESIM_MOUNT_VAR_RUN_SECRETS_EGI_EU"
        );
        assert_eq!(mount_env_name("/home/jovyan"), "KUBESIM_MOUNT_HOME_JOVYAN");
        assert_eq!(mount_env_name("/"), "KUBESIM_MOUNT_ROOT");
    }

    #[test]
    fn base64_and_expansion() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGkh").unwrap(), b"hi!");
        let env = vec![("A".to_owned(), "x".to_owned())];
        assert_eq!(expand("$(A)/$(B)/$$(A)", &env), "x/$(B)/$(A)");
        let mounts = vec![("/home/jovyan".to_owned(), PathBuf::from("/tmp/c"))];
        assert_eq!(rewrite_path("/home/jovyan/x", &mounts), "/tmp/c/x");
        assert_eq!(rewrite_path("/home/jovyanx", &mounts), "/home/jovyanx");
    }

    #[test]
    fn atomic_writes_swap_data() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(
            dir.path(),
            &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"1");
        write_atomic(dir.path(), &[("a".into(), b"3".to_vec())]).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"3");
        assert!(!dir.path().join("b").exists());
        let stamps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(stamps, 1);
    }
}
