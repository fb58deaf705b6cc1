use super::*;
use crate::metrics::{
    Annotations, ByPod, ByUid, PodAnnotations, PodCreated, PodUid, RunningSamples,
};

const T0: i64 = 1_700_000_000;

fn key(pod: &str) -> PodKey {
    PodKey {
        namespace: "hub".into(),
        pod: pod.into(),
    }
}

fn by_pod(pod: &str, value: f64) -> ByPod {
    ByPod {
        key: key(pod),
        uid: None,
        value,
    }
}

/// One pod `jupyter-<name>` with uid `uid-<name>`, created at T0, all metrics present.
fn add_pod(a: &mut Answers, name: &str, last_running: Option<i64>, group: Option<&str>) {
    let uid = PodUid(format!("uid-{name}"));
    let pod = format!("jupyter-{name}");
    a.pods.push(PodCreated {
        uid: uid.clone(),
        key: key(&pod),
        created: T0 as f64,
    });
    a.running.push(RunningSamples {
        uid: uid.clone(),
        last_running: last_running.map(|s| Timestamp::from_millis(s * 1000)),
        running_count: u64::from(last_running.is_some()),
    });
    let mut annotations = Annotations::new();
    annotations.insert("hub_jupyter_org_username".to_owned(), name.to_owned());
    if let Some(g) = group {
        annotations.insert("egi_eu_primary_group".to_owned(), g.to_owned());
    }
    a.annotations.push(PodAnnotations {
        uid: uid.clone(),
        annotations,
    });
    a.images.push(ByUid {
        uid: uid.clone(),
        value: "egifedcloud/notebook:1".into(),
    });
    a.cpu_requests.push(ByUid { uid, value: 0.5 });
    a.cpu_seconds.push(by_pod(&pod, 100.4));
    a.peak_memory.push(by_pod(&pod, 300.0 * 1024.0 * 1024.0));
    a.network_received
        .push(by_pod(&pod, 3.0 * 1024.0 * 1024.0 * 1024.0));
    a.network_transmitted.push(by_pod(&pod, 1024.0));
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

#[test]
fn a_finished_pod_becomes_a_completed_record_in_caso_units() {
    let mut a = Answers::default();
    add_pod(
        &mut a,
        "alice",
        Some(T0 + 3600),
        Some("vo.notebooks.egi.eu"),
    );
    let built = build_records(&a, &RecordConfig::default(), at(T0 + 7200));
    assert!(built.skipped.is_empty());
    let r = &built.records[0];
    assert_eq!(r.vm_uuid, "uid-alice");
    assert_eq!(r.machine_name, "jupyter-alice");
    assert_eq!(r.local_group_id.as_deref(), Some("hub"));
    assert_eq!(r.status, Status::Completed);
    assert_eq!(
        (r.start_time, r.end_time, r.wall_duration),
        (T0, Some(T0 + 3600), 3600)
    );
    assert_eq!(r.cpu_duration, Some(100));
    assert_eq!(r.cpu_count_milli, 500);
    assert_eq!(r.memory, Some(300));
    assert_eq!((r.network_inbound, r.network_outbound), (Some(3), Some(0)));
    assert_eq!(r.fqan.as_deref(), Some("vo.notebooks.egi.eu"));
    assert_eq!(r.record_create_time, T0 + 7200);
    assert_eq!(r.image_id.as_deref(), Some("egifedcloud/notebook:1"));
}

#[test]
fn bytes_units_reproduce_the_python_tool() {
    let mut a = Answers::default();
    add_pod(&mut a, "alice", Some(T0 + 60), None);
    let config = RecordConfig {
        units: Units::Bytes,
        ..RecordConfig::default()
    };
    let r = &build_records(&a, &config, at(T0 + 120)).records[0];
    assert_eq!(r.memory, Some(300 * 1024 * 1024));
    assert_eq!(r.network_outbound, Some(1024));
    assert_eq!(r.status, Status::Started);
    assert_eq!(r.end_time, None);
}

#[test]
fn vo_mapping_uses_each_values_own_vo() {
    let mut a = Answers::default();
    add_pod(&mut a, "a", Some(T0), Some("group-a"));
    add_pod(&mut a, "b", Some(T0), Some("group-b"));
    add_pod(&mut a, "c", Some(T0), None);
    let mut config = RecordConfig::default();
    config.vo_map.insert("vo.one", "group-a").unwrap();
    config.vo_map.insert("vo.two", "group-b").unwrap();
    let built = build_records(&a, &config, at(T0 + 10));
    let fqans: Vec<_> = built.records.iter().map(|r| r.fqan.as_deref()).collect();
    assert_eq!(fqans, [Some("vo.one"), Some("vo.two"), None]);

    let config = RecordConfig {
        fqan_key: FqanKey::GlobalUserName,
        ..RecordConfig::default()
    };
    let built = build_records(&a, &config, at(T0 + 10));
    assert_eq!(built.records[0].fqan.as_deref(), Some("a"));
}

#[test]
fn a_non_finite_figure_is_left_out_and_the_record_kept() {
    let mut a = Answers::default();
    add_pod(&mut a, "ok", Some(T0), None);
    add_pod(&mut a, "nan", Some(T0), None);
    add_pod(&mut a, "inf", Some(T0), None);
    add_pod(&mut a, "neg", Some(T0), None);
    let set = |rows: &mut Vec<ByPod>, pod: &str, v: f64| {
        rows.iter_mut().find(|b| b.key.pod == pod).unwrap().value = v;
    };
    set(&mut a.cpu_seconds, "jupyter-nan", f64::NAN);
    set(&mut a.peak_memory, "jupyter-inf", f64::INFINITY);
    set(&mut a.network_received, "jupyter-neg", -1.0);
    let built = build_records(&a, &RecordConfig::default(), at(T0 + 10));
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    let by_uid = |uid: &str| built.records.iter().find(|r| r.vm_uuid == uid).unwrap();
    let ok = by_uid("uid-ok");
    assert_eq!((ok.cpu_duration, ok.memory), (Some(100), Some(300)));
    let nan = by_uid("uid-nan");
    assert_eq!((nan.cpu_duration, nan.memory), (None, Some(300)));
    let inf = by_uid("uid-inf");
    assert_eq!((inf.cpu_duration, inf.memory), (Some(100), None));
    let neg = by_uid("uid-neg");
    assert_eq!((neg.network_inbound, neg.network_outbound), (None, Some(0)));
    // The field is absent from the message, which APEL still accepts.
    let text = crate::apel::messages(&built.records, crate::apel::Limits::default());
    let parsed = crate::apel::parse_message(text[0].as_str()).unwrap();
    let nan_rec = parsed
        .iter()
        .find(|r| r.contains(&("VMUUID".to_owned(), "uid-nan".to_owned())))
        .unwrap();
    assert!(
        !nan_rec.iter().any(|(k, _)| k == "CpuDuration"),
        "{nan_rec:?}"
    );
    assert!(nan_rec.iter().any(|(k, _)| k == "Memory"));
}

#[test]
fn a_non_finite_cpu_request_counts_as_none_and_a_bad_creation_time_skips() {
    let mut a = Answers::default();
    add_pod(&mut a, "req", Some(T0), None);
    add_pod(&mut a, "created", Some(T0), None);
    add_pod(&mut a, "huge", Some(T0), None);
    a.cpu_requests[0].value = f64::NAN;
    a.pods[1].created = f64::INFINITY;
    a.cpu_requests[2].value = 6e11;
    let built = build_records(&a, &RecordConfig::default(), at(T0 + 10));
    assert!(built.records.is_empty());
    assert_eq!(
        built.skipped[0].reason,
        SkipReason::NonFinite {
            metric: "kube_pod_created"
        }
    );
    assert_eq!(built.skipped[1].reason, SkipReason::NoCpuCount);
    assert_eq!(built.skipped[2].reason, SkipReason::NoCpuCount);
    let config = RecordConfig {
        default_cpu_count: Some(2.0),
        ..RecordConfig::default()
    };
    let built = build_records(&a, &config, at(T0 + 10));
    assert_eq!(built.records.len(), 2);
    assert!(built.records.iter().all(|r| r.cpu_count_milli == 2000));
}

#[test]
fn a_pod_never_seen_running_gets_no_record() {
    let mut a = Answers::default();
    add_pod(&mut a, "pending", None, None);
    add_pod(&mut a, "ran", Some(T0 + 60), None);
    // Long after creation: the Python tool said `completed` with EndTime = StartTime.
    let built = build_records(&a, &RecordConfig::default(), at(T0 + 3600));
    assert_eq!(built.records.len(), 1);
    assert_eq!(built.records[0].vm_uuid, "uid-ran");
    assert_eq!(built.skipped.len(), 1);
    assert_eq!(built.skipped[0].uid, "uid-pending");
    assert_eq!(built.skipped[0].reason, SkipReason::NotRunning);
    // Once it runs, it is reported, with wall time from creation.
    a.running[0].last_running = Some(at(T0 + 3600));
    a.running[0].running_count = 1;
    let built = build_records(&a, &RecordConfig::default(), at(T0 + 3600));
    let r = built
        .records
        .iter()
        .find(|r| r.vm_uuid == "uid-pending")
        .unwrap();
    assert_eq!(
        (r.status, r.end_time, r.wall_duration),
        (Status::Started, None, 3600)
    );
}

#[test]
fn pods_without_cpu_request_need_a_default() {
    let mut a = Answers::default();
    add_pod(&mut a, "x", Some(T0), None);
    a.cpu_requests.clear();
    let built = build_records(&a, &RecordConfig::default(), at(T0));
    assert_eq!(built.skipped[0].reason, SkipReason::NoCpuCount);
    let config = RecordConfig {
        default_cpu_count: Some(1.0),
        ..RecordConfig::default()
    };
    let built = build_records(&a, &config, at(T0));
    assert_eq!(built.records[0].cpu_count_milli, 1000);
}

#[test]
fn missing_usage_counts_as_zero() {
    let mut a = Answers::default();
    add_pod(&mut a, "x", Some(T0), None);
    a.cpu_seconds.clear();
    a.network_received.clear();
    let r = &build_records(&a, &RecordConfig::default(), at(T0)).records[0];
    assert_eq!((r.cpu_duration, r.network_inbound), (Some(0), Some(0)));
}

#[test]
fn duplicate_uids_are_merged_when_they_agree_and_skipped_when_not() {
    let mut a = Answers::default();
    add_pod(&mut a, "same", Some(T0), None);
    let dup = a.pods[0].clone();
    a.pods.push(dup);
    add_pod(&mut a, "clash", Some(T0), None);
    let mut clash = a.pods[2].clone();
    clash.created += 5.0;
    a.pods.push(clash);
    let built = build_records(&a, &RecordConfig::default(), at(T0));
    assert_eq!(built.records.len(), 1);
    assert_eq!(built.records[0].vm_uuid, "uid-same");
    assert_eq!(built.skipped[0].reason, SkipReason::ConflictingDuplicate);
}

#[test]
fn counter_resets_mark_lower_bounds_but_keep_the_record() {
    let mut a = Answers::default();
    add_pod(&mut a, "x", Some(T0), None);
    a.counter_resets.push(by_pod("jupyter-x", 1.0));
    let built = build_records(&a, &RecordConfig::default(), at(T0));
    assert_eq!(built.records.len(), 1);
    assert_eq!(built.lower_bounds, [key("jupyter-x")]);
}

#[test]
fn hostile_and_non_ascii_names_stay_inside_their_field() {
    let mut a = Answers::default();
    add_pod(&mut a, "zoë", Some(T0), Some("vo.example.org"));
    a.annotations[0].annotations.insert(
        "hub_jupyter_org_username".into(),
        "eve\nVMUUID: forged".into(),
    );
    let built = build_records(&a, &RecordConfig::default(), at(T0));
    let r = &built.records[0];
    assert_eq!(r.global_user_name.as_deref(), Some("eve%0AVMUUID: forged"));
    assert_eq!(r.machine_name, "jupyter-zo%C3%AB");
    assert_eq!(r.vm_uuid, "uid-zo%C3%AB");
    let msgs = crate::apel::messages(&built.records, crate::apel::Limits::default());
    let parsed = crate::apel::parse_message(msgs[0].as_str()).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].iter().filter(|(k, _)| k == "VMUUID").count(), 1);
}

