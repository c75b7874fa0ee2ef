//! The scenario examples, as shipped under `examples/`, and the platforms' real payload shapes
//! (tests/fixtures) through the HTTP ingress, checked at fake vendor servers.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;
use crate::vendors;

fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// An example's sample request: (source, headers, body).
fn request(name: &str) -> (String, Vec<(String, String)>, Value) {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(example_dir(name).join("request.json")).unwrap(),
    )
    .unwrap();
    let headers = r["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (
        r["source"].as_str().unwrap().to_string(),
        headers,
        r["body"].clone(),
    )
}

async fn send(
    relay: &TestRelay,
    source: &str,
    headers: &[(String, String)],
    body: &Value,
) -> (u16, Value) {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    relay.post(source, &h, &body.to_string()).await
}

/// The relay on an example's own hooks.d, with the vendors' origins pointed at fakes.
async fn run_example(hooks: &Path, vendors: &[(&str, &str)]) -> (tempfile::TempDir, TestRelay) {
    let data = data_dir();
    let mut s = settings(hooks, data.path());
    for (vendor, base) in vendors {
        match *vendor {
            "wecom" => s.vendors.wecom = base.to_string(),
            "dingtalk" => s.vendors.dingtalk = base.to_string(),
            "feishu" => s.vendors.feishu = base.to_string(),
            other => panic!("no vendor {other}"),
        }
    }
    let relay = TestRelay::start(s).await;
    let report = relay.admin_get("/admin/catalog").await;
    assert_eq!(report["report"]["errors"], json!([]), "{report:#}");
    (data, relay)
}

