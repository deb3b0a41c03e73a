use super::claims::Step;
use super::keys::lifetime;
use super::*;

#[test]
fn json_paths_parse() {
    assert_eq!(
        json_path("$.a['b.c'][2][\"d\"]").unwrap(),
        vec![
            Step::Key("a".into()),
            Step::Key("b.c".into()),
            Step::Index(2),
            Step::Key("d".into())
        ]
    );
    assert_eq!(json_path("$").unwrap(), vec![]);
    for bad in ["a.b", "$..a", "$[x]", "$[1", "$a"] {
        assert!(json_path(bad).is_err(), "{bad}");
    }
}

#[test]
fn cache_lifetime_from_headers() {
    let headers = |pairs: &[(&'static str, &str)]| {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    };
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(
        lifetime(&headers(&[("cache-control", "public, max-age=300")])),
        secs(300)
    );
    assert_eq!(
        lifetime(&headers(&[("cache-control", "s-maxage=5")])),
        secs(5)
    );
    assert_eq!(
        lifetime(&headers(&[("cache-control", "no-cache")])),
        secs(0)
    );
    assert_eq!(lifetime(&headers(&[])), None);
    assert_eq!(
        lifetime(&headers(&[("expires", "Thu, 01 Jan 1970 00:00:00 GMT")])),
        secs(0)
    );
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
    let got = lifetime(&headers(&[("expires", &later)])).unwrap();
    assert!(
        got > Duration::from_secs(90) && got <= Duration::from_secs(100),
        "{got:?}"
    );
}

#[test]
fn configuration_errors_are_hasuras() {
    let client = reqwest::Client::new();
    for (config, expected) in [
        (
            r#"{"type":"HS256","key":"short"}"#,
            "Key size too small; should be atleast 32 characters",
        ),
        (
            r#"{"type":"RS256","key":"not a pem"}"#,
            "Invalid JWK: Could not decode PEM",
        ),
        (
            r#"{"type":"PS256","key":"x"}"#,
            "Key type: PS256 is not supported",
        ),
        (
            r#"{"type":"ES512","key":"x"}"#,
            "ES512 is not supported by pgdump-api",
        ),
        (
            r#"{"type":"HS256"}"#,
            "key and jwk_url both cannot be empty",
        ),
        (
            r#"{"key":"k","jwk_url":"http://x/"}"#,
            "key, jwk_url both cannot be present",
        ),
        (
            r#"{"jwk_url":"http://x/","claims_namespace":"a","claims_namespace_path":"$.a"}"#,
            "claims_namespace and claims_namespace_path both cannot be set",
        ),
        (
            r#"{"jwk_url":"http://x/","claims_format":"xml"}"#,
            "expected \"json\" or \"stringified_json\"",
        ),
        (
            r#"{"jwk_url":"http://x/","header":{"type":"Cookie"}}"#,
            "\"name\" must be a string",
        ),
    ] {
        let err = JwtConfig::parse(&serde_json::from_str(config).unwrap(), &client).unwrap_err();
        assert!(err.contains(expected), "{config}: {err}");
    }
}

#[test]
fn tokens_are_found_where_configured() {
    let headers: HeaderMap = [
        ("authorization", "Bearer abc"),
        ("cookie", "a=1; jwt=tok; b=2"),
        ("x-token", "custom"),
    ]
    .iter()
    .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
    .collect();
    assert_eq!(Location::Authorization.tokens(&headers).unwrap(), ["abc"]);
    assert_eq!(
        Location::Cookie("jwt".into()).tokens(&headers).unwrap(),
        ["tok"]
    );
    assert_eq!(
        Location::Header("x-token".into()).tokens(&headers).unwrap(),
        ["custom"]
    );
    let malformed: HeaderMap = [("authorization", "Basic abc")]
        .iter()
        .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
        .collect();
    assert!(matches!(
        Location::Authorization.tokens(&malformed),
        Err(AuthError::Refused {
            code: "invalid-headers",
            ..
        })
    ));
}
