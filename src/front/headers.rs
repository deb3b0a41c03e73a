//! Which headers cross the front, as a reverse proxy must treat them (RFC 9110 §7.6.1): the
//! hop-by-hop ones stay on their hop, and the upstream learns who asked through the
//! `X-Forwarded-*` headers.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never passed on.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether the request asks to switch protocols (a WebSocket handshake): `Connection` names
/// `upgrade` and an `Upgrade` header says to what.
pub(super) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_tokens(headers).any(|t| t == "upgrade")
}

/// The lower-cased tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
}

/// Removes the hop-by-hop headers, those that `Connection` names included. An upgrade keeps
/// its `Upgrade` header and says `Connection: upgrade` again on the next hop.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|token| HeaderName::try_from(token).ok())
        .collect();
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
    if let (true, Some(protocol)) = (upgrade, upgrade_to) {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// A request's headers for the upstream: hop-by-hop ones removed, `Host` left for the client
/// to set to the upstream's, and the caller named in `X-Forwarded-For` (appended to what a
/// proxy before us wrote), `-Proto` and `-Host` (kept when a proxy before us set them).
pub(super) fn for_upstream(headers: &mut HeaderMap, peer: Option<SocketAddr>, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    // This hop answered `Expect: 100-continue` already (hyper does when the body is read).
    headers.remove(header::EXPECT);
    let host = headers.remove(header::HOST);
    if let Some(peer) = peer {
        let ip = peer.ip().to_canonical().to_string();
        let chain = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::to_str) {
            Some(Ok(before)) if !before.trim().is_empty() => format!("{before}, {ip}"),
            _ => ip,
        };
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let (false, Some(host)) = (headers.contains_key(&X_FORWARDED_HOST), host) {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind() {
        let mut sent = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic eA=="),
            ("authorization", "Bearer token"),
            ("host", "front.example"),
            ("expect", "100-continue"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        let peer = "[::ffff:192.0.2.7]:4000".parse().ok();
        for_upstream(&mut sent, peer, false);
        let names: Vec<&str> = sent.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "authorization",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host"
            ]
        );
        assert_eq!(sent["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(sent["x-forwarded-host"], "front.example");
    }

    #[test]
    fn an_upgrade_keeps_its_upgrade_headers() {
        let mut sent = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&sent));
        for_upstream(&mut sent, None, true);
        assert_eq!(sent["upgrade"], "websocket");
        assert_eq!(sent["connection"], "upgrade");
        assert!(!wants_upgrade(&headers(&[("upgrade", "websocket")])));
    }
}
