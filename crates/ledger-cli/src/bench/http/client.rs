//! A minimal HTTP/1.1 client over one kept-alive `TcpStream`: JSON `POST`s with a bearer token,
//! responses read by `Content-Length` (or chunked), every request bounded by a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest a response head or body may be (a command's answer is a few KiB).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Where requests go and how they authenticate.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The server's address.
    pub addr: SocketAddr,
    /// The admin token, sent as `Authorization: Bearer`.
    pub token: String,
    /// How long one request (connecting included) may take.
    pub timeout: Duration,
}

/// A response: its status and body.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// One client connection, reopened after a failure or a `Connection: close`.
pub struct Client {
    endpoint: Endpoint,
    stream: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client that connects on its first request.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            stream: None,
        }
    }

    /// Sends `POST path` with a JSON `body`, within the endpoint's timeout.
    pub async fn post(&mut self, path: &str, body: &str) -> Result<Response, String> {
        let timeout = self.endpoint.timeout;
        match tokio::time::timeout(timeout, self.exchange(path, body)).await {
            Ok(Ok((response, keep))) => {
                if !keep {
                    self.stream = None;
                }
                Ok(response)
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(format!("POST {path}: {e}"))
            }
            Err(_) => {
                self.stream = None;
                Err(format!("POST {path}: no answer within {timeout:?}"))
            }
        }
    }

    /// Writes the request and reads the response; says whether the connection stays open.
    async fn exchange(&mut self, path: &str, body: &str) -> std::io::Result<(Response, bool)> {
        if self.stream.is_none() {
            let tcp = TcpStream::connect(self.endpoint.addr).await?;
            tcp.set_nodelay(true)?;
            self.stream = Some(BufReader::new(tcp));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(invalid("no connection"));
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.endpoint.addr,
            self.endpoint.token,
            body.len()
        );
        stream.get_mut().write_all(request.as_bytes()).await?;
        read_response(stream).await
    }
}

/// Reads one response; says whether the connection may be reused.
async fn read_response(stream: &mut BufReader<TcpStream>) -> std::io::Result<(Response, bool)> {
    let status_line = read_line(stream).await?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(&format!("not an HTTP status line: {status_line:?}")))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep = version == "HTTP/1.1";
    loop {
        let line = read_line(stream).await?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(&format!("not a header: {line:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| invalid(&format!("bad Content-Length {value:?}")))?;
                length = Some(n);
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => {
                if value.eq_ignore_ascii_case("close") {
                    keep = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep = true;
                }
            }
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(stream).await?
    } else if let Some(n) = length {
        if n > MAX_RESPONSE_BYTES {
            return Err(invalid(&format!("a {n}-byte response body is too large")));
        }
        let mut body = vec![0; n];
        stream.read_exact(&mut body).await?;
        body
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        // No length: the body ends with the connection.
        keep = false;
        let mut body = Vec::new();
        stream
            .take(MAX_RESPONSE_BYTES as u64)
            .read_to_end(&mut body)
            .await?;
        body
    };
    Ok((Response { status, body }, keep))
}

/// Reads a chunked body.
async fn read_chunked(stream: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream).await?;
        let size = line.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(&format!("bad chunk size {line:?}")))?;
        if n == 0 {
            // Trailers, up to the empty line.
            while !read_line(stream).await?.is_empty() {}
            return Ok(body);
        }
        if body.len() + n > MAX_RESPONSE_BYTES {
            return Err(invalid("a chunked response body is too large"));
        }
        let start = body.len();
        body.resize(start + n, 0);
        stream.read_exact(&mut body[start..]).await?;
        if !read_line(stream).await?.is_empty() {
            return Err(invalid("a chunk does not end with CRLF"));
        }
    }
}

/// Reads one CRLF-terminated line, without its terminator; end of stream is an error.
async fn read_line(stream: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    let n = (&mut *stream)
        .take(MAX_RESPONSE_BYTES as u64)
        .read_line(&mut line)
        .await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    if !line.ends_with('\n') {
        return Err(invalid("a response line is too long"));
    }
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// An I/O error for a malformed response.
fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_string())
}
