//! The proxy's header rules, without IO: which headers are hop-by-hop, and the
//! `X-Forwarded-*` headers configurable-http-proxy (`xfwd`) adds.

use std::net::IpAddr;

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The hop-by-hop headers of RFC 9110 section 7.6.1, plus `Keep-Alive` and `Proxy-Connection`
/// (HTTP/1.0 leftovers) and `Upgrade`, which [`strip_hop_by_hop`] keeps for an upgrade.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("keep-alive"),
    header::UPGRADE,
];

/// Whether `headers` ask for a protocol upgrade: `Connection` lists `upgrade` and an `Upgrade`
/// header is present.
pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_lists(headers, "upgrade")
}

/// Whether any `Connection` header lists `token` (case-insensitively).
fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop headers: those listed in `Connection`, the fixed set, and every
/// `Proxy-*` header (`Proxy-Authorization`, `Proxy-Authenticate`, `Proxy-Connection`, and the
/// `Proxy` header of httpoxy). With `upgrade`, `Connection: upgrade` and `Upgrade` are put back
/// for the next hop, and nothing else.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    // Names listed in Connection are hop-by-hop too (RFC 9110 7.6.1). Rare: parsed only when
    // a Connection header names something other than the usual tokens.
    let mut listed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            let usual = ["close", "keep-alive", "upgrade", ""]
                .iter()
                .any(|u| token.eq_ignore_ascii_case(u));
            if !usual && let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                listed.push(name);
            }
        }
    }
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    let proxy_headers: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy"))
        .cloned()
        .collect();
    for name in &proxy_headers {
        headers.remove(name);
    }
    if let Some(value) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, value);
    }
}

/// What configurable-http-proxy's `xfwd` option (on by default) adds, as http-proxy-3's
/// `XHeaders` passes do:
///
/// - `X-Forwarded-For`, `-Port` and `-Proto` get the client's address, the port of the `Host`
///   header (else 80) and `http` (`ws` for an upgrade) appended after a comma to any value the
///   client sent;
/// - `X-Forwarded-Host` is set to the `Host` header unless the client sent one (plain
///   requests only, like http-proxy-3's web pass; its websocket pass leaves it out).
///
/// `client` is `None` when the server was not started with connect info: `X-Forwarded-For`
/// is then left as it came.
pub(super) fn add_forwarded(headers: &mut HeaderMap, client: Option<IpAddr>, upgrade: bool) {
    let host = headers.get(header::HOST).cloned();
    if let Some(ip) = client {
        append(headers, X_FORWARDED_FOR, &ip.to_string());
    }
    let port = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .and_then(port_of)
        .unwrap_or("80");
    append(headers, X_FORWARDED_PORT, port);
    append(
        headers,
        X_FORWARDED_PROTO,
        if upgrade { "ws" } else { "http" },
    );
    if !upgrade
        && !headers.contains_key(X_FORWARDED_HOST)
        && let Some(host) = host
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The port of a `Host` value (`host:port`, `[v6]:port`), as http-proxy-3's `getPort` reads
/// it (`/:(\d+)/`, which also sees the digits after the first colon of a bare IPv6 address;
/// we take the part after the last colon outside brackets instead).
fn port_of(host: &str) -> Option<&str> {
    let (_, port) = host.rsplit_once(':')?;
    (!port.is_empty() && !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some(port)
}

/// Appends `value` to `name` as `old,value` (Node joins repeated headers with `, `, and
/// http-proxy-3 then adds `,value`), or sets it.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut old = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let joined = match (old.next(), old.next()) {
        (None, _) => None,
        (Some(first), None) => Some(format!("{first},{value}")),
        (Some(first), Some(second)) => {
            let mut all = format!("{first}, {second}");
            for more in old {
                all.push_str(", ");
                all.push_str(more);
            }
            all.push(',');
            all.push_str(value);
            Some(all)
        }
    };
    let new = match joined {
        Some(joined) => HeaderValue::from_str(&joined),
        None => HeaderValue::from_str(value),
    };
    if let Ok(new) = new {
        headers.insert(name, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(*k, HeaderValue::from_static(v));
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut h = map(&[
            ("connection", "close, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-connection", "keep-alive"),
            ("proxy", "http://evil.example"),
            ("x-secret-hop", "1"),
            ("host", "gateway.example:8443"),
            ("authorization", "token abc"),
            ("cookie", "a=b"),
            ("content-length", "5"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-length", "cookie", "host"]);
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_a_clean_connection() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("proxy-authorization", "x"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(h.contains_key("sec-websocket-key"));
        assert!(!h.contains_key("proxy-authorization"));
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&map(&[("connection", "upgrade")])));
    }

    #[test]
    fn forwarded_headers_match_configurable_http_proxy() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let mut h = map(&[("host", "gateway.example:8443")]);
        add_forwarded(&mut h, Some(ip), false);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gateway.example:8443");
        assert_eq!(h["host"], "gateway.example:8443");

        let mut h = map(&[
            ("host", "gateway.example"),
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-for", "192.0.2.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.example"),
        ]);
        add_forwarded(&mut h, Some(ip), true);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 192.0.2.2,10.1.2.3");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["x-forwarded-proto"], "https,ws");
        assert_eq!(h["x-forwarded-host"], "public.example");

        let mut h = map(&[("x-forwarded-for", "192.0.2.1")]);
        add_forwarded(&mut h, None, true);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn ports_are_read_from_host_values() {
        assert_eq!(port_of("a.example:8000"), Some("8000"));
        assert_eq!(port_of("[::1]:9000"), Some("9000"));
        assert_eq!(port_of("[::1]"), None);
        assert_eq!(port_of("a.example"), None);
        assert_eq!(port_of("a.example:"), None);
    }
}
