//! Content codings of a dump's answer: which one a request's `Accept-Encoding` asks for
//! ([`negotiate`], pure), and the compressor that turns pg_dump's output into it on a thread of
//! its own ([`compress`]), so that reading pg_dump's pipe and compressing run side by side.
//!
//! Only dumps are compressed, as Hasura compresses only successful answers: error answers,
//! `/healthz`, `/v1/version` and `/v1/metrics` never are. A dump shorter than
//! [`SMALL_ANSWER`] is sent as it is unless the client refused `identity`.

use std::io::{self, Write};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

/// Answers shorter than this are not worth compressing (Hasura's cut-off: most such answers
/// shrink by nothing, and the header costs as much as it saves).
pub(crate) const SMALL_ANSWER: usize = 700;

/// zstd's level: the fastest of the normal levels, at ~300 MB/s per core well above what a
/// PostgreSQL backend produces, and smaller than `gzip -6` on pg_dump's output.
const ZSTD_LEVEL: i32 = 1;
/// deflate's level: flate2's (miniz_oxide) level 1 keeps up with most dumps on one core and
/// stays within ~11% of `gzip -6`'s size; higher levels halve the speed for a few percent.
const GZIP_LEVEL: u32 = 1;

/// Compressed bytes are sent once this many have gathered (or the input paused).
const OUT_CHUNK: usize = 64 * 1024;
/// Chunks of pg_dump's output queued for the compressor: the slack that lets pg_dump run on
/// while a chunk is compressed (at most 64 KiB each).
const IN_QUEUE: usize = 16;
/// Compressed chunks queued for the connection.
const OUT_QUEUE: usize = 4;
/// How long the input may pause before what is compressed so far is flushed to the client,
/// so that a dump waiting on a lock still shows its progress.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

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

/// An encoder writing into a buffer that is taken as it fills.
enum Encoder {
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
}

impl Encoder {
    fn new(coding: Coding) -> io::Result<Encoder> {
        Ok(match coding {
            Coding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                Vec::with_capacity(OUT_CHUNK),
                ZSTD_LEVEL,
            )?),
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::with_capacity(OUT_CHUNK),
                flate2::Compression::new(GZIP_LEVEL),
            )),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Zstd(encoder) => encoder,
            Encoder::Gzip(encoder) => encoder,
        }
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Zstd(encoder) => encoder.get_mut(),
            Encoder::Gzip(encoder) => encoder.get_mut(),
        }
    }

    /// The compressed bytes so far.
    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::replace(
            self.buffer(),
            Vec::with_capacity(OUT_CHUNK),
        ))
    }

    /// Ends the stream; returns its last bytes.
    fn finish(self) -> io::Result<Bytes> {
        let rest = match self {
            Encoder::Zstd(encoder) => encoder.finish()?,
            Encoder::Gzip(encoder) => encoder.finish()?,
        };
        Ok(Bytes::from(rest))
    }
}

/// Compresses a whole (small) body at once.
pub(crate) fn compress_all(coding: Coding, body: &[u8]) -> io::Result<Bytes> {
    let mut encoder = Encoder::new(coding)?;
    encoder.writer().write_all(body)?;
    encoder.finish()
}

/// What the reader hands the compressor.
enum Message {
    Data(Bytes),
    /// The input paused: send what is compressed so far.
    Flush,
    /// The input ended.
    End,
    /// The input failed: the compressed stream stops unfinished, so the client sees a
    /// truncated answer, as with any dump that fails midway.
    Failed(io::Error),
}

/// `input` compressed with `coding`. pg_dump's output is read by a task of its own and
/// compressed on a blocking thread, with bounded queues between them, so neither waits for the
/// other while both have work, and memory stays bounded. Dropping the returned stream (the
/// client left) drops `input` at once, even while it is waiting for pg_dump.
pub(crate) fn compress<S>(coding: Coding, input: S) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
{
    let (to_compressor, from_reader) = mpsc::channel(IN_QUEUE);
    let (to_body, body) = mpsc::channel(OUT_QUEUE);
    tokio::spawn(read(input, to_compressor, to_body.clone()));
    tokio::task::spawn_blocking(move || compress_blocking(coding, from_reader, to_body));
    futures_util::stream::unfold(body, |mut body| async move {
        let next = body.recv().await?;
        Some((next, body))
    })
}

