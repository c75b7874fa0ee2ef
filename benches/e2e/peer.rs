//! The peer measured in the same run: Debian's `prometheus-alertmanager` on loopback, routing
//! every alert (no grouping, no wait) to the bench's receiver through its webhook receiver.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Alertmanager {
    child: Child,
    pub url: String,
}

/// The Alertmanager binary: `E2E_ALERTMANAGER`, else the one Debian installs, else on PATH.
fn binary() -> Option<String> {
    if let Ok(b) = std::env::var("E2E_ALERTMANAGER") {
        return Some(b);
    }
    ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_string)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Alertmanager {
    /// Started in `dir`, notifying `receiver` (`Ok(None)`: no binary here).
    pub async fn start(dir: &Path, receiver: &str) -> Result<Option<Alertmanager>, String> {
        let Some(bin) = binary() else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // `group_by: ['...']` makes every alert its own group; `group_wait: 0s` sends it at once.
        let config = format!(
            "route:\n  receiver: sink\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 1m\n  \
             repeat_interval: 24h\nreceivers:\n- name: sink\n  webhook_configs:\n  - url: \
             {receiver}/am\n    send_resolved: false\n"
        );
        let file = dir.join("alertmanager.yml");
        std::fs::write(&file, config).map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{bin}: {e}"))?;
        let am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = client.get(format!("{}/-/ready", am.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(Some(am));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{bin} was not ready within 30 s"))
    }

    /// Its resident memory now and at its peak (MB).
    pub fn memory_mb(&self, key: &str) -> f64 {
        super::relay::proc_status_kb(self.child.id(), key) as f64 / 1024.0
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
