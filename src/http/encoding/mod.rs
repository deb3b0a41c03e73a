//! Content codings of a dump's answer: which one a request's `Accept-Encoding` asks for
//! ([`negotiate`], pure), and the compressor that turns pg_dump's output into it on a thread of
//! its own ([`compress`]), so that reading pg_dump's pipe and compressing run side by side.
//!
//! Only dumps are compressed, as Hasura compresses only successful answers: error answers,
//! `/healthz`, `/v1/version` and `/v1/metrics` never are. A dump shorter than
//! [`SMALL_ANSWER`] is sent as it is unless the client refused `identity`.

mod negotiate;

use std::io::{self, Write};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

pub(crate) use negotiate::{negotiate, Coding, Negotiated};

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
        for coding in [Coding::Zstd, Coding::Gzip] {
            let input = futures_util::stream::iter([
                Ok(Bytes::from_static(b"abc")),
                Err(io::Error::other("pg_dump failed")),
            ]);
            let out: Vec<_> = compress(coding, input).collect().await;
            let err = out.last().unwrap().as_ref().unwrap_err();
            assert_eq!(err.to_string(), "pg_dump failed", "{coding:?}");
        }
    }

    #[tokio::test]
    async fn a_pause_in_the_input_sends_what_is_compressed_so_far() {
        for coding in [Coding::Zstd, Coding::Gzip] {
            let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(1);
            let input =
                futures_util::stream::unfold(
                    rx,
                    |mut rx| async move { Some((rx.recv().await?, rx)) },
                );
            let mut out = Box::pin(compress(coding, Box::pin(input)));
            tx.send(Ok(Bytes::from_static(b"COPY public.t (a) FROM stdin;\n")))
                .await
                .unwrap();
            // Nothing more comes for a while (pg_dump waits on a lock): the first line must
            // still reach the client, decodable as far as it goes.
            let mut sent = Vec::new();
            while !decodes_to_prefix(coding, &sent, b"COPY public.t") {
                let chunk = tokio::time::timeout(IDLE_FLUSH * 5, out.next())
                    .await
                    .unwrap_or_else(|_| panic!("{coding:?}: nothing sent during the pause"));
                sent.extend_from_slice(&chunk.unwrap().unwrap());
            }
            drop(tx);
        }
    }

    /// Whether the compressed bytes so far decode to text starting with `prefix`.
    fn decodes_to_prefix(coding: Coding, compressed: &[u8], prefix: &[u8]) -> bool {
        let mut plain = Vec::new();
        let _ = match coding {
            Coding::Zstd => io::Read::read_to_end(
                &mut zstd::stream::read::Decoder::new(compressed).unwrap(),
                &mut plain,
            ),
            Coding::Gzip => {
                io::Read::read_to_end(&mut flate2::read::GzDecoder::new(compressed), &mut plain)
            }
        };
        plain.starts_with(prefix)
    }
}
