//! Reading a connection's HTTP request head before anyone else does, and
//! giving the bytes back to tungstenite when it is an upgrade.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Method, Version};

/// The largest request head the hub reads: 64 KiB, the limit tungstenite
/// applies to an upgrade request itself, so no upgrade that worked before
/// the HTTP side is refused now. It is the whole of a connection's buffer
/// while it handshakes, allocated as the head arrives: with
/// `max_pending_handshakes` at its default (256), at most 16 MiB in all.
/// A larger head is answered with 431.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// Most header lines in a head: as many as tungstenite itself accepts.
const MAX_HEADERS: usize = 124;

/// Room for the first read: a typical upgrade request is 200–300 bytes,
/// and every connection allocates this much while it handshakes.
const FIRST_READ: usize = 1024;

/// Room for each later read while the head is incomplete.
const READ_CHUNK: usize = 4096;

/// Why no request head could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// Over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] lines: 431.
    TooLarge,
    /// Not an HTTP/1.x request head: 400.
    Malformed,
    /// The peer closed before the head was complete.
    Closed,
    /// Reading failed (the peer reset the connection).
    Io,
}

/// A complete request head, and every byte read so far (the head and
/// anything the client sent after it).
#[derive(Debug)]
pub(crate) struct Head {
    /// What was read, to replay to tungstenite for an upgrade.
    pub(crate) bytes: Vec<u8>,
    /// The head, parsed.
    pub(crate) request: Request,
    /// It asks for `Upgrade: websocket`.
    pub(crate) websocket: bool,
}

/// Reads until a whole request head is in, at most [`MAX_HEAD`] bytes.
/// The caller bounds the time (the handshake timeout).
pub(crate) async fn read_head<S>(socket: &mut S) -> Result<Head, HeadError>
where
    S: AsyncRead + Unpin,
{
    let mut bytes = Vec::new();
    loop {
        let filled = bytes.len();
        // One byte past the limit tells "exactly full" from "too large".
        let chunk = if filled == 0 { FIRST_READ } else { READ_CHUNK };
        let room = (MAX_HEAD + 1 - filled).min(chunk);
        // Exact: the buffer never grows past the limit (plus one byte).
        bytes.reserve_exact(room);
        bytes.resize(filled + room, 0);
        let read = socket.read(&mut bytes[filled..]).await;
        let n = match read {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(_) => return Err(HeadError::Io),
        };
        bytes.truncate(filled + n);
        if let Some((request, websocket)) = parse(&bytes)? {
            return Ok(Head {
                bytes,
                request,
                websocket,
            });
        }
        if bytes.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The request in `bytes`, once its head is complete.
fn parse(bytes: &[u8]) -> Result<Option<(Request, bool)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    }
    let method = head.method.unwrap_or_default();
    let path = head.path.unwrap_or_default();
    let version = match head.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Malformed)?)
        .uri(path)
        .version(version)
        .body(())
        .map_err(|_| HeadError::Malformed)?;
    let mut websocket = false;
    for header in head.headers.iter() {
        let name =
            HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| HeadError::Malformed)?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| HeadError::Malformed)?;
        if name == tokio_tungstenite::tungstenite::http::header::UPGRADE {
            websocket |= value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        }
        request.headers_mut().append(name, value);
    }
    Ok(Some((request, websocket)))
}

/// A stream that yields `prefix` first, then reads from `inner`; writes go
/// straight to `inner`. tungstenite reads the upgrade request the hub has
/// already read from here, as if it were still on the socket.
#[derive(Debug)]
pub(crate) struct Replay<S> {
    prefix: Vec<u8>,
    /// How much of `prefix` was read.
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Replay<S> {
        Replay {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.prefix.get(this.at..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                // Give the memory back: an idle connection keeps this
                // stream for as long as it lives.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_get_and_an_upgrade() {
        let get = b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
        let (request, websocket) = parse(get).unwrap().unwrap();
        assert!(!websocket);
        assert_eq!(request.uri().path(), "/metrics");
        assert_eq!(request.method(), Method::GET);
        let up = b"GET /events HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\r\n";
        assert!(parse(up).unwrap().unwrap().1);
        assert!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n").unwrap().is_none());
        assert!(matches!(
            parse(b"\x16\x03\x01 not http\r\n\r\n"),
            Err(HeadError::Malformed)
        ));
    }

    #[tokio::test]
    async fn replay_yields_the_prefix_then_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"world")
            .await
            .unwrap();
        drop(a);
        let mut r = Replay::new(b"hello ".to_vec(), b);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
