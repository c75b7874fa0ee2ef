//! `hookrelay render`: the ingest path printed, nothing stored or sent.

use std::path::Path;
use std::process::Command;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// Writes an example's request body to a file and renders it; (exit code, stdout).
fn render(name: &str, extra: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> (i32, String) {
    let request: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example(name).join("request.json")).unwrap())
            .unwrap();
    let mut body = request["body"].clone();
    edit(&mut body);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("event.json");
    std::fs::write(&file, body.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .arg("render")
        .arg("--hooks")
        .arg(example(name).join("hooks.d"))
        .args(extra)
        .arg(&file)
        .env("HOOKRELAY_LOG_LEVEL", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn shows_routes_recipients_and_vendor_requests_with_secrets_redacted() {
    let (code, out) = render(
        "zadig-robots",
        &["-H", "X-Zadig-Token: change-me-zadig-token"],
        |_| {},
    );
    assert_eq!(code, 0, "{out}");
    for expected in [
        "event zadig.workflow.passed",
        "id: demo-workflow-dev:47:passed",
        "✔ Route zadig-to-dingtalk: → dev-dingtalk",
        "1. dev-dingtalk (dingtalk-robot) ← zadig-to-dingtalk, template zadig.workflow",
        "   │ > 执行人：admin",
        "POST https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=",
        "\"atMobiles\": [",
        "POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***",
    ] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }
    for secret in [
        "change-me-dingtalk-access-token",
        "SECchange-me-dingtalk-secret",
        "change-me-wecom-robot-key",
    ] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
}

#[test]
fn explains_why_subscriptions_did_not_match() {
    let (code, out) = render("acp-artifact-promotion", &["--source", "acp"], |e| {
        e["type"] =
            "dev.katanomi.cloudevents.kubeevent.artifactpromotionrun.failed.v1alpha1".into();
        e["involvedobjectnamespace"] = "elsewhere".into();
    });
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✘ Subscription admin-artifactpromotionrun-subscription (admin): rule 4: object namespace is not \"devops\""), "{out}");
    assert!(out.contains("0 deliveries"), "{out}");
    let (_, out) = render("acp-artifact-promotion", &["--source", "acp"], |_| {});
    assert!(
        out.contains(
            "✘ Subscription admin-artifactpromotionrun-subscription (admin): rule 1: CEL false"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "✔ Subscription alice-artifactpromotionrun-subscription (alice): rule 1 → corpwechat"
        ),
        "{out}"
    );
}

#[test]
fn refused_requests_exit_non_zero_and_say_why() {
    let (code, out) = render("zadig-robots", &["-H", "X-Zadig-Token: wrong"], |_| {});
    assert_eq!(code, 2);
    assert!(
        out.contains("refused (401): X-Zadig-Token does not match"),
        "{out}"
    );
    let (code, out) = render("zadig-robots", &[], |_| {});
    assert_eq!(code, 2);
    assert!(out.contains("--no-auth"), "{out}");
    let (code, _) = render("zadig-robots", &["--no-auth"], |_| {});
    assert_eq!(code, 0);
    let (code, out) = render("acp-artifact-promotion", &["--source", "acp"], |e| {
        e.as_object_mut().unwrap().remove("id");
    });
    assert_eq!(code, 2);
    assert!(
        out.contains("refused (400)") && out.contains("id is missing"),
        "{out}"
    );
    let (code, out) = render("acp-artifact-promotion", &["--source", "nope"], |_| {});
    assert_eq!(code, 2);
    assert!(
        out.contains("no source named \"nope\"; loaded: acp"),
        "{out}"
    );
}
