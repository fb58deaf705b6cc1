use std::num::NonZeroUsize;

use proptest::prelude::*;

use super::*;
use crate::record::Status;

pub(crate) fn record(uid: &str) -> CloudRecord {
    CloudRecord {
        record_create_time: 1_700_003_600,
        vm_uuid: uid.to_owned(),
        site_name: "EGI-NOTEBOOKS".into(),
        cloud_compute_service: None,
        machine_name: "jupyter-alice".into(),
        local_group_id: Some("hub".into()),
        global_user_name: Some("alice".into()),
        fqan: Some("vo.notebooks.egi.eu".into()),
        status: Status::Completed,
        start_time: 1_700_000_000,
        end_time: Some(1_700_003_000),
        wall_duration: 3000,
        cpu_duration: Some(120),
        cpu_count_milli: 500,
        network_inbound: Some(1),
        network_outbound: Some(0),
        memory: Some(512),
        disk: 0,
        image_id: Some("egifedcloud/notebooks:1.0".into()),
        cloud_type: "EGI Notebooks".into(),
    }
}

#[test]
fn ascii_field_keeps_ascii_and_encodes_the_rest() {
    assert_eq!(ascii_field("alice"), "alice");
    assert_eq!(ascii_field("zoë"), "zo%C3%AB");
    assert_eq!(ascii_field("José Müller"), "Jos%C3%A9 M%C3%BCller");
    assert_eq!(ascii_field("50%"), "50%25");
    assert_eq!(ascii_field("bob\nVMUUID: evil"), "bob%0AVMUUID: evil");
    assert_eq!(ascii_field(" padded "), "%20padded%20");
    assert_eq!(ascii_field("a\u{0}b\tc"), "a%00b%09c");
    assert_eq!(ascii_field("None"), "%4Eone");
    assert_eq!(ascii_field("null"), "%6Eull");
    assert_eq!(ascii_field("nonexistent"), "nonexistent");
}

