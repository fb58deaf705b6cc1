use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;

/// Checks the OpenMetrics rules promtool relies on and returns the samples per series
/// (`name{labels}` -> (timestamp, value) in file order).
fn parse_checked(text: &str, params: &Params) -> BTreeMap<String, Vec<(i64, f64)>> {
    assert!(text.ends_with("# EOF\n"), "must end with # EOF");
    assert_eq!(text.matches("# EOF").count(), 1);
    let mut families_seen = HashSet::new();
    let mut family: Option<(String, String)> = None;
    let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut closed = HashSet::new();
    let mut current_series = String::new();
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                families_seen.insert(name.to_owned()),
                "family {name} declared twice"
            );
            assert!(
                !name.ends_with("_total"),
                "family {name} declared with _total"
            );
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (name, kind) = family.as_ref().expect("sample before any # TYPE");
        let (key, rest) = line.rsplit_once('}').map_or_else(
            || line.split_once(' ').unwrap(),
            |(k, r)| (k, r.trim_start()),
        );
        let metric = key.split('{').next().unwrap();
        let expected = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.clone()
        };
        assert_eq!(metric, expected, "sample outside its family: {line}");
        let (value, ts) = rest.split_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let ts: i64 = ts.parse().expect("integer seconds");
        assert!(
            params.start() <= ts && ts <= params.end,
            "timestamp {ts} outside [{}, {}]: {line}",
            params.start(),
            params.end
        );
        assert!(value.is_finite() && value >= 0.0, "{line}");
        if key != current_series {
            assert!(
                closed.insert(key.to_owned()),
                "series {key} is not contiguous"
            );
            current_series = key.to_owned();
        }
        let samples = series.entry(key.to_owned()).or_default();
        if let Some(&(last, _)) = samples.last() {
            assert!(ts > last, "timestamps not increasing in {key}");
        }
        samples.push((ts, value));
    }
    assert_eq!(families_seen.len(), 9);
    series
}

#[test]
fn sample_is_well_formed_and_small() {
    let params = Params::sample();
    let text = generate(&params).unwrap();
    assert!(text.len() < 1_000_000, "{} bytes", text.len());
    let series = parse_checked(&text, &params);
    // The last scrape is at the end: the file's last timestamp is the configured end.
    let last = series
        .values()
        .flat_map(|s| s.iter().map(|(t, _)| *t))
        .max();
    assert_eq!(last, Some(params.end));
    let mut out = Vec::new();
    let stats = write(&params, &mut out).unwrap();
    assert_eq!(stats.bytes as usize, text.len());
    assert_eq!(stats.series as usize, series.len());
    assert_eq!(
        stats.samples as usize,
        series.values().map(Vec::len).sum::<usize>()
    );
}

#[test]
fn output_is_deterministic_and_depends_on_the_seed() {
    let params = Params::sample();
    let a = generate(&params).unwrap();
    assert_eq!(a, generate(&params).unwrap());
    let other = generate(&Params { seed: 7, ..params }).unwrap();
    assert_ne!(a, other);
}

#[test]
fn other_parameters_are_well_formed_too() {
    for (pods, hours, interval, seed) in [(1, 1, 30, 1), (60, 24, 60, 2), (30, 3, 600, 3)] {
        let params = Params {
            pods,
            span: Duration::from_secs(hours * 3600),
            end: 1_700_000_000 - 1_700_000_000 % 600,
            scrape_interval: Duration::from_secs(interval),
            seed,
        };
        parse_checked(&generate(&params).unwrap(), &params);
    }
}

#[test]
fn large_histories_stream() {
    let mut out = Vec::new();
    let stats = generate_large(120, Params::SAMPLE_END, 5, &mut out).unwrap();
    assert_eq!(stats.pods, 120);
    assert_eq!(stats.bytes as usize, out.len());
    let params = Params {
        seed: 5,
        ..Params::large(120, Params::SAMPLE_END)
    };
    let series = parse_checked(std::str::from_utf8(&out).unwrap(), &params);
    assert_eq!(stats.series as usize, series.len());
}

#[test]
fn sample_holds_every_case() {
    let pods = plan(&Params::sample()).unwrap();
    let mut kinds: HashMap<Kind, usize> = HashMap::new();
    for p in &pods {
        *kinds.entry(p.kind).or_default() += 1;
    }
    let expected = [
        (Kind::Running, 5),
        (Kind::LongRunning, 1),
        (Kind::Inherited, 1),
        (Kind::Finished, 7),
        (Kind::Exited, 3),
        (Kind::Restarted, 2),
        (Kind::SandboxRestarted, 1),
        (Kind::ShortLived, 2),
        (Kind::Pending, 1),
        (Kind::Resumed, 1),
        (Kind::OutsideFilter, 1),
    ];
    assert_eq!(kinds, HashMap::from(expected));
    assert_eq!(pods.iter().filter(|p| !p.in_default_filter()).count(), 1);
    let users: HashSet<&str> = pods.iter().map(|p| p.user.as_str()).collect();
    assert!(users.contains("zoë") && users.contains("José Müller"));
    let groups: HashSet<Option<&str>> = pods.iter().map(|p| p.primary_group.as_deref()).collect();
    assert_eq!(groups, PRIMARY_GROUPS.into_iter().collect());
    // uids are unique, names only repeat for a resumed session, which starts after the
    // previous pod is gone.
    let uids: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
    assert_eq!(uids.len(), pods.len());
    for p in pods.iter().filter(|p| p.kind == Kind::Resumed) {
        let prev = &pods[p.index - 1];
        assert_eq!((&prev.name, &prev.user), (&p.name, &p.user));
        assert!(prev.gone < p.created && prev.last_seen < p.first_seen);
    }
    for p in &pods {
        let end = p.end;
        match p.kind {
            Kind::ShortLived => {
                assert!(p.gone - p.created < 90 && p.running.is_none() && p.seen_in(0, end));
            }
            Kind::Pending => {
                assert!(end - p.created < 90 && p.running.is_none() && p.last_seen == end);
            }
            Kind::Running | Kind::LongRunning | Kind::Restarted => {
                assert_eq!(p.running.map(|r| r.1), Some(end), "{p:?}");
            }
            Kind::Finished | Kind::Exited | Kind::SandboxRestarted | Kind::Inherited => {
                let (_, last) = p.running.expect("seen running");
                assert!(end - last > 90, "{p:?}");
            }
            Kind::Resumed => assert!(p.running.is_some()),
            Kind::OutsideFilter => assert!(!p.in_default_filter()),
        }
        assert_eq!(
            p.restarts > 0,
            matches!(p.kind, Kind::Restarted | Kind::SandboxRestarted)
        );
    }
    assert!(pods.iter().any(|p| p.created < Params::sample().start()));
}

