//! The email channel against a real SMTP server (aiosmtpd from PyPI, driven by
//! `scripts/smtp_server.py`): STARTTLS with a CA made here, implicit TLS, AUTH, each
//! recipient's own `RCPT TO` reply, 452 "too many recipients", transient and permanent DATA
//! replies, and the MIME message read back by Python's own email parser. Skipped (saying so)
//! when no Python with aiosmtpd is found; `HOOKRELAY_TEST_PYTHON` names one (`.ci/run` sets its
//! virtualenv's, and then a missing aiosmtpd fails instead of skipping).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support::*;

const PYTHON_VAR: &str = "HOOKRELAY_TEST_PYTHON";
const PASSWORD: &str = "smtp-pass-Zq81";

/// The Python that has aiosmtpd, or `None` (and a message) when there is none to use.
fn python() -> Option<String> {
    let named = std::env::var(PYTHON_VAR).ok();
    let python = named.clone().unwrap_or_else(|| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match (has, named) {
        (true, _) => Some(python),
        (false, Some(p)) => panic!("{PYTHON_VAR}={p} has no aiosmtpd"),
        (false, None) => {
            eprintln!(
                "skipped: no python3 with aiosmtpd (pip install aiosmtpd, or set {PYTHON_VAR})"
            );
            None
        }
    }
}

/// A CA, and a certificate for `localhost` it signed: the SMTP server's, trusted through the
/// channel's `ca`.
struct Certs {
    ca: String,
    cert: PathBuf,
    key: PathBuf,
}

fn certs(dir: &Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hookrelay test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (cert, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Certs {
        ca: ca.pem(),
        cert,
        key: key_path,
    }
}

/// `scripts/smtp_server.py` running on a free loopback port until dropped.
struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    /// `tls`: starttls | implicit | none; `certs` for the first two.
    fn start(python: &str, tls: &str, certs: Option<&Certs>, more: &[&str]) -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let mut cmd = Command::new(python);
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/smtp_server.py"
        ))
        .arg("--out")
        .arg(&out)
        .args(["--tls", tls])
        .args(more)
        .stdout(Stdio::piped());
        if let Some(c) = certs {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        let mut child = cmd.spawn().expect("start the SMTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server said {line:?}"));
        Smtp {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// Every message it took, as its parser read them.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// hooks.d for one email channel whose spec (after `type: email`) is `channel`, a route to
/// `to` and a directory with alice.
fn files(channel: &str, to: &[&str], ca: Option<&str>) -> Vec<(&'static str, String)> {
    let mut files = vec![
        ("smtp-password", PASSWORD.to_string()),
        (
            "10-mail.yaml",
            format!(
                r#"
{APP_SOURCE}---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {{name: app}}
spec:
  types: ["app.*"]
  msgtype: markdown
  title: "构建 {{{{data.id}}}} 失败"
  text: "**{{{{data.id}}}}** failed <@zhangsan>\n> <script>alert(1)</script>\n[logs](https://ci.example/{{{{data.id}}}})"
  url: "https://ci.example/runs/{{{{data.id}}}}"
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: mail}}
spec:
  type: email
  from: "hookrelay <relay@example.com>"
  retry: {{maxAttempts: 2}}
{channel}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: builds}}
spec:
  sources: [app]
  channels: [mail]
  to: {{users: {to}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {{name: alice}}
spec: {{mail: alice@example.com}}
"#,
                to = serde_json::to_string(to).unwrap(),
            ),
        ),
    ];
    if let Some(ca) = ca {
        files.push(("smtp-ca.pem", ca.to_string()));
    }
    files
}

async fn relay_for(files: &[(&'static str, String)]) -> (Hooks, tempfile::TempDir, TestRelay) {
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    start_clean(&refs, |_| {}).await
}

/// Posts event `id` and returns its one delivery's id.
async fn post(relay: &TestRelay, id: &str) -> String {
    let (status, answer) = relay
        .post("app", &[], &json!({"kind": "build", "id": id}).to_string())
        .await;
    assert_eq!(status, 202, "{answer}");
    let event = answer["event"].as_str().unwrap();
    let ds = relay.admin_get(&format!("/admin/events/{event}")).await["deliveries"].clone();
    assert_eq!(ds.as_array().unwrap().len(), 1, "{ds:#}");
    ds[0]["id"].as_str().unwrap().to_string()
}

fn part<'a>(mail: &'a Value, ty: &str) -> &'a str {
    mail["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} part: {mail:#}"))["content"]
        .as_str()
        .unwrap()
}

fn spec(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("  {l}\n")).collect()
}

