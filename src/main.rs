//! The `hookrelay` command: `serve` (default), `check`, `render`, `store verify|repair`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookrelay::catalog::Loader;
use hookrelay::config::{LogFormat, Settings};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Relays system hooks and CloudEvents to WeCom, DingTalk, Feishu and webhooks"
)]
struct Cli {
    /// Settings file (default: ./hookrelay.toml if present).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    target: hookrelay::ctl::Target,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (the default).
    Serve,
    /// Validate a hooks.d directory (every error and warning, grouped by file, with lines;
    /// `--json` for the report); exits non-zero on any error.
    Check {
        /// The directory (default: the configured hooks_dir).
        dir: Option<PathBuf>,
    },
    /// Run one request through auth, decoding, routing and templates, and print who would be
    /// notified and the vendor requests — storing and sending nothing. Exits 2 when the relay
    /// would refuse the request.
    Render {
        /// The hooks.d directory (default: the configured hooks_dir).
        #[arg(long)]
        hooks: Option<PathBuf>,
        /// The Source it is sent to (needed when hooks.d has several).
        #[arg(long)]
        source: Option<String>,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", short = 'H', value_name = "K:V")]
        headers: Vec<String>,
        /// Skip the Source's authentication.
        #[arg(long)]
        no_auth: bool,
        /// The request body (`-` for stdin).
        event_file: PathBuf,
    },
    /// Check or repair the data dir (the configured `data_dir` and `store`).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// A local stand-in for every vendor (WeCom, DingTalk, Feishu, webhooks) that prints each
    /// message as a person would see it, to try hookrelay without one.
    Sink {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        /// Verify webhook signatures with this `whsec_…` (`@FILE` reads it from a file).
        #[arg(long)]
        webhook_secret: Option<String>,
        /// Verify DingTalk signatures with this `SEC…` (`@FILE` reads it from a file).
        #[arg(long)]
        dingtalk_secret: Option<String>,
        /// Verify Feishu signatures with this secret (`@FILE` reads it from a file).
        #[arg(long)]
        feishu_secret: Option<String>,
    },
    /// Ask a running relay (admin API; `--url` / HOOKRELAY_URL, HOOKRELAY_ADMIN_TOKEN).
    #[command(flatten)]
    Ctl(hookrelay::ctl::Ctl),
}

#[derive(Subcommand)]
enum StoreAction {
    /// Read every record of a copy of the data dir and hold it against its marker; exits 1
    /// when something acknowledged is missing or unreadable. Changes nothing (safe while the
    /// relay runs).
    Verify,
    /// Verify, then — only with `--accept-loss`, the relay stopped — give up what is missing
    /// or unreadable so the relay starts on what is left.
    Repair {
        /// Accept the loss that verify reports.
        #[arg(long)]
        accept_loss: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Ctl(ctl)) => return ctl_main(ctl, &cli.target),
        Some(Command::Sink {
            listen,
            webhook_secret,
            dingtalk_secret,
            feishu_secret,
        }) => {
            return report(sink(
                listen,
                [webhook_secret, dingtalk_secret, feishu_secret],
            ));
        }
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hookrelay: {e}");
            return ExitCode::from(2);
        }
    };
    let json = cli.target.json;
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Check { dir } => check(settings, dir, json),
        Command::Render {
            hooks,
            source,
            headers,
            no_auth,
            event_file,
        } => render(settings, hooks, source, headers, no_auth, event_file),
        Command::Store { action } => store(settings, action),
        Command::Ctl(_) | Command::Sink { .. } => unreachable!("answered above"),
    };
    report(result)
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `hookrelay sink`: secrets given as `@FILE` are read from the file.
fn sink(listen: String, secrets: [Option<String>; 3]) -> anyhow::Result<ExitCode> {
    let read = |s: Option<String>| -> anyhow::Result<Option<String>> {
        Ok(match s {
            Some(path) if path.starts_with('@') => Some(
                std::fs::read_to_string(&path[1..])
                    .with_context(|| format!("reading {}", &path[1..]))?
                    .trim()
                    .to_string(),
            ),
            other => other,
        })
    };
    let [webhook, dingtalk, feishu] = secrets;
    let secrets = hookrelay::channel::sink::Secrets {
        webhook: read(webhook)?,
        dingtalk: read(dingtalk)?,
        feishu: read(feishu)?,
    };
    let listener =
        std::net::TcpListener::bind(&listen).with_context(|| format!("listening on {listen}"))?;
    actix_web::rt::System::new().block_on(hookrelay::channel::sink::run(listener, secrets))?;
    Ok(ExitCode::SUCCESS)
}

