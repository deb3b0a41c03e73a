//! Which content coding a request's `Accept-Encoding` asks for (RFC 9110 §12.5.3): pure.

use super::SMALL_ANSWER;

/// A content coding the server can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Zstd,
    Gzip,
}

impl Coding {
    /// Its `Content-Encoding` token.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }
}

/// What a request's `Accept-Encoding` allows for a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// The coding to use for an answer worth compressing; `None`: send it as it is.
    pub coding: Option<Coding>,
    /// The client refused `identity` (`identity;q=0`, or `*;q=0` without `identity`): even a
    /// small answer is compressed.
    pub identity_refused: bool,
}

impl Negotiated {
    /// The coding for an answer that starts with `prefix` (its whole body when shorter than
    /// [`SMALL_ANSWER`]).
    pub(crate) fn for_answer(self, prefix_len: usize) -> Option<Coding> {
        match prefix_len < SMALL_ANSWER && !self.identity_refused {
            true => None,
            false => self.coding,
        }
    }
}

/// The client accepts neither `identity` nor any coding the server has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotAcceptable;

/// Reads the `Accept-Encoding` values of a request (RFC 9110 §12.5.3): q-values, `*`, and
/// `identity` refused by `q=0`. Without the header, the answer is not compressed. Of the
/// codings offered with the highest q-value, zstd wins over gzip; `identity` listed with a
/// higher q-value than either wins over both. Unknown codings and malformed entries are
/// ignored.
pub(crate) fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Negotiated, NotAcceptable> {
    let mut zstd = None;
    let mut gzip = None;
    let mut identity = None;
    let mut star = None;
    let mut any = false;
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            let Some(q) = qvalue(parts) else {
                continue;
            };
            any = true;
            let slot = match name.as_str() {
                "zstd" => &mut zstd,
                "gzip" | "x-gzip" => &mut gzip,
                "identity" => &mut identity,
                "*" => &mut star,
                _ => continue,
            };
            // Listed twice: the first one counts.
            slot.get_or_insert(q);
        }
    }
    if !any {
        return Ok(Negotiated {
            coding: None,
            identity_refused: false,
        });
    }
    let zstd = zstd.or(star).unwrap_or(0);
    let gzip = gzip.or(star).unwrap_or(0);
    let identity_refused = match identity {
        Some(q) => q == 0,
        None => star == Some(0),
    };
    let (best, q) = match zstd >= gzip {
        true => (Coding::Zstd, zstd),
        false => (Coding::Gzip, gzip),
    };
    let coding = match q {
        0 => None,
        // The client prefers the answer as it is.
        q if identity.is_some_and(|identity| identity > q) => None,
        _ => Some(best),
    };
    if coding.is_none() && identity_refused {
        return Err(NotAcceptable);
    }
    Ok(Negotiated {
        coding,
        identity_refused,
    })
}

/// The q-value of an entry's parameters in thousandths (1000 when absent); `None` when
/// malformed.
fn qvalue<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut q = 1000;
    for param in params {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let (int, frac) = value.split_once('.').unwrap_or((value, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let frac = format!("{frac:0<3}").parse::<u16>().ok()?;
        q = match int {
            "0" => frac,
            "1" if frac == 0 => 1000,
            _ => return None,
        };
    }
    Some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(header: &str) -> Result<Negotiated, NotAcceptable> {
        negotiate([header.as_bytes()])
    }

    fn coding(header: &str) -> Option<Coding> {
        negotiated(header).expect("acceptable").coding
    }

    #[test]
    fn accept_encoding_picks_by_q_value_then_zstd_before_gzip() {
        use Coding::{Gzip, Zstd};
        let cases = [
            ("", None),
            ("gzip", Some(Gzip)),
            ("GZip", Some(Gzip)),
            ("x-gzip", Some(Gzip)),
            ("zstd", Some(Zstd)),
            ("gzip, zstd", Some(Zstd)),
            ("zstd,gzip", Some(Zstd)),
            ("gzip, deflate, br", Some(Gzip)),
            ("gzip, deflate, br, zstd", Some(Zstd)),
            ("br", None),
            ("deflate;q=1, compress", None),
            ("gzip;q=1.0, zstd;q=0.5", Some(Gzip)),
            ("gzip;q=0.8, zstd;q=0.801", Some(Zstd)),
            ("gzip;q=0", None),
            ("gzip;q=0.0, zstd;q=0", None),
            ("zstd;q=0, gzip", Some(Gzip)),
            ("zstd;q=0, *", Some(Gzip)),
            ("*", Some(Zstd)),
            ("*;q=0.5, gzip", Some(Gzip)),
            ("identity", None),
            ("identity;q=1, gzip;q=0.5", None),
            ("identity;q=0.5, gzip", Some(Gzip)),
            ("gzip, identity", Some(Gzip)),
            ("gzip;q=2", None),
            ("gzip;q=0.1234", None),
            ("gzip;q=x", None),
            ("gzip ; Q = 0.5 ", Some(Gzip)),
            ("gzip;level=9", Some(Gzip)),
            (" , ,gzip", Some(Gzip)),
        ];
        for (header, want) in cases {
            assert_eq!(coding(header), want, "{header:?}");
        }
    }

    #[test]
    fn identity_refused_compresses_small_answers_or_is_not_acceptable() {
        let refused = negotiated("gzip, identity;q=0").unwrap();
        assert!(refused.identity_refused);
        assert_eq!(refused.for_answer(10), Some(Coding::Gzip));
        let star = negotiated("zstd, *;q=0").unwrap();
        assert!(star.identity_refused);
        assert_eq!(star.for_answer(0), Some(Coding::Zstd));
        assert!(
            !negotiated("gzip, identity, *;q=0")
                .unwrap()
                .identity_refused
        );
        let plain = negotiated("gzip").unwrap();
        assert_eq!(plain.for_answer(SMALL_ANSWER - 1), None);
        assert_eq!(plain.for_answer(SMALL_ANSWER), Some(Coding::Gzip));
        for header in [
            "identity;q=0",
            "*;q=0",
            "br, identity;q=0",
            "gzip;q=0, *;q=0",
        ] {
            assert_eq!(negotiated(header), Err(NotAcceptable), "{header:?}");
        }
    }

    #[test]
    fn several_headers_are_one_list() {
        let got = negotiate([&b"br"[..], &b"gzip;q=0.5"[..], &b"zstd;q=0.4"[..]]).unwrap();
        assert_eq!(got.coding, Some(Coding::Gzip));
    }
}
