//! gzip on every core. The input is cut into blocks of [`BLOCK`] bytes and each block is
//! deflated on a blocking thread of its own, independently of the others, ending with a sync
//! flush (byte-aligned, not final). Written in order between one gzip header and one trailer,
//! the blocks make a single ordinary gzip member that every client reads, the layout pigz
//! uses. Each block starts with an empty window, which costs ~0.4% of size at 512 KiB; the
//! CRC-32 of each block is computed with it and combined in order.
//!
//! deflate at a fast level is what limits a gzip answer (~150 MB/s per core, about what one
//! PostgreSQL backend sends); on one thread it capped every gzip dump there, whatever the
//! machine. Block by block it uses every core, at the price of a few blocks in memory.

use std::io::{self, Write};

use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use super::Message;

/// deflate's level: flate2's (miniz_oxide) level 1 stays within ~9% of `gzip -6`'s size on
/// pg_dump's output at ~150 MB/s per core; higher levels halve the speed for a few percent.
const LEVEL: u32 = 1;
/// Input bytes per block: large enough that an empty window at each start costs ~0.4%,
/// small enough that the blocks in flight stay a few MiB.
const BLOCK: usize = 512 * 1024;
/// The gzip header: magic, deflate, no flags, no time, fastest level, unknown system.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
/// An empty final block (fixed codes, end of block): ends the deflate stream.
const LAST_BLOCK: [u8; 2] = [0x03, 0x00];

/// One block, deflated.
struct Deflated {
    bytes: Bytes,
    crc: crc32fast::Hasher,
    len: usize,
}

/// Deflates `block` on its own, ending in a sync flush so that another block may follow.
fn deflate(block: &[u8]) -> io::Result<Deflated> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(block);
    let out = Vec::with_capacity(block.len() / 2 + 64);
    let mut encoder = flate2::write::DeflateEncoder::new(out, flate2::Compression::new(LEVEL));
    encoder.write_all(block)?;
    // flate2's flush is deflate's sync flush: everything out, byte-aligned, not final.
    encoder.flush()?;
    // Taken before the encoder is dropped, which finishes the stream into the emptied buffer.
    let bytes = std::mem::take(encoder.get_mut());
    Ok(Deflated {
        bytes: Bytes::from(bytes),
        crc,
        len: block.len(),
    })
}

/// What the member's trailer needs: the CRC-32 and the length of everything so far.
#[derive(Default)]
struct Member {
    crc: crc32fast::Hasher,
    len: u32,
}

impl Member {
    fn add(&mut self, block: &Deflated) {
        self.crc.combine(&block.crc);
        // ISIZE is the length modulo 2^32.
        self.len = self.len.wrapping_add(block.len as u32);
    }

    /// The last block and the trailer (CRC-32, then ISIZE, little-endian).
    fn end(self) -> Bytes {
        let mut end = Vec::with_capacity(LAST_BLOCK.len() + 8);
        end.extend_from_slice(&LAST_BLOCK);
        end.extend_from_slice(&self.crc.finalize().to_le_bytes());
        end.extend_from_slice(&self.len.to_le_bytes());
        Bytes::from(end)
    }
}

/// `body` as one gzip member, compressed at once.
pub(super) fn compress_all(body: &[u8]) -> io::Result<Bytes> {
    let mut member = Member::default();
    let block = deflate(body)?;
    member.add(&block);
    Ok([&HEADER[..], &block.bytes, &member.end()].concat().into())
}