/// The admin commands need no settings file: only where the relay is and its token.
fn ctl_main(ctl: hookrelay::ctl::Ctl, target: &hookrelay::ctl::Target) -> ExitCode {
    let token = std::env::var("HOOKRELAY_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookrelay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    match runtime.block_on(hookrelay::ctl::run(ctl, target, token, &mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookrelay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    init_logging(&settings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = std::net::TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let relay = hookrelay::Relay::open(settings).await?;
        relay.serve(listener, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn render(
    settings: Settings,
    hooks: Option<PathBuf>,
    source: Option<String>,
    headers: Vec<String>,
    no_auth: bool,
    event_file: PathBuf,
) -> anyhow::Result<ExitCode> {
    let body = if event_file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("reading stdin")?;
        b
    } else {
        std::fs::read(&event_file).with_context(|| format!("reading {}", event_file.display()))?
    };
    let headers = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("--header {h:?} is not Name: value"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = hookrelay::dryrun::Request {
        source,
        headers,
        body,
        no_auth,
    };
    let hooks = hooks.unwrap_or_else(|| settings.hooks_dir.clone());
    let accepted = hookrelay::dryrun::run(settings, hooks, request, &mut std::io::stdout().lock())?;
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn store(settings: Settings, action: StoreAction) -> anyhow::Result<ExitCode> {
    use hookrelay::store::inspect;
    if settings.postgres.is_some() {
        anyhow::bail!(
            "`hookrelay store` checks the embedded engines' data dir; with store = \"postgres\" \
             the database keeps its own integrity (use PostgreSQL's tools)"
        );
    }
    let (engine, dir) = (settings.store, settings.data_dir.as_path());
    let (report, accepted) = match action {
        StoreAction::Verify => (inspect::verify(engine, dir)?, false),
        StoreAction::Repair { accept_loss } => {
            (inspect::repair(engine, dir, accept_loss)?, accept_loss)
        }
    };
    println!("{report}");
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else if accepted {
        println!("repaired: what is listed above is given up; the relay starts on what is left");
        ExitCode::SUCCESS
    } else {
        println!(
            "nothing changed; `hookrelay store repair --accept-loss` gives up what is listed above"
        );
        ExitCode::FAILURE
    })
}

fn check(settings: Settings, dir: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| settings.hooks_dir.clone());
    let http = hookrelay::channel::http::client();
    let catalog = Loader::new(&dir, std::sync::Arc::new(settings), http).load(true);
    let report = &catalog.report;
    let clean = report.is_clean() && !report.files.is_empty();
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    // Grouped by file, errors first, in line order.
    let mut by_file: std::collections::BTreeMap<&std::path::Path, Vec<(&str, &_)>> =
        Default::default();
    for (kind, list) in [("error", &report.errors), ("warning", &report.warnings)] {
        for e in list {
            by_file.entry(e.file.as_path()).or_default().push((kind, e));
        }
    }
    for (file, mut found) in by_file {
        found.sort_by_key(|(kind, e): &(&str, &hookrelay::catalog::CatalogError)| {
            (*kind != "error", e.line, e.document)
        });
        println!("{}", file.display());
        for (kind, e) in found {
            println!("  {kind}: {}", e.within_file());
        }
    }
    for u in &report.unresolved {
        println!(
            "warning: {}: {} has no id for Channel {} in the User directory; not notified there",
            u.origin, u.user, u.channel
        );
    }
    let resources: Vec<String> = report
        .resources
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!(
        "{}: {} files, {}; {} errors, {} warnings",
        dir.display(),
        report.files.len(),
        if resources.is_empty() {
            "no resources".to_string()
        } else {
            resources.join(", ")
        },
        report.errors.len(),
        report.warnings.len() + report.unresolved.len()
    );
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