#[test]
fn an_invalid_record_is_skipped_not_emitted() {
    let mut a = Answers::default();
    add_pod(&mut a, "late", Some(T0 - 100), None);
    let built = build_records(&a, &RecordConfig::default(), at(T0 + 1000));
    assert!(built.records.is_empty());
    assert!(
        matches!(&built.skipped[0].reason, SkipReason::Invalid(w) if w.contains("WallDuration"))
    );
}

#[test]
fn orphan_series_are_ignored_and_order_is_by_uid() {
    let mut a = Answers::default();
    add_pod(&mut a, "b", Some(T0), None);
    add_pod(&mut a, "a", Some(T0), None);
    a.running.push(RunningSamples {
        uid: PodUid("ghost".into()),
        last_running: None,
        running_count: 0,
    });
    let built = build_records(&a, &RecordConfig::default(), at(T0));
    let uids: Vec<_> = built.records.iter().map(|r| r.vm_uuid.as_str()).collect();
    assert_eq!(uids, ["uid-a", "uid-b"]);
}

#[test]
fn consecutive_sessions_of_one_name_keep_their_own_usage() {
    let mut a = Answers::default();
    add_pod(&mut a, "s1", Some(T0 + 100), None);
    add_pod(&mut a, "s2", Some(T0), None);
    // Both sessions have the same pod name.
    for p in &mut a.pods {
        p.key = key("jupyter-same");
    }
    for u in [
        &mut a.cpu_seconds,
        &mut a.peak_memory,
        &mut a.network_received,
        &mut a.network_transmitted,
    ] {
        u.clear();
    }
    let row = |uid: Option<&str>, value| ByPod {
        key: key("jupyter-same"),
        uid: uid.map(|u| PodUid(u.into())),
        value,
    };
    a.cpu_seconds = vec![
        row(Some("uid-s1"), 10.0),
        row(Some("uid-s2"), 20.0),
        row(None, 1000.0),
    ];
    let built = build_records(&a, &RecordConfig::default(), at(T0 + 1000));
    let cpu: Vec<_> = built
        .records
        .iter()
        .map(|r| (r.vm_uuid.as_str(), r.cpu_duration))
        .collect();
    assert_eq!(cpu, [("uid-s1", Some(10)), ("uid-s2", Some(20))]);

    // With a single pod of that name, rows without a UID are its own.
    a.pods.pop();
    let built = build_records(&a, &RecordConfig::default(), at(T0 + 1000));
    assert_eq!(built.records[0].cpu_duration, Some(1010));
}

