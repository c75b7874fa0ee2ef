//! The leak test every registered channel runs (as Alertmanager's notifiers share one): the
//! channel is built from its registration's example, sends to a server that echoes the whole
//! request back in its error bodies, and nothing it reports, previews or describes may hold a
//! credential.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::def::compile;
use super::registry::Registration;
use super::{Outgoing, Receipt};
use crate::config::Settings;
use crate::doc::DocCtx;
use crate::ids::DeliveryId;
use crate::message::{Message, MsgType, Recipients};

/// The access token the echo server hands out to token APIs (WeCom `gettoken`, Feishu's
/// tenant token).
const RUNTIME_TOKEN: &str = "RUNTIME-TOKEN-LEAK-1";
/// Marks the echo in an answer, so the test knows the vendor's words reached the error.
const ECHO: &str = "ECHOED";

/// The protocol a channel's echo server speaks.
#[derive(Debug, Clone, Copy)]
pub enum Wire {
    Http,
    /// SMTP: AUTH is answered with the decoded credentials (refused when `status` is a 5xx),
    /// every recipient is refused with the whole session so far.
    Smtp,
}

/// Serves SMTP until dropped, echoing what the client said in its refusals.
async fn smtp_echo_server(status: u16) -> String {
    use tokio::io::AsyncBufReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                let mut session = String::new();
                let _ = write.write_all(b"220 echo ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    session.push_str(&line);
                    session.push(' ');
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let answer = match verb.as_str() {
                        "EHLO" => "250-echo\r\n250 AUTH PLAIN LOGIN\r\n".to_string(),
                        "AUTH" => {
                            use base64::Engine;
                            let decoded = line
                                .split(' ')
                                .nth(2)
                                .and_then(|b| {
                                    base64::engine::general_purpose::STANDARD.decode(b).ok()
                                })
                                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                                .unwrap_or_default();
                            if status >= 500 {
                                format!("535 5.7.8 {ECHO} {line} = {decoded}\r\n")
                            } else {
                                "235 2.7.0 ok\r\n".to_string()
                            }
                        }
                        "RCPT" => format!("550 5.1.1 {ECHO} {session}\r\n"),
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => "250 ok\r\n".to_string(),
                    };
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    base
}

/// Serves until dropped: token APIs get [`RUNTIME_TOKEN`]; every other request is answered with
/// `status` and a body carrying the request (line, headers, body) in every vendor's code and
/// message fields.
async fn echo_server(status: u16) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buf = [0u8; 8192];
                // Head, then as much body as Content-Length says.
                loop {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&read);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if read.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let request = String::from_utf8_lossy(&read).into_owned();
                let (code, body) = if request
                    .lines()
                    .next()
                    .is_some_and(|l| l.contains("gettoken") || l.contains("tenant_access_token"))
                {
                    (
                        200,
                        json!({"errcode": 0, "access_token": RUNTIME_TOKEN, "expires_in": 7200,
                               "code": 0, "tenant_access_token": RUNTIME_TOKEN, "expire": 7200}),
                    )
                } else {
                    let echo = format!("{ECHO} {request}");
                    (
                        status,
                        json!({"errcode": 40058, "errmsg": echo, "code": 19024, "msg": echo, "error": echo}),
                    )
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    base
}

/// Builds `r`'s example against an echo server answering `status`, sends once, and returns
/// everything the relay could show of it: the outcome, the preview, the description.
async fn shown(r: &Registration, status: u16) -> (String, Vec<&'static str>) {
    let base = match r.leak_wire {
        Wire::Http => echo_server(status).await,
        Wire::Smtp => smtp_echo_server(status).await,
    };
    let (mut spec, secrets) = (r.leak_example)(&base);
    spec["type"] = json!(r.kind);
    let settings = Settings::defaults();
    let http = super::http::client();
    let mut ctx = DocCtx::new(Path::new("."), &[], &settings, &http);
    let def = compile("leak", &spec, &mut ctx).unwrap_or_else(|e| panic!("{}: {e:?}", r.kind));
    let message = Message {
        msgtype: MsgType::Markdown,
        content: "**deploy failed**".into(),
        title: Some("deploy".into()),
        url: Some("https://ci.example/run/1".into()),
    };
    let to = Recipients {
        // A mail address is an id every channel sends to (email takes nothing else).
        users: vec!["zhangsan@example.com".into()],
        ..Recipients::default()
    };
    let id = DeliveryId::default();
    let event = json!({"id": "e1", "type": "t", "source": "s", "data": {}});
    let out = Outgoing {
        id: &id,
        message: &message,
        to: &to,
        event: Some(&event),
        timeout: Duration::from_secs(5),
        shared: None,
        threaded: false,
    };
    let outcome: Result<Receipt, _> = def.send(&out).await;
    let preview = def
        .preview(&out)
        .map(|p| serde_json::to_string(&p).unwrap_or_default());
    let text = format!(
        "{outcome:?}\n{preview:?}\n{}\n{def:?}",
        def.channel.describe()
    );
    (text, secrets)
}

/// Asserts that `r`'s channel leaks none of its credentials (nor a token fetched at run time)
/// when the vendor echoes its request back, in a 5xx and in a 2xx carrying a vendor error.
pub async fn leaks_no_secret(r: &Registration) {
    for status in [500, 200] {
        let (text, mut secrets) = shown(r, status).await;
        secrets.push(RUNTIME_TOKEN);
        for s in secrets {
            assert!(
                !text.contains(s),
                "{}: {s} leaked (HTTP {status}):\n{text}",
                r.kind
            );
        }
        if status == 500 {
            assert!(
                text.contains(ECHO),
                "{}: the echo reached the error:\n{text}",
                r.kind
            );
            assert!(
                text.contains("***"),
                "{}: the redaction is visible:\n{text}",
                r.kind
            );
        }
    }
}
