//! The HTTP server: actix-web's `HttpServer` assembled by hand, for one difference — each
//! connection goes through [`edge::Guarded`], which answers actix's own protocol-level refusals
//! in JSON — and the table of routes.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, web};
use anyhow::Context;

use super::{AppState, admin, console, edge, health, hooks};

/// Builds the HTTP server (kept out of `serve`: the builder is not `Send`).
pub fn server(
    state: web::Data<AppState>,
    listener: TcpListener,
) -> anyhow::Result<actix_web::dev::Server> {
    use actix_service::{ServiceFactoryExt, fn_service, map_config};
    let settings = state.settings.clone();
    let addr = listener.local_addr().context("listening")?;
    let mut server = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(settings.shutdown_grace.as_secs().max(1));
    if settings.http_workers > 0 {
        server = server.workers(settings.http_workers);
    }
    let server = server
        .listen("hookrelay", listener, move || {
            let app = App::new()
                .wrap_fn(edge::catch_panics)
                .app_data(state.clone())
                .configure(hooks::configure)
                .configure(admin::configure)
                .configure(console::configure)
                .configure(health::configure);
            let http = actix_http::HttpService::build()
                .keep_alive(Duration::from_secs(5))
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                .finish(map_config(app, |_| actix_web::dev::AppConfig::default()));
            fn_service(|io: tokio::net::TcpStream| async {
                let peer = io.peer_addr().ok();
                Ok((edge::Guarded::new(io), actix_http::Protocol::Http1, peer))
            })
            .and_then(http)
        })
        .context("listening")?;
    Ok(server.run())
}
