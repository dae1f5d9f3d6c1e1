//! A Rust service that checks every request's API key in process, with an
//! embedded replica and its `tower` layer: no call to the registry per
//! request, and it keeps answering while the registry is down.
//!
//! ```sh
//! cargo run --example verified_service -- nats://127.0.0.1:4222 DIR/pepper 127.0.0.1:9000
//! curl -H "Authorization: Bearer $KEY" http://127.0.0.1:9000/files/q3.csv
//! ```
//!
//! `GET /files/<path>` needs `read` on `files/<path>`, any other method
//! `write`; the handler reads who called from the verify answer the layer
//! put in the request's extensions. It prints `verified_service listening
//! on http://ADDR` once the replica answers; on SIGTERM or Ctrl-C it stops
//! its replica, which reports what it counted.

use axum::extract::Extension;
use axum::routing::any;
use keyreg::domain::verifier::Answer;
use keyreg::replica::layer::VerifyLayer;
use keyreg::replica::{Replica, ReplicaConfig};

async fn hello(Extension(answer): Extension<Answer>) -> String {
    let found = answer.found.expect("a valid answer names its key");
    format!("hello, key {} of {}\n", found.key_id, found.org)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, nats, pepper, listen] = &args[..] else {
        return Err("usage: verified_service NATS_URL PEPPER_FILE LISTEN_ADDR".into());
    };
    let mut config = ReplicaConfig::new(nats, keyreg::store::load_pepper(pepper.as_ref())?);
    // How often the verifications counted go to the registry, as `keyreg
    // verifier` takes it (10 s unless set).
    if let Ok(ms) = std::env::var("KEYREG_ACCESS_FLUSH_MS") {
        config.access_flush = std::time::Duration::from_millis(ms.parse()?);
    }
    let replica = Replica::start(config).await?;
    while replica.unavailable().is_some() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let app = axum::Router::new().route("/files/{*path}", any(hello)).layer(VerifyLayer::new(replica.clone()));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("verified_service listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(terminated()).await?;
    // Stopping the replica sends the verifications it counted since its
    // last report, so none is lost with the process.
    replica.stop().await;
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn terminated() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
