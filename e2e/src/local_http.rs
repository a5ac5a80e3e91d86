//! Plain HTTP GETs to 127.0.0.1 (etcd's /health, the binaries' /metrics and /readyz).

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET http://127.0.0.1:<port><path>` over HTTP/1.0; returns the status code and the body.
pub async fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
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
    Ok((code, body.to_owned()))
}
