//! The suite's HTTP/1.1 client, written by hand rather than taken from a
//! crate so that a test sees an answer's framing exactly as the server sent
//! it: [`Connection`] writes a request (adding `Host` and `Content-Length`,
//! and `Expect: 100-continue` before a large body, as curl does) and reads
//! the answer while the body is still going out (a `413` decided from
//! `Content-Length` arrives early); `read_answer` parses the status
//! line, headers and a `Content-Length` or chunked body; [`Reply`] is the
//! parsed answer, with the checks the suite makes of every answer (framing,
//! JSON against `schemas/`, problem details, request ids).

use crate::assert_valid;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;

/// From this many body bytes on, a request asks `Expect: 100-continue` and
/// sends the body only when the server asks for it (curl's threshold: 1
/// MiB). A server that answers first (an early `413` or `401`) then closes
/// a connection it never read a body from: had the body been sent, the
/// close with unread data would reset the connection, and the reset can
/// discard the answer before the client reads it (seen on Spin, rarely).
const EXPECT_CONTINUE_FROM: usize = 1 << 20;

/// How long to wait for `100 Continue` before sending the body anyway, as
/// RFC 9110 (10.1.1) lets a client do with a server that ignores `Expect`.
const CONTINUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One HTTP/1.1 connection to the app, spoken by hand so that the test sees
/// the framing exactly as the server sent it, and so that an answer that
/// comes before the request body is all sent (a `413` decided from
/// `Content-Length`) is still read.
pub struct Connection {
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    /// Bytes read past the previous answer.
    buffer: Vec<u8>,
    /// The previous request's body was not all sent: the server will close.
    spent: bool,
}

