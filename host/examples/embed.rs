//! An axum app of its own that embeds the whole execd-host API at its
//! root, beside one route of its own, `GET /healthz`.
//!
//! `cargo run --release -p execd-host --example embed -- --listen 127.0.0.1:8080`
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:44772`; port 0 picks one,
//! printed as `listening on ADDR`), `--sse-framing standard|legacy` and
//! `--access-token TOKEN` (required for `uid`/`gid` on a command).
//! SIGTERM or SIGINT shuts the host down, then the server.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use execd_host::{Framing, Host, KILL_GRACE};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "\
An axum app that embeds the execd-host API at its root, beside GET /healthz.

Usage: embed [--listen ADDR] [--sse-framing standard|legacy] [--access-token TOKEN]

  --listen ADDR         where to listen (default 127.0.0.1:44772; port 0 picks one,
                        printed as `listening on ADDR`)
  --sse-framing F       the default event framing: standard or legacy
  --access-token TOKEN  the token every request must carry (needed for uid/gid)
  -h, --help            this text
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:44772".parse()?;
    let mut framing = Framing::Standard;
    let mut token = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--listen" => listen = value()?.parse()?,
            "--sse-framing" => {
                let given = value()?;
                framing = Framing::parse(&given)
                    .ok_or_else(|| anyhow::anyhow!("unknown framing {given:?}"))?;
            }
            "--access-token" => token = Some(value()?),
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => {
                eprint!("embed: unknown argument {other:?}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    // Before the host starts: a SIGTERM from then on stops it in order.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut builder = Host::builder().framing(framing);
    if let Some(token) = token {
        builder = builder.access_token(token);
    }
    let host = builder.build().await?;
    // The embedder's own route first; everything else is the host's.
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback_service(host.service());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);

    let stopping = host.clone();
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        // Commands first, so their readers get the terminal events and
        // the server's connections can finish.
        stopping.shutdown(KILL_GRACE).await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}