#[tokio::test]
async fn acp_artifact_promotion_reaches_the_approvers_on_wecom() {
    let (fake, state) = vendors::wecom("ww7f3a0c9e1b2d4f68", "change-me-corp-secret").await;
    let (_d, relay) = run_example(
        &example_dir("acp-artifact-promotion").join("hooks.d"),
        &[("wecom", &fake.base)],
    )
    .await;
    let (source, headers, body) = request("acp-artifact-promotion");
    let (status, answer) = send(&relay, &source, &headers, &body).await;
    assert_eq!(
        (status, answer["deliveries"].as_u64()),
        (202, Some(2)),
        "{answer}"
    );
    fake.wait_for(3).await;
    {
        let v = state.lock().unwrap();
        let mut to: Vec<&str> = v
            .sent
            .iter()
            .map(|b| b["touser"].as_str().unwrap())
            .collect();
        to.sort();
        assert_eq!(to, ["LiNa", "WangQiang"]);
        let b = &v.sent[0];
        // The run is a thread: a card its later events can update for each approver.
        assert_eq!(
            (b["msgtype"].as_str(), b["agentid"].as_i64()),
            (Some("template_card"), Some(1000002))
        );
        let card = &b["template_card"];
        assert_eq!(card["card_type"], "button_interaction");
        assert_eq!(card["main_title"]["title"], "制品晋级待您审批");
        assert!(
            card["sub_title_text"]
                .as_str()
                .unwrap()
                .starts_with("晋级记录："),
            "{card}"
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }
    relay.stop().await;
}

#[tokio::test]
async fn zadig_runs_reach_dingtalk_and_wecom_robots_mentioning_their_creator() {
    let (ding, ding_state) = vendors::dingtalk(
        "change-me-dingtalk-access-token",
        "SECchange-me-dingtalk-secret",
        "工作流",
    )
    .await;
    let (robot, robot_state) = vendors::wecom_robot("change-me-wecom-robot-key").await;
    let (_d, relay) = run_example(
        &example_dir("zadig-robots").join("hooks.d"),
        &[("dingtalk", &ding.base), ("wecom", &robot.base)],
    )
    .await;
    let (source, mut headers, body) = request("zadig-robots");
    let (status, answer) = send(&relay, &source, &headers, &body).await;
    assert_eq!(
        (status, answer["deliveries"].as_u64()),
        (202, Some(2)),
        "{answer}"
    );
    assert_eq!(answer["id"], "demo-workflow-dev:47:passed");
    // Zadig resends with fresh UUID headers: still the same event.
    for (k, v) in headers.iter_mut() {
        if k.ends_with("Uuid") {
            *v = "5f0e1d2c-new-uuid".into();
        }
    }
    assert_eq!(send(&relay, &source, &headers, &body).await.0, 200);

    // A failed run: the failing stage and job, with its error.
    let mut failed = body.clone();
    let w = &mut failed["workflow"];
    w["task_id"] = json!(48);
    w["status"] = json!("failed");
    w["stages"][0]["status"] = json!("failed");
    w["stages"][0]["jobs"][0]["status"] = json!("failed");
    w["stages"][0]["jobs"][0]["error"] = json!("exit status 2: go build failed");
    assert_eq!(send(&relay, &source, &headers, &failed).await.0, 202);

    ding.wait_for(2).await;
    robot.wait_for(2).await;
    {
        let d = ding_state.lock().unwrap();
        let passed = d
            .sent
            .iter()
            .find(|b| b["markdown"]["title"].as_str().unwrap().contains("#47"))
            .unwrap();
        let text = passed["markdown"]["text"].as_str().unwrap();
        for expected in [
            "**工作流 demo-workflow-dev #47 执行成功**",
            "> 项目：yaml",
            "> 执行人：admin",
            "> 开始时间：2024-07-31 13:45:33",
            "> 持续时间：50s",
            "[查看详情](https://course.koderover.com/v1/projects/detail/yaml/pipelines/custom/demo-workflow-dev?display_name=demo-workflow-dev)",
            "@1340096xxxx",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        assert_eq!(passed["at"]["atMobiles"], json!(["1340096xxxx"]));
        let failed_text = d
            .sent
            .iter()
            .find(|b| b["markdown"]["title"].as_str().unwrap().contains("#48"))
            .unwrap()["markdown"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            failed_text.contains(
                "> 失败阶段：构建 / service1-service1-构建：exit status 2: go build failed"
            ),
            "{failed_text}"
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let r = robot_state.lock().unwrap();
        assert!(r.sent.iter().all(|b| {
            b["markdown"]["content"]
                .as_str()
                .unwrap()
                .ends_with("<@ZhangWei>")
        }));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }
    relay.stop().await;
}

#[tokio::test]
async fn kubesphere_alerts_reach_wecom_users_departments_and_tags() {
    let (fake, state) = vendors::wecom("ww7f3a0c9e1b2d4f68", "change-me-corp-secret").await;
    let (_d, relay) = run_example(
        &example_dir("kubesphere-alerts").join("hooks.d"),
        &[("wecom", &fake.base)],
    )
    .await;
    let (source, headers, body) = request("kubesphere-alerts");
    let (status, answer) = send(&relay, &source, &headers, &body).await;
    assert_eq!(
        (status, answer["deliveries"].as_u64()),
        (202, Some(1)),
        "{answer}"
    );
    let (status, _) = send(
        &relay,
        &source,
        &[("Authorization".into(), "Bearer wrong".into())],
        &body,
    )
    .await;
    assert_eq!(status, 401);
    fake.wait_for(2).await;
    {
        let v = state.lock().unwrap();
        let b = &v.sent[0];
        assert_eq!(
            (
                b["touser"].as_str(),
                b["toparty"].as_str(),
                b["totag"].as_str()
            ),
            (Some("ZhangWei"), Some("2|3"), Some("1"))
        );
        let content = b["markdown"]["content"].as_str().unwrap();
        for expected in [
            "**[告警] ContainerCPUUsageHigh**（2 条）",
            "> 级别：警告",
            "- web-7d4b9c8f6-2xk9z CPU 使用率 92% [web-7d4b9c8f6-2xk9z] 2024-07-31 13:40:00",
            "web-7d4b9c8f6-p8q2w CPU 使用率 87%",
        ] {
            assert!(
                content.contains(expected),
                "{expected:?} missing from {content}"
            );
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn cnb_user_notifications_reach_wecom_as_they_came() {
    let (fake, state) = vendors::wecom("ww7f3a0c9e1b2d4f68", "change-me-corp-secret").await;
    let (_d, relay) = run_example(
        &example_dir("cnb-user-notify").join("hooks.d"),
        &[("wecom", &fake.base)],
    )
    .await;
    let (source, headers, body) = request("cnb-user-notify");
    let (status, answer) = send(&relay, &source, &headers, &body).await;
    assert_eq!(
        (status, answer["deliveries"].as_u64()),
        (202, Some(1)),
        "{answer}"
    );
    fake.wait_for(2).await;
    {
        let v = state.lock().unwrap();
        assert_eq!(
            v.sent[0]["touser"], "ZhangWei",
            "CNB user 123 through the directory"
        );
        assert_eq!(v.sent[0]["msgtype"], "text");
        assert_eq!(v.sent[0]["text"]["content"], body["text"]["content"]);
    }
    relay.stop().await;
}

/// Copies a directory tree (an example's hooks.d, to change one secret).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn gitlab_system_hooks_reach_a_signed_webhook() {
    let receiver = FakeServer::start().await;
    let hooks = tempfile::tempdir().unwrap();
    copy_dir(&example_dir("gitlab-webhook").join("hooks.d"), hooks.path());
    std::fs::write(
        hooks.path().join("secrets/ops-webhook-url"),
        format!("{}/gitlab", receiver.base),
    )
    .unwrap();
    let (_d, relay) = run_example(hooks.path(), &[]).await;
    let (source, headers, body) = request("gitlab-webhook");
    let (status, answer) = send(&relay, &source, &headers, &body).await;
    assert_eq!(
        (status, answer["deliveries"].as_u64()),
        (202, Some(1)),
        "{answer}"
    );
    assert_eq!(
        answer["id"], "0b2f8d4e-6a1c-4e7b-9d3f-5c8a2e1b7f40",
        "Idempotency-Key is the id"
    );
    assert_eq!(
        send(&relay, &source, &headers, &body).await.0,
        200,
        "a GitLab retry is a duplicate"
    );
    let got = receiver.wait_for(1).await;
    let m = got[0].json();
    assert_eq!(m["touser"], "ops-oncall");
    let content = m["text"]["content"].as_str().unwrap();
    assert!(content.starts_with("**GitLab：新建用户**"), "{content}");
    assert!(
        content.contains("Zhang San (@zhangsan) zhangsan@example.com"),
        "{content}"
    );
    let whsec = std::fs::read_to_string(hooks.path().join("secrets/ops-signing-secret")).unwrap();
    let key = hookrelay::signature::decode_whsec(whsec.trim()).unwrap();
    let r = &got[0];
    hookrelay::signature::standard_webhooks_verify(
        &key,
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
        &r.body,
        r.header("webhook-timestamp").unwrap().parse().unwrap(),
        300,
    )
    .expect("signed");
    relay.stop().await;
}

fn fixture(path: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(path),
        )
        .unwrap(),
    )
    .unwrap()
}

/// (source, headers, body, expected event type, how the message starts).
type Case = (
    &'static str,
    Vec<(String, String)>,
    Value,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn github_gitea_and_gitlab_payloads_read_well() {
    let receiver = FakeServer::start().await;
    let hooks = Hooks::new(&[
        ("secret", "It's a Secret to Everybody"),
        (
            "10-git.yaml",
            &format!(
                r#"
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {{name: github}}
spec: {{preset: github, auth: {{hmac: {{secret: {{file: secret}}}}}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {{name: gitea}}
spec: {{preset: gitea, auth: {{hmac: {{secret: {{file: secret}}}}}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {{name: gitlab}}
spec: {{preset: gitlab, auth: {{token: {{secret: {{file: secret}}}}}}}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Channel
metadata: {{name: sink}}
spec: {{type: webhook, url: "{}/git"}}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {{name: git}}
spec: {{channels: [sink]}}
"#,
                receiver.base
            ),
        ),
    ]);
    let data = data_dir();
    let relay = TestRelay::start(settings(hooks.path(), data.path())).await;
    let sign = |body: &str| {
        hex::encode(hookrelay::signature::hmac_sha256(
            b"It's a Secret to Everybody",
            &[body.as_bytes()],
        ))
    };
    let cases: Vec<Case> = vec![
        (
            "github",
            vec![
                ("X-GitHub-Event".into(), "push".into()),
                ("X-GitHub-Delivery".into(), "d-1".into()),
            ],
            fixture("github/push.json"),
            "github.push",
            "**octocat 推送到 octocat/hello-world refs/heads/main**\n> Fix the login redirect — Octo Cat",
        ),
        (
            "github",
            vec![
                ("X-GitHub-Event".into(), "pull_request".into()),
                ("X-GitHub-Delivery".into(), "d-2".into()),
            ],
            fixture("github/pull-request-opened.json"),
            "github.pull_request.opened",
            "**octocat 创建了拉取请求 #1347**\n> Amazing new feature\n> octocat/hello-world：new-topic → main",
        ),
        (
            "gitea",
            vec![
                ("X-Gitea-Event".into(), "push".into()),
                ("X-Gitea-Delivery".into(), "g-1".into()),
            ],
            fixture("gitea/push.json"),
            "gitea.push",
            "**lisi 推送到 devops/web refs/heads/develop**\n> 调整部署超时",
        ),
        (
            "gitlab",
            vec![
                ("X-Gitlab-Event".into(), "Merge Request Hook".into()),
                ("X-Gitlab-Token".into(), "It's a Secret to Everybody".into()),
                ("X-Gitlab-Event-UUID".into(), "u-1".into()),
            ],
            fixture("gitlab/merge-request.json"),
            "gitlab.merge_request",
            "**Administrator 创建了合并请求 !1**\n> MS-Viewport\n> gitlabhq/gitlab-test：ms-viewport → master\n> 状态：待合并",
        ),
        (
            "gitlab",
            vec![
                ("X-Gitlab-Event".into(), "System Hook".into()),
                ("X-Gitlab-Token".into(), "It's a Secret to Everybody".into()),
                ("X-Gitlab-Event-UUID".into(), "u-2".into()),
            ],
            fixture("gitlab/system-user-create.json"),
            "gitlab.system.user_create",
            "**GitLab：新建用户**",
        ),
    ];
    for (i, (source, mut headers, body, ty, expected)) in cases.into_iter().enumerate() {
        let text = body.to_string();
        match source {
            "github" => headers.push((
                "X-Hub-Signature-256".into(),
                format!("sha256={}", sign(&text)),
            )),
            "gitea" => headers.push(("X-Gitea-Signature".into(), sign(&text))),
            _ => {}
        }
        let (status, answer) = send(&relay, source, &headers, &body).await;
        assert_eq!(status, 202, "{source}: {answer}");
        let got = receiver.wait_for(i + 1).await;
        let m = got[i].json();
        let content = m["text"]["content"].as_str().unwrap();
        assert!(
            content.starts_with(expected),
            "{ty}: {content:?} does not start with {expected:?}"
        );
        let e = relay
            .admin_get(&format!(
                "/admin/events/{}",
                answer["event"].as_str().unwrap()
            ))
            .await;
        assert_eq!(e["event"]["type"], ty);
    }
    // A GitHub request signed with another secret is refused.
    let body = fixture("github/push.json");
    let forged = [
        ("X-GitHub-Event".to_string(), "push".to_string()),
        (
            "X-Hub-Signature-256".to_string(),
            format!("sha256={}", "00".repeat(32)),
        ),
    ];
    assert_eq!(send(&relay, "github", &forged, &body).await.0, 401);
    relay.stop().await;
}