#[test]
fn restarts_start_new_series_and_sandbox_recreation_resets_the_pod_counter() {
    let params = Params::sample();
    let pods = plan(&params).unwrap();
    let series = parse_checked(&generate(&params).unwrap(), &params);
    let of = |p: &Pod, metric: &str| -> Vec<(&String, &Vec<(i64, f64)>)> {
        let pod_label = format!("pod=\"{}\"", p.name);
        series
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{metric}{{")) && k.contains(&pod_label))
            .collect()
    };
    let restarted = pods.iter().find(|p| p.kind == Kind::Restarted).unwrap();
    let notebook: Vec<_> = of(restarted, "container_cpu_usage_seconds_total")
        .into_iter()
        .filter(|(k, _)| k.contains("container=\"notebook\""))
        .collect();
    assert_eq!(notebook.len(), restarted.restarts + 1);
    for (_, samples) in &notebook {
        assert!(
            samples.windows(2).all(|w| w[0].1 <= w[1].1),
            "counter decreased"
        );
    }
    let info = of(restarted, "kube_pod_container_info");
    assert_eq!(
        info.len(),
        restarted.restarts + 1,
        "one container_info per container id"
    );

    let recreated = pods
        .iter()
        .find(|p| p.kind == Kind::SandboxRestarted)
        .unwrap();
    let pod_rx: Vec<_> = of(recreated, "container_network_receive_bytes_total")
        .into_iter()
        .filter(|(k, _)| !k.contains("name=") && !k.contains("container="))
        .collect();
    assert_eq!(pod_rx.len(), 1, "one pod-cgroup network series");
    let resets = pod_rx[0].1.windows(2).filter(|w| w[1].1 < w[0].1).count();
    assert_eq!(resets, 1);
    // The sandboxes report the same values as the pod cgroup.
    let mut sandbox_rx: Vec<(i64, f64)> = of(recreated, "container_network_receive_bytes_total")
        .into_iter()
        .filter(|(k, _)| k.contains("name="))
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    sandbox_rx.sort_by_key(|s| s.0);
    assert_eq!(&sandbox_rx, pod_rx[0].1);
}

#[test]
fn counters_are_exact_binary_fractions() {
    let params = Params::sample();
    let series = parse_checked(&generate(&params).unwrap(), &params);
    for (key, samples) in &series {
        for (_, v) in samples {
            let scaled = if key.starts_with("container_cpu") {
                v * 64.0
            } else {
                *v
            };
            if !key.starts_with("container_") {
                continue;
            }
            assert_eq!(scaled.fract(), 0.0, "{key} {v}");
        }
    }
}

#[test]
fn pod_names_follow_kubespawner_escaping() {
    assert_eq!(pod_name("alice"), "jupyter-alice");
    assert_eq!(pod_name("zoë"), "jupyter-zo-c3-ab");
    assert_eq!(
        pod_name("José Müller"),
        "jupyter--4aos-c3-a9-20-4d-c3-bcller"
    );
    assert_eq!(pod_name("a.b@egi.eu"), "jupyter-a-2eb-40egi-2eeu");
}

#[test]
fn invalid_parameters_are_refused() {
    let ok = Params::sample();
    for bad in [
        Params {
            pods: 0,
            ..ok.clone()
        },
        Params {
            scrape_interval: Duration::from_secs(7),
            ..ok.clone()
        },
        Params {
            scrape_interval: Duration::from_millis(60_500),
            ..ok.clone()
        },
        Params {
            span: Duration::from_secs(3600 + 60),
            ..ok.clone()
        },
        Params {
            span: Duration::from_secs(600),
            ..ok.clone()
        },
        Params {
            end: i64::MIN + 5,
            ..ok
        },
    ] {
        assert!(generate(&bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn windows_count_what_a_range_selector_sees() {
    let params = Params::sample();
    let pods = plan(&params).unwrap();
    let end = params.end;
    // Over the whole history every pod is seen; over the last scrape only the live ones.
    assert!(pods.iter().all(|p| p.seen_in(params.start(), end)));
    let live: Vec<Kind> = pods
        .iter()
        .filter(|p| p.seen_in(end, end))
        .map(|p| p.kind)
        .collect();
    assert!(!live.contains(&Kind::Finished) && live.contains(&Kind::Pending));
    let running = pods.iter().find(|p| p.kind == Kind::LongRunning).unwrap();
    let (n, last) = running.running_in(end - 3600, end);
    assert_eq!((n, last), (4, Some(end)));
    assert!(running.container_seen_in(end - 3600, end));
}
