//! Every fault the scripted server can inject, and the requests it sees.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn request_is_the_python_tools_form_post() {
    let server = Server::start(vec![json("200 OK", POD_BODY)]).await;
    let src = source(config(server.url("")));
    let pods = src.pods(&window()).await.unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].uid.0, "u1");
    assert_eq!(pods[0].created, 1_699_990_000.0);

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/api/v1/query")
    );
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(req.header("user-agent"), Some(USER_AGENT));
    assert!(USER_AGENT.starts_with("egi-accounting/"));
    assert_eq!(
        req.header("authorization"),
        None,
        "Auth::None sends no credentials"
    );
    assert_eq!(
        req.form(),
        vec![
            ("query".to_owned(), promql(Question::Pods, &window())),
            ("time".to_owned(), "1700000000.123".to_owned()),
        ]
    );
}

#[tokio::test]
async fn basic_and_bearer_credentials_are_sent_exactly() {
    let server = Server::start(vec![json("200 OK", POD_BODY)]).await;
    let mut cfg = config(server.url("/"));
    cfg.auth = Auth::Basic {
        user: "alice".to_owned(),
        password: "s3cret:x".into(),
    };
    source(cfg).pods(&window()).await.unwrap();
    let mut cfg = config(server.url("/"));
    cfg.auth = Auth::Bearer("tok.en-1".into());
    source(cfg).pods(&window()).await.unwrap();

    let seen = server.requests();
    assert_eq!(
        seen[0].header("authorization"),
        Some("Basic YWxpY2U6czNjcmV0Ong=")
    );
    assert_eq!(seen[1].header("authorization"), Some("Bearer tok.en-1"));
}

#[tokio::test]
async fn a_path_prefix_is_kept_with_or_without_trailing_slash() {
    let server = Server::start(vec![json("200 OK", POD_BODY)]).await;
    for prefix in ["/prometheus", "/prometheus/"] {
        let src = source(config(server.url(prefix)));
        assert_eq!(src.endpoint().path(), "/prometheus/api/v1/query");
        src.pods(&window()).await.unwrap();
    }
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/prometheus/api/v1/query", "/prometheus/api/v1/query"]
    );
}

#[tokio::test]
async fn connection_refused_is_a_transient_connect_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut cfg = config(Url::parse(&format!("http://{addr}/")).unwrap());
    cfg.retries = 1;
    let err = source(cfg).pods(&window()).await.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let server = Server::start(vec![
        json("500 Internal Server Error", "oops"),
        json("200 OK", POD_BODY),
    ])
    .await;
    let pods = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn prometheus_timeout_error_is_retried() {
    let server = Server::start(vec![
        json("200 OK", &prometheus_error("timeout", "query timed out")),
        json("200 OK", POD_BODY),
    ])
    .await;
    let pods = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn bad_request_is_not_retried_and_keeps_prometheus_message() {
    let body = prometheus_error("bad_data", "1:22: parse error: unexpected end of input");
    let server = Server::start(vec![json("400 Bad Request", &body)]).await;
    let err = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap_err();
    match &err {
        Error::Http { status, message } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "1:22: parse error: unexpected end of input");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn unavailable_is_retried_up_to_the_limit() {
    let server = Server::start(vec![http(
        "503 Service Unavailable",
        &[],
        "overloaded, try later",
    )])
    .await;
    let err = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 503, message } if message == "overloaded, try later"),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(server.requests().len(), 3, "first attempt and 2 retries");
}

