//! The native-messaging wire format: each message is a 4-byte length in the machine's own byte
//! order, then that many bytes of UTF-8 JSON, in both directions.
//!
//! Reading never trusts the length: a message over [`MAX_FROM_BROWSER`] is read and dropped
//! (so the next one is read from its own start), and a stream that ends inside a message is
//! reported, not taken as a message. What is wrong with a message is the caller's to answer.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most the browser accepts from a host in one message (Chrome and Firefox: 1 MiB).
pub const MAX_TO_BROWSER: usize = 1024 * 1024;

/// The most this host reads from the browser in one message. Requests are small; the
/// browsers allow far more (Chrome 64 MiB), which is no reason to buffer it.
pub const MAX_FROM_BROWSER: u64 = 1024 * 1024;

/// What one read of the input gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message's bytes (not yet checked as JSON).
    Message(Vec<u8>),
    /// A message longer than [`MAX_FROM_BROWSER`]; its bytes were read and dropped.
    TooLarge { length: u64 },
    /// The input ended inside a message: `received` of `expected` bytes (counting the 4-byte
    /// length itself when that was cut short).
    Truncated { expected: u64, received: u64 },
    /// The input ended between messages: the browser closed the port.
    End,
}

/// Reads the next message from `input`.
pub async fn read_message<R: AsyncRead + Unpin>(input: &mut R) -> std::io::Result<Incoming> {
    let mut header = [0u8; 4];
    let got = read_full(input, &mut header).await?;
    if got == 0 {
        return Ok(Incoming::End);
    }
    if got < header.len() {
        return Ok(Incoming::Truncated {
            expected: header.len() as u64,
            received: got as u64,
        });
    }
    let length = u64::from(u32::from_ne_bytes(header));
    if length > MAX_FROM_BROWSER {
        tokio::io::copy(&mut input.take(length), &mut tokio::io::sink()).await?;
        return Ok(Incoming::TooLarge { length });
    }
    let mut body = vec![0u8; length as usize];
    let got = read_full(input, &mut body).await?;
    if got < body.len() {
        return Ok(Incoming::Truncated {
            expected: length,
            received: got as u64,
        });
    }
    Ok(Incoming::Message(body))
}

/// Reads until `buffer` is full or the input ends; returns how many bytes were read.
async fn read_full<R: AsyncRead + Unpin>(
    input: &mut R,
    buffer: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = input.read(&mut buffer[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// The bytes of one message: its length, then `body`. `body` must be at most
/// [`MAX_TO_BROWSER`] bytes (the host's answers are, see `protocol::encode`).
pub fn frame(body: &[u8]) -> Vec<u8> {
    let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut bytes = Vec::with_capacity(body.len() + 4);
    bytes.extend_from_slice(&length.to_ne_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// Writes one message and flushes it, so the browser sees it at once.
pub async fn write_message<W: AsyncWrite + Unpin>(
    output: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    output.write_all(&frame(body)).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: Vec<u8>) -> Vec<Incoming> {
        let mut input = std::io::Cursor::new(bytes);
        let mut out = Vec::new();
        loop {
            let message = read_message(&mut input).await.unwrap();
            let end = matches!(message, Incoming::End | Incoming::Truncated { .. });
            out.push(message);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn messages_are_read_one_after_another() {
        let mut bytes = frame(br#"{"type":"list"}"#);
        bytes.extend(frame(b"{}"));
        assert_eq!(
            read_all(bytes).await,
            vec![
                Incoming::Message(br#"{"type":"list"}"#.to_vec()),
                Incoming::Message(b"{}".to_vec()),
                Incoming::End
            ]
        );
    }

    #[tokio::test]
    async fn an_oversized_message_is_dropped_and_the_next_one_read() {
        let big = vec![b' '; MAX_FROM_BROWSER as usize + 1];
        let mut bytes = frame(&big);
        bytes.extend(frame(b"{}"));
        assert_eq!(
            read_all(bytes).await,
            vec![
                Incoming::TooLarge {
                    length: MAX_FROM_BROWSER + 1
                },
                Incoming::Message(b"{}".to_vec()),
                Incoming::End
            ]
        );
    }

    #[tokio::test]
    async fn a_cut_message_or_length_is_truncated() {
        let mut bytes = frame(b"{\"type\":\"list\"}");
        bytes.truncate(10);
        assert_eq!(
            read_all(bytes).await,
            vec![Incoming::Truncated {
                expected: 15,
                received: 6
            }]
        );
        assert_eq!(
            read_all(vec![1, 0]).await,
            vec![Incoming::Truncated {
                expected: 4,
                received: 2
            }]
        );
    }

    #[test]
    fn the_length_is_in_native_byte_order() {
        let bytes = frame(b"abc");
        assert_eq!(&bytes[..4], &3u32.to_ne_bytes());
        assert_eq!(&bytes[4..], b"abc");
    }
}