/// How many blocks are deflated at once: one per core, at least two so that reading the
/// next block overlaps deflating the last.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// The compressor: deflates what the reader sends, block by block on blocking threads, and
/// passes each block on in order as soon as it and those before it are done. A flush from the
/// reader sends the partial block it has. Returns when the body is gone.
pub(super) async fn compress(
    mut input: mpsc::Receiver<Message>,
    body: mpsc::Sender<io::Result<Bytes>>,
) {
    let workers = workers();
    let mut jobs: FuturesOrdered<JoinHandle<io::Result<Deflated>>> = FuturesOrdered::new();
    let mut block = Vec::with_capacity(BLOCK);
    let mut member = Member::default();
    let start = |block: &mut Vec<u8>| {
        let full = std::mem::replace(block, Vec::with_capacity(BLOCK));
        tokio::task::spawn_blocking(move || deflate(&full))
    };
    if body.send(Ok(Bytes::from_static(&HEADER))).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            biased;
            Some(done) = jobs.next(), if !jobs.is_empty() => {
                if !pass_on(done, &mut member, &body).await {
                    return;
                }
            }
            message = input.recv(), if jobs.len() < workers => {
                let end = match message {
                    Some(Message::Data(chunk)) => {
                        block.extend_from_slice(&chunk);
                        if block.len() >= BLOCK {
                            jobs.push_back(start(&mut block));
                        }
                        continue;
                    }
                    Some(Message::Flush) => {
                        if !block.is_empty() {
                            jobs.push_back(start(&mut block));
                        }
                        continue;
                    }
                    Some(Message::End) => Ok(()),
                    Some(Message::Failed(err)) => Err(err),
                    // The reader left: the body is gone.
                    None => return,
                };
                if !block.is_empty() {
                    jobs.push_back(start(&mut block));
                }
                finish(jobs, member, end, &body).await;
                return;
            }
        }
    }
}

/// Sends the blocks still being deflated, in order, then the member's end, or `failed`'s
/// error in its place, so that the client sees a truncated answer.
async fn finish(
    mut jobs: FuturesOrdered<JoinHandle<io::Result<Deflated>>>,
    mut member: Member,
    failed: io::Result<()>,
    body: &mpsc::Sender<io::Result<Bytes>>,
) {
    while let Some(done) = jobs.next().await {
        if !pass_on(done, &mut member, body).await {
            return;
        }
    }
    let _ = match failed {
        Ok(()) => body.send(Ok(member.end())).await,
        Err(err) => body.send(Err(err)).await,
    };
}

/// Passes a deflated block on; `false` when the stream must stop: the body is gone, or the
/// block failed and its error went in its place.
async fn pass_on(
    done: Result<io::Result<Deflated>, JoinError>,
    member: &mut Member,
    body: &mpsc::Sender<io::Result<Bytes>>,
) -> bool {
    match done.unwrap_or_else(|panicked| Err(io::Error::other(panicked))) {
        Ok(deflated) => {
            member.add(&deflated);
            body.send(Ok(deflated.bytes)).await.is_ok()
        }
        Err(err) => {
            let _ = body.send(Err(err)).await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut plain)
            .expect("one valid gzip member");
        plain
    }

    #[test]
    fn blocks_deflated_apart_make_one_member() {
        let text: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("{i}\trow {}\n", i % 97).into_bytes())
            .collect();
        let mut member = Member::default();
        let mut out = HEADER.to_vec();
        for block in text.chunks(200_000).chain([&b""[..]]) {
            let deflated = deflate(block).unwrap();
            member.add(&deflated);
            out.extend_from_slice(&deflated.bytes);
        }
        out.extend_from_slice(&member.end());
        assert_eq!(gunzip(&out), text);
        // A multi-member reader would hide a second member; the whole is one member.
        let mut decoder = flate2::read::GzDecoder::new(&out[..]);
        io::Read::read_to_end(&mut decoder, &mut Vec::new()).unwrap();
        assert!(decoder.into_inner().is_empty(), "bytes after the member");
    }

    #[test]
    fn small_and_empty_bodies() {
        for body in [&b""[..], b"x", b"{\"error\": \"no\"}"] {
            assert_eq!(gunzip(&compress_all(body).unwrap()), body);
        }
    }

    #[test]
    fn the_trailer_counts_length_modulo_2_32() {
        let mut member = Member {
            len: u32::MAX,
            ..Member::default()
        };
        member.add(&deflate(b"ab").unwrap());
        let end = member.end();
        assert_eq!(&end[end.len() - 4..], &1u32.to_le_bytes());
    }
}
