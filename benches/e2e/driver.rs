//! The load driver: POSTs events to the relay over keep-alive connections, either as a closed
//! loop (C connections, each sending its next event when the last is answered) or an open loop
//! (a fixed rate, whatever the answers), and records each request's latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What one drive did.
#[derive(Default)]
pub struct Drive {
    pub accepted: u64,
    pub refused: u64,
    /// Request latencies of accepted events, µs.
    pub lat_us: Vec<u64>,
    pub first_send: Option<Instant>,
    pub last_answer: Option<Instant>,
}

impl Drive {
    fn merge(&mut self, other: Drive) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.lat_us.extend(other.lat_us);
        self.first_send = match (self.first_send, other.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_answer = self.last_answer.max(other.last_answer);
    }
}

/// What the requests are.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A system hook to the relay's `bench` Source.
    Hook,
    /// One alert to Alertmanager's `/api/v2/alerts`, the tokens in its annotation (Alertmanager
    /// passes them on in its webhook).
    Alert,
    /// The tokens straight to the receiver: the driver → receiver ceiling.
    Direct,
}

/// Where and what to send: event `seq` of type `ty`, stamped with the sender's clock.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    /// One per relay replica: event `seq` goes to `urls[seq % len]`.
    pub urls: Vec<String>,
    pub ty: &'static str,
    pub base: Instant,
    pub shape: Shape,
}

impl Target {
    pub fn new(relays: &[&str], ty: &'static str, base: Instant, connections: usize) -> Target {
        let urls = relays.iter().map(|r| format!("{r}/hooks/bench")).collect();
        Target::at(urls, Shape::Hook, ty, base, connections)
    }

    /// Requests of `shape` to `url` (a peer, or the receiver itself).
    pub fn peer(url: String, shape: Shape, base: Instant, connections: usize) -> Target {
        Target::at(vec![url], shape, "bench.event", base, connections)
    }

    fn at(urls: Vec<String>, shape: Shape, ty: &'static str, base: Instant, c: usize) -> Target {
        Target {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(c)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            urls,
            ty,
            base,
            shape,
        }
    }

    /// Sends one event; records it in `into`.
    async fn send(&self, seq: u64, into: &mut Drive) {
        let sent = Instant::now();
        into.first_send.get_or_insert(sent);
        let ts = sent.duration_since(self.base).as_micros();
        let body = match self.shape {
            Shape::Hook => format!(
                r#"{{"type":"{}","id":{seq},"ts":{ts},"title":"构建 47 失败"}}"#,
                self.ty
            ),
            Shape::Alert => format!(
                r#"[{{"labels":{{"alertname":"bench","seq":"{seq}"}},"annotations":{{"summary":"EVID{seq} SENTUS{ts} 构建 47 失败"}}}}]"#
            ),
            Shape::Direct => format!(r#"{{"text":"EVID{seq} SENTUS{ts} 构建 47 失败"}}"#),
        };
        let answer = self
            .client
            .post(&self.urls[seq as usize % self.urls.len()])
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let done = Instant::now();
        into.last_answer = Some(done);
        match answer {
            Ok(r) if r.status().is_success() => {
                into.accepted += 1;
                into.lat_us
                    .push(done.duration_since(sent).as_micros() as u64);
            }
            _ => into.refused += 1,
        }
    }
}

/// Events `1..=n` over `c` connections, each sending when its last request is answered.
pub async fn closed(target: &Target, n: u64, c: usize) -> Drive {
    let next = Arc::new(AtomicU64::new(1));
    let mut tasks = JoinSet::new();
    for _ in 0..c {
        let (target, next) = (target.clone(), next.clone());
        tasks.spawn(async move {
            let mut d = Drive::default();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq > n {
                    return d;
                }
                target.send(seq, &mut d).await;
            }
        });
    }
    let mut total = Drive::default();
    while let Some(d) = tasks.join_next().await {
        total.merge(d.expect("a driver task"));
    }
    total
}

/// Events `1..=n` at `rate` per second, at most `max_in_flight` unanswered at once.
pub async fn open(target: &Target, n: u64, rate: u64, max_in_flight: usize) -> Drive {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = JoinSet::new();
    for seq in 1..=n {
        tick.tick().await;
        let permit = slots.clone().acquire_owned().await.expect("open semaphore");
        let target = target.clone();
        tasks.spawn(async move {
            let mut d = Drive::default();
            target.send(seq, &mut d).await;
            drop(permit);
            d
        });
    }
    let mut total = Drive::default();
    while let Some(d) = tasks.join_next().await {
        total.merge(d.expect("a driver task"));
    }
    total
}
