//! The fast fake receiver: answers every POST like a vendor that took the message, and counts
//! arrivals per path and event (`EVID<n>`), duplicates and end-to-end latency (`SENTUS<µs>`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// What arrived since the last reset.
#[derive(Default)]
pub struct Stats {
    pub count: u64,
    pub dups: u64,
    /// (path index, event number) of every arrival, for duplicates.
    seen: HashSet<(u32, u64)>,
    /// Arrival minus the sender's clock, µs.
    pub lat_us: Vec<u64>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

struct Shared {
    base: Instant,
    stats: Mutex<Stats>,
}

pub struct Receiver {
    /// `http://127.0.0.1:PORT`; paths are `/r/<index>`.
    pub url: String,
    shared: Arc<Shared>,
    server: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

/// The digits after `tag` in `body`.
fn number_after(body: &[u8], tag: &[u8]) -> Option<u64> {
    let at = body.windows(tag.len()).position(|w| w == tag)? + tag.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let now = Instant::now();
    let path = req
        .path()
        .strip_prefix("/r/")
        .and_then(|p| p.parse().ok())
        .unwrap_or(u32::MAX);
    let sent = number_after(&body, b"SENTUS");
    let id = number_after(&body, b"EVID");
    {
        let mut s = shared.stats.lock().expect("stats lock");
        s.count += 1;
        s.first.get_or_insert(now);
        s.last = Some(now);
        if let Some(id) = id
            && !s.seen.insert((path, id))
        {
            s.dups += 1;
        }
        if let Some(sent) = sent.filter(|&us| us > 0) {
            let at = now.duration_since(shared.base).as_micros() as u64;
            s.lat_us.push(at.saturating_sub(sent));
        }
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"errcode":0,"errmsg":"ok"}"#)
}

impl Receiver {
    /// Starts on a loopback port; latencies are measured against `base`, the senders' clock.
    pub fn start(base: Instant) -> Receiver {
        let shared = Arc::new(Shared {
            base,
            stats: Mutex::new(Stats::default()),
        });
        let data = web::Data::from(shared.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(receive))
                })
                .workers(1)
                .backlog(4096)
                .bind(("127.0.0.1", 0))
                .expect("bind the receiver");
                let addr = server.addrs()[0];
                let server = server.disable_signals().run();
                tx.send((addr, server.handle()))
                    .expect("report the address");
                let _ = server.await;
            })
        });
        let (addr, server) = rx.recv().expect("the receiver starts");
        Receiver {
            url: format!("http://{addr}"),
            shared,
            server,
            thread: Some(thread),
        }
    }

    /// Forgets everything received so far.
    pub fn reset(&self) {
        *self.shared.stats.lock().expect("stats lock") = Stats::default();
    }

    pub fn count(&self) -> u64 {
        self.shared.stats.lock().expect("stats lock").count
    }

    /// Takes what was received (and resets).
    pub fn take(&self) -> Stats {
        std::mem::take(&mut *self.shared.stats.lock().expect("stats lock"))
    }

    /// Polls until `n` have arrived or `limit` passes; whether they did.
    pub async fn wait_for(&self, n: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Stopping needs the receiver's own runtime; the handle's future only signals it.
        drop(self.server.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