/// The reader: forwards `input` to the compressor, asks for a flush when it pauses, and gives
/// up as soon as the body is gone (`body` closed).
async fn read<S>(
    mut input: S,
    compressor: mpsc::Sender<Message>,
    body: mpsc::Sender<io::Result<Bytes>>,
) where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let mut unflushed = false;
    loop {
        let idle = async {
            match unflushed {
                true => tokio::time::sleep(IDLE_FLUSH).await,
                false => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            biased;
            () = body.closed() => return,
            next = input.next() => match next {
                Some(Ok(chunk)) => Message::Data(chunk),
                Some(Err(err)) => Message::Failed(err),
                None => Message::End,
            },
            () = idle => Message::Flush,
        };
        let last = matches!(message, Message::End | Message::Failed(_));
        unflushed = matches!(message, Message::Data(_));
        tokio::select! {
            biased;
            () = body.closed() => return,
            sent = compressor.send(message) => if sent.is_err() {
                return;
            },
        }
        if last {
            return;
        }
    }
}

/// The compressor, on a blocking thread: compresses what the reader sends and passes the
/// output on in chunks of about [`OUT_CHUNK`].
fn compress_blocking(
    coding: Coding,
    mut input: mpsc::Receiver<Message>,
    body: mpsc::Sender<io::Result<Bytes>>,
) {
    let send = |bytes: Bytes| bytes.is_empty() || body.blocking_send(Ok(bytes)).is_ok();
    let mut encoder = match Encoder::new(coding) {
        Ok(encoder) => encoder,
        Err(err) => {
            let _ = body.blocking_send(Err(err));
            return;
        }
    };
    while let Some(message) = input.blocking_recv() {
        let done = match message {
            Message::Data(chunk) => match encoder.writer().write_all(&chunk) {
                Ok(()) if encoder.buffer().len() >= OUT_CHUNK => send(encoder.take()),
                Ok(()) => true,
                Err(err) => {
                    let _ = body.blocking_send(Err(err));
                    return;
                }
            },
            Message::Flush => match encoder.writer().flush() {
                Ok(()) => send(encoder.take()),
                Err(err) => {
                    let _ = body.blocking_send(Err(err));
                    return;
                }
            },
            Message::End => {
                let tail = encoder.take();
                let _ = send(tail)
                    && match encoder.finish() {
                        Ok(rest) => send(rest),
                        Err(err) => body.blocking_send(Err(err)).is_ok(),
                    };
                return;
            }
            Message::Failed(err) => {
                let _ = send(encoder.take()) && body.blocking_send(Err(err)).is_ok();
                return;
            }
        };
        if !done {
            // The body is gone.
            return;
        }
    }
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

    async fn round_trip(coding: Coding, chunks: Vec<Bytes>) -> Vec<u8> {
        let input = futures_util::stream::iter(chunks.into_iter().map(Ok));
        let out: Vec<u8> = compress(coding, input)
            .map(|chunk| chunk.expect("no error"))
            .collect::<Vec<_>>()
            .await
            .concat();
        match coding {
            Coding::Zstd => zstd::decode_all(&out[..]).unwrap(),
            Coding::Gzip => {
                let mut plain = Vec::new();
                io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut plain)
                    .unwrap();
                plain
            }
        }
    }

    #[tokio::test]
    async fn compressed_streams_round_trip() {
        let chunks: Vec<Bytes> = (0..200)
            .map(|i| Bytes::from(format!("{i}\tline {}\n", "x".repeat(i * 37)).repeat(50)))
            .collect();
        let whole = chunks.concat();
        for coding in [Coding::Zstd, Coding::Gzip] {
            assert_eq!(
                round_trip(coding, chunks.clone()).await,
                whole,
                "{coding:?}"
            );
            assert_eq!(round_trip(coding, Vec::new()).await, b"", "{coding:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_input_ends_the_compressed_stream_with_the_error() {
        let input = futures_util::stream::iter([
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::other("pg_dump failed")),
        ]);
        let out: Vec<_> = compress(Coding::Zstd, input).collect().await;
        let err = out.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.to_string(), "pg_dump failed");
    }
}
