//! The relay under test: the release `hookrelay serve` as a child process on loopback, with the
//! bench's own hooks.d and data dir, and what can be read off it (metrics, RSS).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Writes the bench's hooks.d: Source `bench` (type and id from the body), a template carrying
/// the receiver's tokens, channel `sink` → `/r/0` routed for `bench.event`, and `fan` channels
/// `f0..` → `/r/1..` all routed for `bench.fan`.
pub fn write_hooks(dir: &Path, receiver: &str, fan_width: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut y = String::from(
        "apiVersion: hookrelay.dev/v1alpha1
kind: Source
metadata: {name: bench}
spec:
  auth: none
  event:
    type: {pointer: /type}
    id: {pointer: /id}
---
apiVersion: hookrelay.dev/v1alpha1
kind: Template
metadata: {name: bench}
spec:
  types: [\"bench.*\"]
  text: \"EVID{{data.id}} SENTUS{{data.ts}} {{data.title}}\"
---
apiVersion: hookrelay.dev/v1alpha1
kind: Route
metadata: {name: one}
spec: {types: [bench.event], channels: [sink]}
",
    );
    let _ = write!(
        y,
        "---\napiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: sink}}\nspec: {{type: webhook, url: \"{receiver}/r/0\"}}\n"
    );
    let fan: Vec<String> = (0..fan_width).map(|i| format!("f{i}")).collect();
    for (i, name) in fan.iter().enumerate() {
        let _ = write!(
            y,
            "---\napiVersion: hookrelay.dev/v1alpha1\nkind: Channel\nmetadata: {{name: {name}}}\nspec: {{type: webhook, url: \"{receiver}/r/{}\"}}\n",
            i + 1
        );
    }
    if !fan.is_empty() {
        let _ = write!(
            y,
            "---\napiVersion: hookrelay.dev/v1alpha1\nkind: Route\nmetadata: {{name: fan}}\nspec: {{types: [bench.fan], channels: [{}]}}\n",
            fan.join(", ")
        );
    }
    std::fs::write(dir.join("bench.yaml"), y)
}

pub struct Relay {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Relay {
    /// Starts `hookrelay serve` on a free loopback port and waits until it is ready.
    pub async fn start(
        hooks: &Path,
        data: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<Relay, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
        // E2E_RELAY_BIN runs another build; E2E_WRAP a profiler around it ("perf record -g --").
        let bin = std::env::var("E2E_RELAY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookrelay").to_string());
        let wrap = std::env::var("E2E_WRAP").unwrap_or_default();
        let mut argv: Vec<&str> = wrap.split_whitespace().collect();
        argv.extend([bin.as_str(), "serve"]);
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .env("HOOKRELAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKRELAY_DATA_DIR", data)
            .env("HOOKRELAY_HOOKS_DIR", hooks)
            .env("HOOKRELAY_LOG_LEVEL", "warn")
            .env("HOOKRELAY_RELOAD_INTERVAL", "0s")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log.try_clone().map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start hookrelay: {e}"))?;
        let relay = Relay {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = relay.http.get(format!("{}/readyz", relay.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(relay);
            }
            if Instant::now() >= deadline {
                return Err("hookrelay was not ready within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A counter or gauge from `GET /metrics` (0 when absent): cheap to poll, unlike the store
    /// counts of `/admin/stats`, which walk the store.
    pub async fn metric(&self, name: &str) -> u64 {
        let Ok(resp) = self.http.get(format!("{}/metrics", self.url)).send().await else {
            return 0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// CPU time this process (all its threads) has used so far, from `/proc/<pid>/stat`.
    pub fn cpu_secs(&self) -> f64 {
        proc_cpu_secs(self.pid())
    }

    /// Context switches of this process's live threads so far (voluntary and not).
    pub fn switches(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        tasks
            .flatten()
            .map(|t| {
                let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }

    /// A `/proc/<pid>/status` figure in MiB (`VmRSS`, `VmHWM`).
    pub fn memory_mb(&self, field: &str) -> f64 {
        proc_status_kb(self.pid(), field) as f64 / 1024.0
    }
}

impl Drop for Relay {
    /// SIGTERM first, so the relay shuts down as in production and a profiler wrapped around it
    /// (E2E_WRAP) writes its data; SIGKILL if it has not exited within [`STOP_LIMIT`].
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a stopping relay (and a profiler around it) may take before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// User + system CPU seconds of a process. `/proc/<pid>/stat` counts in USER_HZ ticks, which
/// Linux fixes at 100 on every architecture the bench runs on.
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its `)` are fixed.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A scratch directory for one run — hooks.d, data dir and the relay's log — under cargo's
/// target tmp dir, so the store is on the project's disk (never a tmpfs that makes fsync free).
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("hookrelay-e2e-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .expect("a temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