#[test]
fn folding_rows_twice_or_in_any_order_changes_nothing() {
    use crate::metrics::Answer;
    let mut a = Answers::default();
    add_pod(&mut a, "x", Some(T0 + 50), Some("g1"));
    add_pod(&mut a, "y", Some(T0), None);
    // A second annotations series of x (annotation changed in the window).
    let mut changed = a.annotations[0].clone();
    changed
        .annotations
        .insert("egi_eu_primary_group".into(), "g0".into());
    a.annotations.push(changed);
    let once = build_records(&a, &RecordConfig::default(), at(T0 + 1000));

    let answers = |a: &Answers| {
        vec![
            Answer::Usage(Usage::CpuSeconds, a.cpu_seconds.clone()),
            Answer::Annotations(a.annotations.iter().rev().cloned().collect()),
            Answer::Pods(a.pods.clone()),
            Answer::Running(a.running.clone()),
            Answer::Images(a.images.clone()),
            Answer::CpuRequests(a.cpu_requests.clone()),
            Answer::Usage(Usage::PeakMemoryBytes, a.peak_memory.clone()),
            Answer::Usage(Usage::NetworkReceivedBytes, a.network_received.clone()),
            Answer::Usage(
                Usage::NetworkTransmittedBytes,
                a.network_transmitted.clone(),
            ),
        ]
    };
    let mut joiner = Joiner::new();
    for answer in answers(&a).into_iter().chain(answers(&a)) {
        joiner.add(answer);
    }
    let twice: Vec<_> = joiner
        .records(&RecordConfig::default(), at(T0 + 1000))
        .map(|(r, _)| r.unwrap())
        .collect();
    assert_eq!(twice, once.records);
    assert_eq!(
        twice[0].fqan.as_deref(),
        Some("g1"),
        "the greater annotations win"
    );
}

#[test]
fn absurd_creation_times_skip_the_pod_instead_of_poisoning_the_message() {
    for created in [1e19, -1e19, -5.0, (T0 + 5000) as f64] {
        let mut a = Answers::default();
        add_pod(&mut a, "ok", Some(T0), None);
        add_pod(&mut a, "bad", Some(T0), None);
        a.pods[1].created = created;
        let built = build_records(&a, &RecordConfig::default(), at(T0 + 1000));
        assert_eq!(built.records.len(), 1, "{created}");
        assert_eq!(built.records[0].vm_uuid, "uid-ok");
        assert!(
            matches!(&built.skipped[0].reason, SkipReason::Invalid(w) if w.contains("creation time")),
            "{created}: {:?}",
            built.skipped
        );
    }
}