#[tokio::test]
async fn too_many_requests_is_retried() {
    let server = Server::start(vec![
        http("429 Too Many Requests", &[], ""),
        json("200 OK", POD_BODY),
    ])
    .await;
    source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_timeout() {
    let server = Server::start(vec![Reply::Hang]).await;
    let mut cfg = config(server.url(""));
    cfg.timeout = Duration::from_millis(300);
    cfg.retries = 1;
    let started = Instant::now();
    let err = source(cfg).pods(&window()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n";
    let partial = format!("{head}{}", &POD_BODY[..60]);
    let server = Server::start(vec![Reply::Stall(partial.into_bytes())]).await;
    let mut cfg = config(server.url(""));
    cfg.timeout = Duration::from_millis(300);
    cfg.retries = 0;
    let started = Instant::now();
    let err = source(cfg).pods(&window()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_malformed_body_is_not_retried() {
    let server = Server::start(vec![json("200 OK", "<html>Gateway says hi</html>")]).await;
    let err = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse(m) if m.contains("invalid JSON")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_body_ending_mid_json_is_malformed() {
    // Framing without a length: the body ends where the connection closes.
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    let server = Server::start(vec![Reply::Raw(
        format!("{head}{}", &POD_BODY[..90]).into_bytes(),
    )])
    .await;
    let err = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse(m) if m.contains("truncated")),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_body_cut_before_its_length_is_a_broken_connection() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n";
    let cut = Reply::Raw(format!("{head}{}", &POD_BODY[..90]).into_bytes());
    let server = Server::start(vec![cut, json("200 OK", POD_BODY)]).await;
    let pods = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap();
    assert_eq!(pods.len(), 1, "the cut response was retried");

    let head_cut = format!("{head}{}", &POD_BODY[..90]);
    let server = Server::start(vec![Reply::Raw(head_cut.into_bytes())]).await;
    let err = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = Server::start(vec![http(
        "302 Found",
        &[("Location", "http://127.0.0.1:9/elsewhere")],
        "",
    )])
    .await;
    let err = source(config(server.url("")))
        .pods(&window())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 302, message } if message.contains("not followed")),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_large_matrix_is_reduced_while_streaming() {
    const SERIES: usize = 1000;
    const SAMPLES: usize = 400;
    let mut body = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for s in 0..SERIES {
        if s > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"metric":{{"__name__":"kube_pod_status_phase","namespace":"hub","phase":"Running","pod":"jupyter-{s}","uid":"uid-{s:04}"}},"values":["#
        ));
        for i in 0..SAMPLES {
            let value = if i % 2 == 0 { "1" } else { "0" };
            let sep = if i > 0 { "," } else { "" };
            body.push_str(&format!(r#"{sep}[{},"{value}"]"#, 1_700_000_000 + 30 * i));
        }
        body.push_str("]}");
    }
    body.push_str("]}}");
    assert!(body.len() > 5_000_000);
    let server = Server::start(vec![json("200 OK", &body)]).await;
    let running = source(config(server.url("")))
        .running(&window())
        .await
        .unwrap();
    assert_eq!(running.len(), SERIES);
    assert_eq!(running[7].uid.0, "uid-0007");
    assert_eq!(running[7].running_count, (SAMPLES / 2) as u64);
    let last = 1_700_000_000 + 30 * (SAMPLES as i64 - 2);
    assert_eq!(
        running[7].last_running,
        Some(Timestamp::from_millis(last * 1000))
    );
    assert_eq!(
        server.requests()[0].form()[0].1,
        "kube_pod_status_phase{pod=~'jupyter-.*',phase='Running'}[4h]"
    );
}

#[tokio::test]
async fn every_question_goes_over_http() {
    let vector = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    let server = Server::start(vec![json("200 OK", vector)]).await;
    let matrix_server = Server::start(vec![json("200 OK", matrix)]).await;
    let src = source(config(server.url("")));
    let w = window();
    assert!(src.pods(&w).await.unwrap().is_empty());
    assert!(src.annotations(&w).await.unwrap().is_empty());
    assert!(src.images(&w).await.unwrap().is_empty());
    assert!(src.cpu_requests(&w).await.unwrap().is_empty());
    for u in Usage::ALL {
        assert!(src.usage(&w, u).await.unwrap().is_empty());
    }
    assert!(
        source(config(matrix_server.url("")))
            .running(&w)
            .await
            .unwrap()
            .is_empty()
    );
    let queries: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.form()[0].1.clone())
        .collect();
    let mut expected = vec![
        promql(Question::Pods, &w),
        promql(Question::Annotations, &w),
        promql(Question::Images, &w),
        promql(Question::CpuRequests, &w),
    ];
    expected.extend(Usage::ALL.map(|u| promql(Question::Usage(u), &w)));
    assert_eq!(queries, expected);
}

#[tokio::test]
async fn stream_hands_over_every_row_in_batches_and_folds_like_the_whole_answer() {
    const SERIES: usize = 700;
    let mut result = Vec::new();
    for s in 0..SERIES {
        result.push(format!(
            r#"{{"metric":{{"namespace":"hub","pod":"jupyter-{s}","uid":"uid-{s:04}"}},"value":[1700000000,"{s}"]}}"#
        ));
    }
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        result.join(",")
    );
    let server = Server::start(vec![json("200 OK", &body), json("200 OK", &body)]).await;
    let src = source(config(server.url("")));
    let w = window();
    let mut batches = Vec::new();
    let mut sink = |a: Answer| batches.push(a);
    src.stream(&w, Question::Pods, &mut sink).await.unwrap();
    let sizes: Vec<usize> = batches
        .iter()
        .map(|b| match b {
            Answer::Pods(rows) => rows.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), SERIES);
    assert!(
        sizes.len() > 1 && sizes.iter().all(|&n| n <= 256),
        "{sizes:?}"
    );
    let mut streamed: Vec<PodCreated> = batches
        .into_iter()
        .flat_map(|b| match b {
            Answer::Pods(rows) => rows,
            _ => Vec::new(),
        })
        .collect();
    streamed.sort_by(|a, b| a.uid.cmp(&b.uid));
    assert_eq!(streamed, src.pods(&w).await.unwrap());
}