#[tokio::test]
async fn a_mail_goes_over_starttls_with_auth_as_plain_text_and_html() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let auth = format!("relay:{PASSWORD}");
    let smtp = Smtp::start(&python, "starttls", Some(&certs), &["--auth", &auth]);
    let channel = spec(&[
        "host: localhost",
        &format!("port: {}", smtp.port),
        "tls: starttls",
        "ca: smtp-ca.pem",
        "username: relay",
        "password: {file: smtp-password}",
        "replyTo: ops@example.com",
    ]);
    let (_h, _d, relay) = relay_for(&files(
        &channel,
        &["alice", "carol@example.com"],
        Some(&certs.ca),
    ))
    .await;
    let id = post(&relay, "b7").await;
    let d = relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(
        d["to"]["users"],
        json!(["alice@example.com", "carol@example.com"])
    );

    let got = smtp.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    let mail = &got[0];
    assert_eq!(mail["tls"], true, "sent only after STARTTLS");
    assert_eq!(mail["auth"], "relay");
    assert_eq!(mail["from"], "relay@example.com");
    assert_eq!(
        mail["to"],
        json!(["alice@example.com", "carol@example.com"])
    );
    let headers = &mail["headers"];
    assert_eq!(
        headers["subject"], "构建 b7 失败",
        "RFC 2047 subject read back"
    );
    assert_eq!(headers["from"], "hookrelay <relay@example.com>");
    assert_eq!(headers["reply-to"], "ops@example.com");
    assert_eq!(headers["to"], "alice@example.com, carol@example.com");
    assert_eq!(headers["message-id"], format!("<{id}@example.com>"));
    assert_eq!(d["receipt"]["messageId"], format!("{id}@example.com"));
    assert!(headers["date"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(mail["content_type"], "multipart/alternative");
    let types: Vec<&str> = mail["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"], "plain text first");
    let text = part(mail, "text/plain");
    assert!(text.contains("b7 failed @zhangsan"), "{text}");
    assert!(text.contains("logs (https://ci.example/b7)"), "{text}");
    assert!(text.contains("https://ci.example/runs/b7"), "{text}");
    let html = part(mail, "text/html");
    assert!(html.contains("<h2>构建 b7 失败</h2>"), "{html}");
    assert!(
        html.contains("<strong>b7</strong> failed @zhangsan"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"https://ci.example/b7\">logs</a>"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;") && !html.contains("<script"),
        "a payload's HTML is shown, not run: {html}"
    );

    // The next mail goes over the same connection, kept open in the pool.
    let second = post(&relay, "b8").await;
    relay.wait_delivery_state(&second, "delivered").await;
    let got = smtp.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["connection"], got[0]["connection"], "{got:#?}");
    relay.stop().await;
}

#[tokio::test]
async fn implicit_tls_without_auth_delivers() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let smtp = Smtp::start(&python, "implicit", Some(&certs), &[]);
    let channel = spec(&[
        "host: localhost",
        &format!("port: {}", smtp.port),
        "tls: tls",
        "ca: smtp-ca.pem",
    ]);
    let (_h, _d, relay) = relay_for(&files(&channel, &["alice"], Some(&certs.ca))).await;
    let id = post(&relay, "t1").await;
    relay.wait_delivery_state(&id, "delivered").await;
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["tls"], true);
    assert_eq!(got[0]["auth"], Value::Null);
    relay.stop().await;
}