impl Connection {
    pub(crate) async fn open(addr: SocketAddr) -> Connection {
        Connection::try_open(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// A connection, or why none could be opened (the server is gone).
    pub async fn try_open(addr: SocketAddr) -> Result<Connection, String> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        Ok(Connection {
            stream,
            addr,
            buffer: Vec::new(),
            spent: false,
        })
    }

    /// Sends `request` (a path and query, headers, body), adding `Host` and
    /// `Content-Length`, and reads the whole answer, checking its framing.
    pub async fn send(&mut self, request: Request<Bytes>) -> Reply {
        let method = request.method().clone();
        let reply = self
            .try_send(request)
            .await
            .unwrap_or_else(|e| panic!("request to {}: {e}", self.addr));
        reply.assert_framed(&method);
        reply
    }

    /// [`Connection::send`], or why the exchange failed (the connection
    /// was reset or closed, the server crashed).
    pub async fn try_send(&mut self, request: Request<Bytes>) -> Result<Reply, String> {
        use tokio::io::AsyncWriteExt;
        if self.spent {
            return Err("the connection was closed after an early answer".into());
        }
        let (head, body) = request.into_parts();
        let mut text = format!(
            "{} {} HTTP/1.1\r\n",
            head.method,
            head.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        if !head.headers.contains_key(http::header::HOST) {
            text.push_str(&format!("host: {}\r\n", self.addr));
        }
        let has_length = head.headers.contains_key(http::header::CONTENT_LENGTH)
            || head.headers.contains_key(http::header::TRANSFER_ENCODING);
        if !has_length && (!body.is_empty() || matches!(head.method, Method::POST | Method::PUT | Method::PATCH)) {
            text.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        let expect = body.len() >= EXPECT_CONTINUE_FROM && !head.headers.contains_key(http::header::EXPECT);
        if expect {
            text.push_str("expect: 100-continue\r\n");
        }
        for (name, value) in &head.headers {
            text.push_str(&format!("{name}: {}\r\n", value.to_str().map_err(|e| e.to_string())?));
        }
        text.push_str("\r\n");
        let is_head = head.method == Method::HEAD;
        let (mut reader, mut writer) = self.stream.split();
        if expect {
            writer.write_all(text.as_bytes()).await.map_err(|e| e.to_string())?;
            text.clear();
            let interim = tokio::time::timeout(CONTINUE_WAIT, read_answer(&mut reader, &mut self.buffer, is_head));
            match interim.await {
                Ok(Ok(reply)) if reply.status == StatusCode::CONTINUE => {}
                Ok(Ok(reply)) => {
                    // Answered without the body: the server will close.
                    self.spent = true;
                    return Ok(reply);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {} // no interim answer: send the body anyway
            }
        }
        let write = async {
            writer.write_all(text.as_bytes()).await?;
            for chunk in body.chunks(64 * 1024) {
                writer.write_all(chunk).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let read = read_answer(&mut reader, &mut self.buffer, is_head);
        tokio::pin!(write, read);
        let mut written = None;
        let answer = loop {
            tokio::select! {
                result = &mut write, if written.is_none() => written = Some(result),
                answer = &mut read => break answer,
            }
        };
        match (answer, written) {
            (Ok(reply), Some(Ok(()))) => Ok(reply),
            (Ok(reply), _) => {
                // Answered before the body was all sent (or while sending it
                // failed): the server will not read the rest.
                self.spent = true;
                Ok(reply)
            }
            (Err(e), Some(Err(w))) => Err(format!("{e} (while sending: {w})")),
            (Err(e), _) => Err(e),
        }
    }
}

/// Reads one answer: the head, then a body framed by `Content-Length`; a
/// chunked body is read too (and then fails [`Reply::assert_framed`]).
async fn read_answer<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    is_head: bool,
) -> Result<Reply, String> {
    use tokio::io::AsyncReadExt;
    async fn fill<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, buffer: &mut Vec<u8>) -> Result<bool, String> {
        let mut chunk = [0u8; 16 * 1024];
        let n = reader.read(&mut chunk).await.map_err(|e| e.to_string())?;
        buffer.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if !fill(reader, buffer).await? {
            return Err(format!("connection closed before an answer ({} bytes)", buffer.len()));
        }
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    buffer.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| e.to_string())?,
            value
                .trim()
                .parse()
                .map_err(|e: http::header::InvalidHeaderValue| e.to_string())?,
        );
    }
    let status = StatusCode::from_u16(code).map_err(|e| e.to_string())?;
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.to_str().unwrap_or("").contains("chunked"));
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let body = if is_head || status.is_informational() || status == 204 || status == 304 {
        Vec::new()
    } else if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = buffer.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                if !fill(reader, buffer).await? {
                    return Err("connection closed inside a chunked body".into());
                }
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&buffer[..line_end]).trim(), 16)
                .map_err(|e| e.to_string())?;
            buffer.drain(..line_end + 2);
            while buffer.len() < size + 2 {
                if !fill(reader, buffer).await? {
                    return Err("connection closed inside a chunk".into());
                }
            }
            body.extend_from_slice(&buffer[..size]);
            buffer.drain(..size + 2);
            if size == 0 {
                break body;
            }
        }
    } else if let Some(length) = length {
        while buffer.len() < length {
            if !fill(reader, buffer).await? {
                return Err(format!(
                    "connection closed after {} of {length} body bytes",
                    buffer.len()
                ));
            }
        }
        buffer.drain(..length).collect()
    } else {
        while fill(reader, buffer).await? {}
        std::mem::take(buffer)
    };
    Ok(Reply {
        status,
        headers,
        body: Bytes::from(body),
    })
}

/// A full answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// `Content-Length` present (the body's length, or for `HEAD` the length
    /// `GET` would send) and no `Transfer-Encoding`: chunked answers stall
    /// keep-alive clients under Spin (see `docs/conventions.md`).
    fn assert_framed(&self, method: &Method) {
        assert!(
            !self.headers.contains_key(http::header::TRANSFER_ENCODING),
            "{} answer is chunked: {:?}",
            self.status,
            self.headers
        );
        let length = self
            .headers
            .get(http::header::CONTENT_LENGTH)
            .unwrap_or_else(|| panic!("{} answer has no Content-Length: {:?}", self.status, self.headers))
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap();
        if method != Method::HEAD {
            assert_eq!(length, self.body.len(), "Content-Length disagrees with the body");
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// Asserts a JSON success answer valid against `schemas/<schema_file>`.
    pub fn assert_json(&self, status: u16, schema_file: &str) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), "application/json");
        self.assert_request_id();
        let body = self.json();
        assert_valid(schema_file, &body);
        body
    }

    /// Asserts a problem answer of this status and type, valid against
    /// `schemas/problem.json`, whose requestId is the header's.
    pub fn assert_problem(&self, status: u16, type_uri: &str) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), "application/problem+json");
        let body = self.json();
        assert_valid("problem.json", &body);
        assert_eq!(body["type"], type_uri, "{body}");
        assert_eq!(body["status"], status);
        assert_eq!(body["requestId"], self.header("x-request-id"));
        body
    }

    pub fn assert_request_id(&self) {
        let id = self.header("x-request-id");
        assert!(
            (1..=128).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{id}"
        );
    }
}
