//! `hookrelay deliveries | delivery | event | dead | stats | reload`: the admin API from a
//! terminal — readable tables by default, `--json` for scripts, clear errors for a relay that
//! cannot be reached or a token it refuses.

mod table;

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the relay is and how to be let in.
#[derive(Debug, Args)]
pub struct Target {
    /// The relay's base URL.
    #[arg(
        long,
        env = "HOOKRELAY_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The filters of a delivery listing (the admin API's query parameters).
#[derive(Debug, Args, Default)]
pub struct Filters {
    /// pending, waiting, delivered or dead.
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub channel: Option<String>,
    /// The Source that received the event.
    #[arg(long)]
    pub source: Option<String>,
    /// The event type.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// A user id or mobile number among the recipients.
    #[arg(long)]
    pub recipient: Option<String>,
    /// RFC 3339, ms since the epoch, or a duration ago (30m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
}

impl Filters {
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("state", &self.state),
            ("channel", &self.channel),
            ("source", &self.source),
            ("type", &self.event_type),
            ("recipient", &self.recipient),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// What to ask the relay.
#[derive(Debug, Subcommand)]
pub enum Ctl {
    /// List deliveries, newest first.
    Deliveries {
        #[command(flatten)]
        filters: Filters,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after this delivery (the `next` a previous page printed).
        #[arg(long)]
        before: Option<String>,
    },
    /// One delivery with its attempt timeline.
    Delivery { id: String },
    /// One event: its deliveries and which Routes and Subscriptions take it, and why.
    Event { id: String },
    /// Dead letters matching the filters; `--replay` makes them due again.
    Dead {
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        replay: bool,
    },
    /// Store figures.
    Stats,
    /// Reload hooks.d now and print the report.
    Reload,
}

/// A failure worth one clear line.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the relay at {url}: {cause} (set --url or HOOKRELAY_URL)")]
    Unreachable { url: String, cause: String },
    #[error(
        "the relay refused the admin token ({status}): {message} (set HOOKRELAY_ADMIN_TOKEN to the relay's admin_token)"
    )]
    Refused { status: u16, message: String },
    #[error("{status}: {message}")]
    Answer { status: u16, message: String },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The admin API over HTTP.
struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, CtlError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let unreachable = |e: reqwest::Error| CtlError::Unreachable {
            url: self.base.clone(),
            cause: e.without_url().to_string(),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = || {
            body["message"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_string)
        };
        match status {
            200..=299 => Ok(body),
            401 | 403 => Err(CtlError::Refused {
                status,
                message: message(),
            }),
            _ => Err(CtlError::Answer {
                status,
                message: message(),
            }),
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CtlError> {
        let req = self.http.get(format!("{}{path}", self.base)).query(query);
        self.call(req).await
    }

    async fn post(&self, path: &str) -> Result<Value, CtlError> {
        self.call(self.http.post(format!("{}{path}", self.base)))
            .await
    }
}

/// Runs `ctl` against the relay at `target` with `token`, writing to `out`.
pub async fn run(
    ctl: Ctl,
    target: &Target,
    token: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let client = Client {
        base: target.url.trim_end_matches('/').to_string(),
        token,
        http: reqwest::Client::new(),
    };
    let print = |out: &mut dyn Write, v: &Value, table: String| -> Result<(), CtlError> {
        if target.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(v).unwrap_or_default()
            )?;
        } else {
            write!(out, "{table}")?;
        }
        Ok(())
    };
    match ctl {
        Ctl::Deliveries {
            filters,
            limit,
            before,
        } => {
            let mut query = filters.query();
            query.push(("limit", limit.to_string()));
            query.extend(before.map(|b| ("before", b)));
            let v = client.get("/admin/deliveries", &query).await?;
            print(out, &v, table::deliveries(&v))
        }
        Ctl::Delivery { id } => {
            let v = client.get(&format!("/admin/deliveries/{id}"), &[]).await?;
            print(out, &v, table::delivery(&v))
        }
        Ctl::Event { id } => {
            let v = client.get(&format!("/admin/events/{id}"), &[]).await?;
            print(out, &v, table::event(&v))
        }
        Ctl::Dead { filters, replay } => {
            let mut query = filters.query();
            query.retain(|(k, _)| *k != "state");
            query.push(("state", "dead".into()));
            let dead = all_pages(&client, query).await?;
            if !replay {
                let v = serde_json::json!({ "deliveries": dead, "next": null });
                return print(out, &v, table::deliveries(&v));
            }
            replay_all(&client, &dead, target.json, out).await
        }
        Ctl::Stats => {
            let v = client.get("/admin/stats", &[]).await?;
            print(out, &v, table::stats(&v))
        }
        Ctl::Reload => {
            let v = client.post("/admin/catalog/reload").await?;
            print(out, &v, table::report(&v["report"]))
        }
    }
}

/// Every delivery a listing gives, page after page.
async fn all_pages(client: &Client, query: Vec<(&str, String)>) -> Result<Vec<Value>, CtlError> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut q = query.clone();
        q.push(("limit", "1000".into()));
        q.extend(before.take().map(|b| ("before", b)));
        let page = client.get("/admin/deliveries", &q).await?;
        all.extend(page["deliveries"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => return Ok(all),
        }
    }
}

/// Replays each dead letter, with a progress bar on a terminal; says how many were scheduled
/// and how many were no longer dead (replayed meanwhile: replay is idempotent).
async fn replay_all(
    client: &Client,
    dead: &[Value],
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let bar = indicatif::ProgressBar::new(dead.len() as u64);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("replaying {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut scheduled, mut skipped) = (0u64, 0u64);
    for d in dead {
        let id = d["id"].as_str().unwrap_or_default();
        match client.post(&format!("/admin/deliveries/{id}/replay")).await {
            Ok(_) => scheduled += 1,
            Err(CtlError::Answer {
                status: 404 | 409, ..
            }) => skipped += 1,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let v = serde_json::json!({"matched": dead.len(), "scheduled": scheduled, "skipped": skipped});
    if json {
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "{} dead letters matched: {scheduled} scheduled again, {skipped} no longer dead",
            dead.len()
        )?;
    }
    Ok(())
}