#[tokio::test]
async fn each_recipient_has_its_own_answer_and_a_refused_one_is_a_partial_delivery() {
    let Some(python) = python() else { return };
    // At most two recipients per transaction: the third goes in a second one.
    let smtp = Smtp::start(&python, "none", None, &["--max-rcpt", "2"]);
    let channel = spec(&[
        "host: 127.0.0.1",
        &format!("port: {}", smtp.port),
        "tls: none",
    ]);
    let to = [
        "alice",
        "r550-gone@example.com",
        "bob@example.com",
        "r450-busy@example.com",
        "dave@example.com",
    ];
    let (_h, _d, relay) = relay_for(&files(&channel, &to, None)).await;
    let id = post(&relay, "p1").await;
    let d = relay.wait_delivery_state(&id, "delivered").await;
    assert_eq!(d["attempts"], 1, "a partial delivery is not retried");
    assert_eq!(d["receipt"]["accepted"], 3);
    let refused = d["receipt"]["refused"].as_array().unwrap();
    let refused: Vec<(&str, u64)> = refused
        .iter()
        .map(|r| (r["to"].as_str().unwrap(), r["code"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            ("r550-gone@example.com", 550),
            ("r450-busy@example.com", 450)
        ]
    );
    let got = smtp.received();
    let envelopes: Vec<&Value> = got.iter().map(|m| &m["to"]).collect();
    assert_eq!(
        envelopes,
        [
            &json!(["alice@example.com", "bob@example.com"]),
            &json!(["dave@example.com"])
        ],
        "the recipient deferred by 452 went in the next transaction"
    );
    assert_eq!(
        got[0]["headers"]["message-id"], got[1]["headers"]["message-id"],
        "one mail, in two transactions"
    );
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("hookrelay_recipients_rejected_total{channel=\"mail\"} 2"),
        "{metrics}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn transient_replies_retry_and_permanent_ones_are_dead_at_once() {
    let Some(python) = python() else { return };
    let smtp = Smtp::start(&python, "none", None, &[]);
    let channel = spec(&[
        "host: 127.0.0.1",
        &format!("port: {}", smtp.port),
        "tls: none",
    ]);
    for (to, attempts, reason, words) in [
        // DATA 451: worth trying again (two attempts allowed, then dead).
        ("d451-x@example.com", 2, "server", "DATA: SMTP 451"),
        // DATA 554: never.
        ("d554-x@example.com", 1, "client", "DATA: SMTP 554"),
        // The only recipient refused for good.
        ("r550-x@example.com", 1, "client", "SMTP 550"),
        // The only recipient refused for now: the whole mail again later.
        ("r450-x@example.com", 2, "server", "SMTP 450"),
        // Not an address at all: refused before any SMTP.
        ("zhangsan", 1, "client", "not a mail address"),
    ] {
        let (_h, _d, relay) = relay_for(&files(&channel, &[to], None)).await;
        let id = post(&relay, "f1").await;
        let d = relay.wait_delivery_state(&id, "dead").await;
        assert_eq!(d["attempts"], attempts, "{to}: {d:#}");
        assert_eq!(d["last_error"]["reason"], reason, "{to}: {d:#}");
        let detail = d["last_error"]["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{to}: {detail}");
        relay.stop().await;
    }
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn a_refused_login_is_dead_and_names_no_password_and_starttls_is_required() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let smtp = Smtp::start(
        &python,
        "starttls",
        Some(&certs),
        &["--auth", "relay:another-password"],
    );
    let channel = spec(&[
        "host: localhost",
        &format!("port: {}", smtp.port),
        "ca: smtp-ca.pem",
        "username: relay",
        "password: {file: smtp-password}",
    ]);
    let (_h, _d, relay) = relay_for(&files(&channel, &["alice"], Some(&certs.ca))).await;
    let id = post(&relay, "a1").await;
    let d = relay.wait_delivery_state(&id, "dead").await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last_error"]["reason"], "auth", "{d:#}");
    assert!(
        d["last_error"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("AUTH: SMTP 535"),
        "{d:#}"
    );
    assert!(!d.to_string().contains(PASSWORD));
    assert!(!logs().contains(PASSWORD));
    relay.stop().await;

    // A server without STARTTLS is not written to in the clear when STARTTLS was asked for.
    let plain = Smtp::start(&python, "none", None, &[]);
    let channel = spec(&["host: 127.0.0.1", &format!("port: {}", plain.port)]);
    let (_h, _d, relay) = relay_for(&files(&channel, &["alice"], None)).await;
    let id = post(&relay, "a2").await;
    let d = relay.wait_delivery_state(&id, "dead").await;
    assert_eq!(d["last_error"]["reason"], "config", "{d:#}");
    assert!(plain.received().is_empty());
    relay.stop().await;
}

#[test]
fn check_refuses_a_password_in_the_clear_and_names_the_field() {
    let h = Hooks::new(&[]);
    for (name, text) in files(
        &spec(&[
            "host: smtp.example.com",
            "tls: none",
            "username: relay",
            "password: {file: smtp-password}",
        ]),
        &["alice"],
        None,
    ) {
        h.write(name, &text);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .arg("check")
        .arg(h.path())
        .env("HOOKRELAY_LOG_LEVEL", "error")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("/spec/tls"), "{text}");
    assert!(text.contains("in the clear"), "{text}");
}

/// A payload's mail address the directory does not know reaches the person by email, and is
/// reported for the chat channel that cannot address it; one it knows is that User everywhere.
#[test]
fn a_payload_mail_is_written_to_by_email_and_reported_for_chat() {
    let h = Hooks::new(&[(
        "10.yaml",
        &format!(
            "{APP_SOURCE}---{}",
            r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {name: mail}
spec: {type: email, host: smtp.example.com, from: relay@example.com}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {name: robot}
spec: {type: wecom-robot, key: k1}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {name: builds}
spec:
  sources: [app]
  channels: [mail, robot]
  to: {fromEvent: {mails: [/data/creator_email]}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: User
metadata: {name: alice}
spec: {mail: alice@example.com, wecom: Alice.W}
"#
        ),
    )]);
    let render = |mail: &str| {
        let body = json!({"kind": "build", "id": "r1", "creator_email": mail});
        render_cli(h.path(), &body.to_string())
    };
    let text = render("dev@example.com");
    assert!(text.contains("1. mail (email)"), "{text}");
    assert!(
        text.contains("   to: {\"users\":[\"dev@example.com\"]}"),
        "{text}"
    );
    assert!(
        text.contains("! dev@example.com cannot be reached (no id in the User directory) on robot"),
        "{text}"
    );
    let text = render("Alice@Example.com");
    assert!(
        text.contains("   to: {\"users\":[\"alice@example.com\"]}"),
        "{text}"
    );
    assert!(text.contains("   to: {\"users\":[\"Alice.W\"]}"), "{text}");
    assert!(!text.contains("cannot be reached"), "{text}");
}
