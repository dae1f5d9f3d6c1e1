//! The outbox (local commit) under faults: NATS stopped for seconds and the registry
//! SIGKILLed mid-way, while 10,000 events are written; afterwards the stream
//! holds every event once, in order, byte for byte, and its chain verifies.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

const EVENTS: u64 = 10_000;

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    assert!(eventually(limit, &mut f), "timed out waiting for {what}");
}

#[test]
fn ten_thousand_events_through_a_nats_outage_and_a_sigkill() {
    let dir = tempdir();
    let mut nats = start_nats(dir.path());
    let nats_url = nats.url.clone();
    let flags = ["--nats", nats_url.as_str(), "--access-flush-ms", "3600000", "--commit", "local"];
    let (server, system) = Server::init_and_start(dir.path(), &flags);
    let data = server.data.clone();
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    api.req("PATCH", "/v1/orgs/{id}", Some("acme")).auth(&system).json(json!({"max_keys": 20000})).send().ok(200);

    let url = Arc::new(RwLock::new(server.url.clone()));
    let done = Arc::new(AtomicBool::new(false));
    let head = Arc::new(AtomicU64::new(api.head()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (url, done, head, admin) = (url.clone(), done.clone(), head.clone(), admin.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    let target = url.read().unwrap().clone();
                    let body = serde_json::to_vec(&json!({"name": format!("w{w}-{i}"), "scopes": ["read"]})).unwrap();
                    let sent = agent
                        .post(format!("{target}/v1/keys"))
                        .header("Authorization", format!("Bearer {admin}"))
                        .send(&body[..]);
                    match sent {
                        Ok(mut r) if r.status() == 201 => {
                            let v: serde_json::Value =
                                serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
                            head.fetch_max(v["key"]["version"].as_u64().unwrap(), Ordering::Relaxed);
                            i += 1;
                        }
                        Ok(r) => panic!("a write was answered {}", r.status()),
                        // The registry is being killed or restarted: try again.
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
        })
        .collect();
    let reached = |n: u64| head.load(Ordering::Relaxed) >= n;

    wait_until("2,500 events", Duration::from_secs(120), || reached(2_500));
    nats.stop();
    let stopped_at = head.load(Ordering::Relaxed);
    wait_until("100 writes while NATS is down", Duration::from_secs(30), || {
        head.load(Ordering::Relaxed) > stopped_at + 100
    });
    let lagging = api.ops("/healthz");
    assert!(lagging.json["outbox"]["lag"].as_u64().unwrap() > 0, "{}", lagging.json);
    nats.restart().unwrap();

    wait_until("5,000 events", Duration::from_secs(120), || reached(5_000));
    drop(server); // SIGKILL
    let server = Server::start(&data, &flags);
    *url.write().unwrap() = server.url.clone();
    let api = Api::new(&server.url);

    wait_until("10,000 events", Duration::from_secs(180), || reached(EVENTS));
    done.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let log_head = api.head();
    assert!(log_head >= EVENTS);
    let started = Instant::now();
    wait_until("the outbox to catch up", Duration::from_secs(60), || {
        let h = api.ops("/healthz").json;
        h["outbox"]["published_seq"].as_u64() == Some(log_head)
    });
    eprintln!("outbox caught up {:?} after the last write", started.elapsed());
    let metrics = String::from_utf8(api.ops("/metrics").body).unwrap();
    assert!(metrics.contains("keyreg_outbox_lag 0"), "{metrics}");
    server.stop();

    let stored: Vec<Vec<u8>> = keyreg(&["audit", "export", "--data", path_str(&data)])
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(stored.len() as u64, log_head);
    let streamed = stream_events(&nats.url);
    assert_eq!(streamed.len() as u64, log_head, "the stream holds each event once");
    for (i, ((seq, bytes, hash), log_bytes)) in streamed.iter().zip(&stored).enumerate() {
        assert_eq!(*seq, i as u64 + 1, "in order, without gaps");
        assert!(bytes == log_bytes, "event {seq} differs between the stream and the log");
        assert!(hash.is_some(), "event {seq} has no Keyreg-Hash");
    }
    let pepper = data.join("pepper");
    let from_stream = keyreg(&["audit", "verify", "--nats", &nats.url, "--pepper-file", path_str(&pepper)]);
    let from_log = keyreg(&["audit", "verify", "--data", path_str(&data)]);
    assert!(from_stream.status.success(), "{}", stdout(&from_stream));
    assert_eq!(stdout(&from_stream), stdout(&from_log));
}

/// A registry whose data dir was wiped and made again finds the old
/// registry's events on the stream: its outbox refuses to publish over them
/// and `/readyz` says so; `keyreg stream reset` (only with `--yes`) clears
/// the way, and the next start publishes the new log from sequence 1.
#[test]
fn a_diverged_stream_is_reset_and_republished() {
    let dir = tempdir();
    let nats = start_nats(dir.path());
    let flags = ["--nats", nats.url.as_str(), "--commit", "local"];
    let (first, system) = Server::init_and_start(&dir.path().join("first"), &flags);
    let api = Api::new(&first.url);
    new_org(&api, &system, "acme");
    let published = api.head();
    wait_until("the first log on the stream", Duration::from_secs(10), || {
        api.ops("/healthz").json["outbox"]["published_seq"].as_u64() == Some(published)
    });
    first.stop();

    let (second, _) = Server::init_and_start(&dir.path().join("second"), &flags);
    let api = Api::new(&second.url);
    wait_until("the divergence to show", Duration::from_secs(10), || {
        api.ops("/readyz").json["outbox"]["diverged"].is_string()
    });
    let ready = api.ops("/readyz");
    assert_eq!(ready.status, 503);
    assert!(ready.json["outbox"]["diverged"].as_str().unwrap().contains("diverges"), "{}", ready.json);
    let alive = api.ops("/healthz");
    assert_eq!((alive.status, alive.json["status"].as_str()), (503, Some("failing")), "only the operator can mend it");
    // The log line says exactly what to run; the reset below runs it.
    let said = std::fs::read_to_string(&second.log).unwrap();
    let command = format!("keyreg stream reset --nats {} --stream-prefix KEYREG --yes", nats.url);
    assert!(said.contains(&command), "{said}");
    let data = second.data.clone();
    second.stop();

    // Without --yes it says what it would do, and does nothing.
    let dry = keyreg(&["stream", "reset", "--nats", &nats.url]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stderr(&dry).contains("would delete the stream KEYREG_EVENTS") && stderr(&dry).contains("--yes"));
    assert_eq!(stream_events(&nats.url).len() as u64, published, "nothing is deleted without --yes");
    let reset = keyreg(&["stream", "reset", "--nats", &nats.url, "--stream-prefix", "KEYREG", "--yes"]);
    assert!(reset.status.success(), "{}", stderr(&reset));

    let second = Server::start(&data, &flags);
    let api = Api::new(&second.url);
    let head = api.head();
    wait_until("the second log on the stream", Duration::from_secs(10), || {
        api.ops("/readyz").json["outbox"]["published_seq"].as_u64() == Some(head)
    });
    assert_eq!(readyz(&api).status, 200);
    assert_eq!(api.ops("/healthz").status, 200);
    second.stop();
    let exported = keyreg(&["audit", "export", "--data", path_str(&data)]).stdout;
    let streamed: Vec<u8> =
        stream_events(&nats.url).into_iter().flat_map(|(_, bytes, _)| [bytes, b"\n".to_vec()].concat()).collect();
    assert_eq!(streamed, exported, "the stream is the second registry's log, byte for byte");
}

/// NATS unreachable at start: the log says so once, naming the URL, rather
/// than each duty reporting a timed-out request of its own every few seconds.
#[test]
fn an_unreachable_nats_is_named_once() {
    let dir = tempdir();
    let (server, _) = Server::init_and_start(dir.path(), &["--nats", "nats://127.0.0.1:1", "--commit", "local"]);
    let said = || std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        crate::serve::eventually(std::time::Duration::from_secs(10), || said()
            .contains("cannot connect to NATS at nats://127.0.0.1:1")),
        "{}",
        said()
    );
    // The duties keep retrying (each says so at debug level): three rounds
    // after the warning, it has still been said once.
    let retries_after_warning = || {
        said()
            .split("cannot connect to NATS")
            .nth(1)
            .map_or(0, |after| after.matches("the outbox waits for NATS").count())
    };
    assert!(
        crate::serve::eventually(std::time::Duration::from_secs(10), || retries_after_warning() >= 3),
        "{}",
        said()
    );
    assert_eq!(said().matches("cannot connect to NATS").count(), 1, "{}", said());
    let warnings: Vec<String> = said().lines().filter(|l| l.contains(" WARN ")).map(str::to_owned).collect();
    assert_eq!(warnings.len(), 1, "only the one warning: {warnings:#?}");
}
