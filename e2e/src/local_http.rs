//! Plain HTTP GETs to 127.0.0.1 (etcd's /health, the binaries' /metrics and /readyz).

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET http://127.0.0.1:<port><path>` over HTTP/1.0; returns the status code and the body.
pub async fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let response = get_with(port, path, &[]).await?;
    Ok((response.code, response.body))
}

/// An answer to [`get_with`].
#[derive(Debug)]
pub struct Response {
    pub code: u16,
    /// The `Content-Type` header, when there is one.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
}

/// `GET http://127.0.0.1:<port><path>` over HTTP/1.0 with extra request `headers`.
pub async fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    let content_type = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_owned())
    });
    Ok(Response {
        code,
        content_type,
        body: body.to_owned(),
    })
}