#[test]
fn record_renders_in_apel_field_order() {
    let mut text = String::new();
    render_into(&record("u-1"), &mut text);
    let keys: Vec<&str> = text.lines().map(|l| l.split_once(':').unwrap().0).collect();
    let order: Vec<usize> = keys
        .iter()
        .map(|k| FIELDS.iter().position(|f| f == k).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    assert!(text.contains("CpuCount: 0.5\n"));
    assert!(text.contains("Status: completed\n"));
    assert!(text.contains("EndTime: 1700003000\n"));
}

#[test]
fn cpu_count_has_at_most_three_decimals() {
    assert_eq!(cpu_count_text(2000), "2");
    assert_eq!(cpu_count_text(500), "0.5");
    assert_eq!(cpu_count_text(1125), "1.125");
    assert_eq!(cpu_count_text(10), "0.01");
    assert_eq!(cpu_count_text(0), "0");
}

#[test]
fn validation_enforces_apel_rules() {
    assert_eq!(validate(&record("u")), Ok(()));
    type Breaker = fn(&mut CloudRecord);
    let cases: Vec<(Breaker, &str)> = vec![
        (|r| r.vm_uuid.clear(), "VMUUID"),
        (|r| r.vm_uuid = "None".into(), "VMUUID"),
        (|r| r.site_name = "null".into(), "SiteName"),
        (
            |r| r.global_user_name = Some("zoë".into()),
            "GlobalUserName",
        ),
        (|r| r.machine_name = "a\nb".into(), "MachineName"),
        (|r| r.image_id = Some("x".repeat(256)), "ImageId"),
        (|r| r.fqan = Some(" vo".into()), "FQAN"),
        (|r| r.wall_duration = -1, "WallDuration"),
        (|r| r.memory = Some(-5), "Memory"),
        (|r| r.end_time = Some(1), "EndTime"),
        (|r| r.cpu_count_milli = MAX_CPU_COUNT_MILLI + 1, "CpuCount"),
        (|r| r.cpu_count_milli = -1, "CpuCount"),
        (|r| r.start_time = MAX_TIME + 1, "StartTime"),
        (|r| r.end_time = Some(i64::MAX), "EndTime"),
    ];
    for (break_it, field) in cases {
        let mut r = record("u");
        break_it(&mut r);
        let err = validate(&r).expect_err(field);
        assert!(err.contains(field), "{err} should name {field}");
    }
}

#[test]
fn messages_are_chunked_by_count_and_size() {
    let records: Vec<_> = (0..250).map(|i| record(&format!("uid-{i:04}"))).collect();
    let msgs = messages(&records, Limits::default());
    assert_eq!(
        msgs.iter().map(ApelMessage::records).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    let parsed: Vec<_> = msgs
        .iter()
        .flat_map(|m| parse_message(m.as_str()).unwrap())
        .collect();
    assert_eq!(parsed.len(), 250);
    assert_eq!(parsed[249][1], ("VMUUID".to_owned(), "uid-0249".to_owned()));

    let one = messages(&records[..1], Limits::default());
    let size = one[0].as_str().len();
    let tight = Limits {
        max_records: NonZeroUsize::new(1000).unwrap(),
        max_bytes: size * 3,
    };
    let msgs = messages(&records[..10], tight);
    assert!(msgs.len() >= 4, "{} messages", msgs.len());
    assert!(msgs.iter().all(|m| m.as_str().len() <= size * 3));
    assert_eq!(msgs.iter().map(ApelMessage::records).sum::<usize>(), 10);
    assert!(messages(&[], Limits::default()).is_empty());
}

#[test]
fn message_layout_matches_the_loader() {
    let msgs = messages(&[record("a"), record("b")], Limits::default());
    let text = msgs[0].as_str();
    assert!(text.starts_with("APEL-cloud-message: v0.4\nRecordCreateTime: "));
    assert_eq!(text.matches("\n%%\n").count(), 1);
    assert!(text.ends_with("CloudType: EGI Notebooks\n"));
}

#[test]
fn loader_rules_reject_what_apel_rejects() {
    let ok = "APEL-cloud-message: v0.4\nVMUUID: a\nSiteName: S\nCpuCount: 1.5\n";
    assert_eq!(parse_message(ok).unwrap().len(), 1);
    for bad in [
        "APEL-cloud-message: v0.2\nVMUUID: a\nSiteName: S\n",
        "APEL-cloud-message: v0.4\nVMUUID: a\n",
        "APEL-cloud-message: v0.4\nVMUUID: a\nSiteName: S\nWallDuration: 1.5\n",
        "APEL-cloud-message: v0.4\nVMUUID: a\nSiteName: S\nColour: red\n",
        "APEL-cloud-message: v0.4\nVMUUID: a\nSiteName: S\nCpuCount: 1.2345\n",
        "APEL-cloud-message: v0.4\nVMUUID: a\nSiteName: S\nGlobalUserName: zoë\n",
        "APEL-cloud-message: v0.4\nVMUUID: none\nSiteName: S\n",
    ] {
        assert!(parse_message(bad).is_err(), "accepted {bad:?}");
    }
}

proptest! {
    #[test]
    fn any_names_give_a_message_the_loader_accepts(
        user in "\\PC{0,40}|[\\x00-\\x7f]{0,40}",
        ns in "\\PC{1,20}",
        image in proptest::option::of("\\PC{0,60}"),
        milli in 0i64..=MAX_CPU_COUNT_MILLI,
    ) {
        let mut r = record("uid");
        r.global_user_name = Some(ascii_field(&user)).filter(|u| !u.is_empty());
        r.local_group_id = Some(ascii_field(&ns));
        r.image_id = image.map(|i| ascii_field(&i)).filter(|i| !i.is_empty());
        r.cpu_count_milli = milli;
        prop_assume!(validate(&r).is_ok());
        let msgs = messages(&[r.clone(), r], Limits::default());
        let parsed = parse_message(msgs[0].as_str()).unwrap();
        prop_assert_eq!(parsed.len(), 2);
        let got = parsed[0].iter().find(|(k, _)| k == "GlobalUserName").map(|(_, v)| v.clone());
        let want = Some(ascii_field(&user)).filter(|u| !u.is_empty());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn ascii_field_is_ascii_and_reversible(s in "\\PC{0,64}|\\PC{80,120}") {
        let e = ascii_field(&s);
        prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        prop_assert_eq!(e.trim(), e.as_str());
        prop_assert!(e.len() <= MAX_FIELD_LEN, "{} characters", e.len());
        // A shortened value is a prefix of the encoding, `%~` and 20 hex digits.
        let shortened = was_shortened(&e);
        let body = if shortened { &e[..e.len() - 22] } else { e.as_str() };
        // Decode %XX back to bytes.
        let mut bytes = Vec::new();
        let mut it = body.bytes();
        while let Some(b) = it.next() {
            if b == b'%' {
                let hex = [it.next().unwrap(), it.next().unwrap()];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
            } else {
                bytes.push(b);
            }
        }
        if shortened {
            prop_assert!(s.as_bytes().starts_with(&bytes) && bytes.len() < s.len());
        } else {
            prop_assert_eq!(String::from_utf8(bytes).unwrap(), s);
        }
    }
}
