//! Property tests over hostile labels and figures: nothing is lost for one bad field, every
//! record is valid APEL, and distinct names never collapse into one.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::apel::{self, Limits, MAX_FIELD_LEN};
use crate::metrics::{
    Annotations, ByPod, ByUid, PodAnnotations, PodCreated, PodUid, RunningSamples,
};

const T0: i64 = 1_700_000_000;

/// Labels as a hostile or unlucky cluster may carry them: control characters and newlines,
/// non-ASCII text long enough to overflow APEL's 255 characters once encoded, null words,
/// blanks, and printable ASCII right at the limit.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[\\x00-\\x7f]{0,60}",
        "[é€😀a%]{50,130}",
        "[ -~]{240,300}",
        "\\PC{80,200}",
        Just("none".to_owned()),
        Just("NULL".to_owned()),
        Just(" padded ".to_owned()),
        Just("eve\nVMUUID: forged".to_owned()),
    ]
}

/// A figure as Prometheus may answer it, NaN and infinities included.
fn figure() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..1e12f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => -1e6..0.0f64,
    ]
}

#[derive(Debug, Clone)]
struct Pod {
    uid: String,
    name: String,
    namespace: String,
    user: String,
    group: String,
    image: String,
    figures: [f64; 5],
}

fn pod() -> impl Strategy<Value = Pod> {
    (
        (hostile(), hostile(), hostile()),
        (hostile(), hostile(), hostile()),
        proptest::array::uniform5(figure()),
    )
        .prop_map(
            |((uid, name, namespace), (user, group, image), figures)| Pod {
                uid,
                name,
                namespace,
                user,
                group,
                image,
                figures,
            },
        )
}

fn answers(pods: &[Pod]) -> Answers {
    let mut a = Answers::default();
    for (i, p) in pods.iter().enumerate() {
        // Distinct UIDs (a UID is unique in a cluster), still hostile and long.
        let uid = PodUid(format!("{i}-{}", p.uid));
        let key = PodKey {
            namespace: p.namespace.clone(),
            pod: p.name.clone(),
        };
        a.pods.push(PodCreated {
            uid: uid.clone(),
            key: key.clone(),
            created: T0 as f64,
        });
        a.running.push(RunningSamples {
            uid: uid.clone(),
            last_running: Some(Timestamp::from_millis((T0 + 60) * 1000)),
            running_count: 1,
        });
        let mut annotations = Annotations::new();
        annotations.insert("hub_jupyter_org_username".to_owned(), p.user.clone());
        annotations.insert("egi_eu_primary_group".to_owned(), p.group.clone());
        a.annotations.push(PodAnnotations {
            uid: uid.clone(),
            annotations,
        });
        a.images.push(ByUid {
            uid: uid.clone(),
            value: p.image.clone(),
        });
        let [cpu, mem, rx, tx, cores] = p.figures;
        a.cpu_requests.push(ByUid { uid, value: cores });
        for (rows, value) in [
            (&mut a.cpu_seconds, cpu),
            (&mut a.peak_memory, mem),
            (&mut a.network_received, rx),
            (&mut a.network_transmitted, tx),
        ] {
            rows.push(ByPod {
                key: key.clone(),
                uid: None,
                value,
            });
        }
    }
    a
}

/// Distinct names (pairs that share a long prefix, and a name equal to another's encoded or
/// shortened form) must stay distinct.
fn name_pair() -> impl Strategy<Value = (String, String)> {
    (hostile(), 0..3u8, "\\PC{1,3}", hostile()).prop_map(|(a, how, extra, other)| {
        let b = match how {
            0 => format!("{a}{extra}"),
            1 => apel::ascii_field(&a),
            _ => other,
        };
        (a, b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_pod_gets_a_valid_apel_record(pods in proptest::collection::vec(pod(), 1..8)) {
        let config = RecordConfig {
            default_cpu_count: Some(1.0),
            ..RecordConfig::default()
        };
        let built = build_records(&answers(&pods), &config, Timestamp::from_millis((T0 + 3600) * 1000));
        prop_assert!(built.skipped.is_empty(), "lost: {:?}", built.skipped);
        prop_assert_eq!(built.records.len(), pods.len());
        for r in &built.records {
            prop_assert!(apel::validate(r).is_ok(), "{:?}: {:?}", apel::validate(r), r);
            for text in [Some(&r.vm_uuid), Some(&r.machine_name), r.global_user_name.as_ref(), r.image_id.as_ref(), r.fqan.as_ref()].into_iter().flatten() {
                prop_assert!(text.len() <= MAX_FIELD_LEN && text.is_ascii());
            }
        }
        let messages = apel::messages(&built.records, Limits::default());
        let mut parsed = 0;
        for m in &messages {
            parsed += apel::parse_message(m.as_str()).map_err(TestCaseError::fail)?.len();
        }
        prop_assert_eq!(parsed, pods.len());
        // Distinct user names stay distinct in the records (UIDs are kept apart too).
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let users = pods.iter().map(|p| p.user.as_str());
        for (user, r) in users.zip(&built.records_by_input_order(&pods)) {
            if let Some(field) = r.global_user_name.as_deref()
                && let Some(old) = seen.insert(field, user)
            {
                prop_assert_eq!(old, user, "two users share {}", field);
            }
        }
        let uids: HashSet<&str> = built.records.iter().map(|r| r.vm_uuid.as_str()).collect();
        prop_assert_eq!(uids.len(), pods.len());
    }

    #[test]
    fn distinct_names_never_collapse_into_one((a, b) in name_pair()) {
        prop_assume!(a != b);
        let (ea, eb) = (apel::ascii_field(&a), apel::ascii_field(&b));
        prop_assert_ne!(&ea, &eb, "{:?} and {:?}", a, b);
        prop_assert_eq!(apel::ascii_field(&a), ea, "deterministic");
    }
}

/// Records in the order of the generated pods (records are ordered by UID, and each UID
/// starts with the pod's index).
trait ByInputOrder {
    fn records_by_input_order(&self, pods: &[Pod]) -> Vec<CloudRecord>;
}

impl ByInputOrder for Built {
    fn records_by_input_order(&self, pods: &[Pod]) -> Vec<CloudRecord> {
        (0..pods.len())
            .map(|i| {
                let uid = apel::ascii_field(&format!("{i}-{}", pods[i].uid));
                self.records
                    .iter()
                    .find(|r| r.vm_uuid == uid)
                    .cloned()
                    .unwrap_or_else(|| panic!("no record for pod {i}"))
            })
            .collect()
    }
}

#[test]
fn a_fifty_character_non_ascii_user_is_shortened_kept_and_distinct() {
    let alice = "ü".repeat(50);
    let bob = format!("{}ö", "ü".repeat(49));
    let pods: Vec<Pod> = [&alice, &bob]
        .iter()
        .map(|user| Pod {
            uid: "u".into(),
            name: "jupyter-x".into(),
            namespace: "hub".into(),
            user: (*user).clone(),
            group: "vo.example.org".into(),
            image: "img".into(),
            figures: [1.0, 1.0, 1.0, 1.0, 1.0],
        })
        .collect();
    let built = build_records(
        &answers(&pods),
        &RecordConfig::default(),
        Timestamp::from_millis((T0 + 3600) * 1000),
    );
    assert_eq!(built.records.len(), 2, "{:?}", built.skipped);
    let users: Vec<&str> = built
        .records
        .iter()
        .filter_map(|r| r.global_user_name.as_deref())
        .collect();
    assert_eq!(users.len(), 2);
    assert_ne!(users[0], users[1]);
    for u in &users {
        assert!(apel::was_shortened(u), "{u}");
        assert!(
            u.len() <= MAX_FIELD_LEN && u.starts_with("%C3%BC%C3%BC"),
            "{u}"
        );
    }
    // A name exactly at the limit once encoded is not shortened.
    let at_limit = "a".repeat(MAX_FIELD_LEN);
    assert_eq!(apel::ascii_field(&at_limit), at_limit);
    assert!(apel::was_shortened(&apel::ascii_field(&format!(
        "{at_limit}a"
    ))));
}
