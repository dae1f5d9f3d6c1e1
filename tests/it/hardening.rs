//! What a hostile review of a running registry found, each refused now:
//! a tampered log served as if it were whole, a wrong or exposed pepper, a
//! world-readable data dir, slow clients holding connections, oversized or
//! doubled headers, secrets cached, a sequence that wraps, and tenants
//! learning of one another through the chain check and the digest.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use keyreg::domain::command::Command;
use keyreg::domain::event::{Change, Event, KeyChange, KeyCreated, OrgSettings};
use keyreg::domain::id::{Actor, IdGenerator, OrgId, Seq};
use keyreg::domain::scope::Scope;
use keyreg::store::DataDir;
use keyreg::store::log::Log;
use serde_json::json;

use crate::serve::*;
use crate::support::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file and dir under `dir`, with `dir` itself.
fn tree(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// One changed byte at sequence 10 of a 700-event log, made on a stopped
/// registry: `keyreg serve` starts, but refuses every write, fails
/// `/readyz` naming sequence 10, and serves the state from before the
/// break, so the forged scopes are never granted.
#[test]
fn a_tampered_log_is_served_read_only_and_named() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let (token, system) = {
        let (registry, system, _) = registry_with_clock(&data);
        let org = OrgId::system();
        let token = registry.format().generate();
        let key = registry.new_key(&token, "payments", "", &["billing:read"]);
        let id = key.id;
        registry.execute_blocking(admin(), org.clone(), Command::CreateKey(key)).unwrap();
        for i in 0..6 {
            let edit =
                keyreg::domain::command::KeyEdit { description: Some(format!("edit {i}")), ..Default::default() };
            registry.execute_blocking(admin(), org.clone(), Command::EditKey { id, expected: None, edit }).unwrap();
        }
        // Sequence 10: the key's scopes, edited to what they already are
        // in substance, so that the forgery below has an event to change.
        let edit = keyreg::domain::command::KeyEdit {
            scopes: Some(vec![Scope::parse("billing:read").unwrap(), Scope::parse("billing:list").unwrap()]),
            ..Default::default()
        };
        let outcome =
            registry.execute_blocking(admin(), org.clone(), Command::EditKey { id, expected: None, edit }).unwrap();
        assert_eq!(outcome.head, Seq(10));
        while registry.head().seq.0 < 700 {
            let t = registry.format().generate();
            let k = registry.new_key(&t, "filler", "", &["read"]);
            let kid = k.id;
            registry.execute_blocking(admin(), org.clone(), Command::CreateKey(k)).unwrap();
            registry
                .execute_blocking(admin(), org.clone(), Command::Revoke { id: kid, expected: None, reason: None })
                .unwrap();
        }
        registry.close().unwrap();
        (token, system)
    };
    {
        let mut log = Log::open(&data.join("log")).unwrap();
        log.tamper(Seq(10), |bytes| {
            let text = String::from_utf8(bytes.clone()).unwrap();
            *bytes = text.replace(r#""scopes":["billing:read","billing:list"]"#, r#""scopes":["*"]"#).into_bytes();
            assert_ne!(bytes.as_slice(), text.as_bytes(), "the forgery changed nothing");
        })
        .unwrap();
    }
    assert!(keyreg::store::log::wait_unlocked(&data.join("log"), Duration::from_secs(10)));
    // The clean stop marked the chain checked through its head; a data dir
    // without that mark (never checked) is checked from the first event.
    std::fs::remove_file(data.join("checked")).unwrap();

    Server::operator_is(&data, system.expose());
    let server = Server::start(&data, &[]);
    let api = Api::new(&server.url);
    let ready = readyz(&api);
    assert_eq!(ready.status, 503, "{}", ready.json);
    let why = ready.json["refusing_writes"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("sequence 10"), "{why}");
    assert_eq!(api.ops("/healthz").status, 200, "alive, serving reads");
    assert_eq!(verify_token(&api, token.expose(), "compute:run"), "FORBIDDEN_SCOPE", "the forged * is not granted");
    assert_eq!(verify_token(&api, token.expose(), "billing:read"), "VALID");
    let head = api.head();
    let write = api.post("/v1/keys").auth(system.expose()).json(json!({"name": "new", "scopes": ["read"]})).send();
    write.problem(503, "UNAVAILABLE");
    assert!(write.json["detail"].as_str().unwrap().contains("sequence 10"), "{}", write.json);
    assert_eq!(api.head(), head, "nothing was appended");
    server.stop();
}

fn verify_token(api: &Api, token: &str, action: &str) -> String {
    verify(api, json!({"key": token, "action": action}))
}

/// A data dir given another pepper, or a pepper file others may read, does
/// not start; the message says what is wrong and what to do.
#[test]
fn serve_refuses_another_pepper_and_an_exposed_one() {
    let dir = tempdir();
    let data = dir.path().join("data");
    assert!(keyreg(&["init", "--data", path_str(&data)]).status.success());
    let pepper = data.join("pepper");
    let own = std::fs::read(&pepper).unwrap();

    chmod(&pepper, 0o644);
    let exposed = keyreg(&["serve", "--data", path_str(&data), "--listen", "127.0.0.1:0"]);
    assert_eq!(exposed.status.code(), Some(1));
    assert!(stderr(&exposed).contains("chmod 600"), "{}", stderr(&exposed));
    chmod(&pepper, 0o600);

    std::fs::write(&pepper, [7u8; 32]).unwrap();
    let wrong = keyreg(&["serve", "--data", path_str(&data), "--listen", "127.0.0.1:0"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("not the pepper this log was made with"), "{}", stderr(&wrong));
    std::fs::write(&pepper, &own).unwrap();
    let (server, _) = (Server::start(&data, &[]), ());
    assert_eq!(readyz(&Api::new(&server.url)).status, 200);
    server.stop();
}

/// `keyreg init` makes a dir only its owner can read; an older dir that was
/// open to others is closed on the next start, and says so.
#[test]
fn the_data_dir_is_private() {
    let dir = tempdir();
    let data = dir.path().join("data");
    assert!(keyreg(&["init", "--data", path_str(&data)]).status.success());
    for path in tree(&data) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{}", path.display());
    }
    for path in tree(&data) {
        if path.file_name().is_some_and(|n| n != "pepper") {
            chmod(&path, if path.is_dir() { 0o755 } else { 0o644 });
        }
    }
    let server = Server::start(&data, &[]);
    let log = server.log.clone();
    server.stop();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("restricted it to its owner"), "{log}");
    for path in tree(&data) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{}", path.display());
    }
}

/// A log made before keyreg recorded pepper fingerprints (its first event
/// has none) gets one on its first start: an `org.updated` of `_system`,
/// said in the log, once.
#[test]
fn an_older_data_dir_gets_its_fingerprint_on_first_start() {
    let dir = tempdir();
    let data = DataDir::new(&dir.path().join("data"));
    let pepper = keyreg::domain::token::Pepper::generate();
    data.create(&pepper).unwrap();
    {
        let mut log = Log::open(&data.log_path()).unwrap();
        let mut ids = IdGenerator::default();
        let now = t0();
        let token = keyreg::domain::token::TokenFormat::default().generate();
        let event = |ids: &mut IdGenerator, change| Event {
            id: ids.event_id(now),
            time: now,
            org: OrgId::system(),
            actor: Actor::system("init"),
            via: None,
            batch_rest: 0,
            change,
        };
        let settings = OrgSettings { name: "System".into(), max_keys: 1000, pepper_fingerprint: None };
        log.stage(&event(&mut ids, Change::OrgCreated(settings))).unwrap();
        let created = KeyCreated {
            name: "init".into(),
            description: String::new(),
            owner: String::new(),
            scopes: vec![Scope::parse("keys:admin").unwrap()],
            allowed_cidrs: vec![],
            expires_at: None,
            display_prefix: token.display_prefix(),
            key_hash: token.hash(&pepper),
            roles: vec![],
            meta: None,
        };
        let id = ids.key_id(now);
        log.stage(&event(&mut ids, Change::Key(id, KeyChange::Created(created)))).unwrap();
        log.commit().unwrap();
    }
    assert!(keyreg::store::log::wait_unlocked(&data.log_path(), Duration::from_secs(10)));
    let upgrade = |expected_head: u64| {
        let server = Server::start(data.path(), &[]);
        let log = server.log.clone();
        server.stop();
        let verified = keyreg(&["audit", "verify", "--data", path_str(data.path())]);
        assert!(stdout(&verified).contains(&format!("head seq {expected_head},")), "{}", stdout(&verified));
        std::fs::read_to_string(log).unwrap()
    };
    let first = upgrade(3);
    assert!(first.contains("recorded it now"), "{first}");
    let export = keyreg(&["audit", "export", "--data", path_str(data.path())]);
    let last = stdout(&export).lines().last().unwrap().to_owned();
    let event: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!((event["type"].as_str(), event["org"].as_str()), (Some("org.updated"), Some("_system")));
    assert_eq!(event["data"]["pepper_fingerprint"].as_str().map(str::len), Some(64));
    let second = upgrade(3);
    assert!(!second.contains("recorded it now"), "only once: {second}");
}

/// A raw connection to `url`'s host.
fn connect(url: &str) -> TcpStream {
    let s = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes the connection; what it sent, and when
/// it closed.
fn read_to_close(mut s: TcpStream) -> (String, Instant) {
    let mut buf = vec![];
    let _ = s.read_to_end(&mut buf);
    (String::from_utf8_lossy(&buf).into_owned(), Instant::now())
}

/// A request refused before its body is read (a `Keyreg-Actor` header from
/// a key that may not send one) is answered with `Connection: close`, so a
/// keep-alive client does not send its next request into a socket the
/// server is closing. Before the header, about one such pair in seven
/// failed with "peer disconnected".
#[test]
fn an_error_before_the_body_is_read_closes_the_connection_cleanly() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let (_, keymaster) = new_key(&api, &system, serde_json::json!({"name": "km", "scopes": ["keys:admin"]}));
    let body = r#"{"name":"x","scopes":["read"]}"#;
    let mut s = connect(&server.url);
    write!(
        s,
        "POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keymaster}\r\nKeyreg-Actor: user:a@b.co\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (answer, _) = read_to_close(s);
    let head = answer.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 403") && head.contains("connection: close"), "{answer}");
    for i in 0..50 {
        let refused = api
            .post("/v1/keys")
            .auth(&keymaster)
            .header("Keyreg-Actor", "user:a@b.co")
            .json(serde_json::json!({"name": "x", "scopes": ["read"]}))
            .send();
        assert_eq!(refused.status, 403, "round {i}");
        assert_eq!(api.ops("/healthz").status, 200, "round {i}");
    }
}

/// A client may not hold a connection: partial headers, a short body and an
/// idle keep-alive are each cut off after the read timeout; a declared body
/// over 64 KiB is refused at once; headers over 16 KiB get 431, and two
/// `Authorization` headers 400, both as problem+json; past the connection
/// limit, a new connection waits until one frees.
#[test]
fn what_a_connection_may_hold() {
    let dir = tempdir();
    let (server, _) = Server::init_and_start(dir.path(), &["--read-timeout", "1s", "--max-connections", "4"]);
    let url = server.url.clone();
    let host = url.trim_start_matches("http://").to_owned();

    let started = Instant::now();
    let mut partial = connect(&url);
    partial.write_all(format!("POST /v1/verify HTTP/1.1\r\nHost: {host}\r\n").as_bytes()).unwrap();
    let (_, closed) = read_to_close(partial);
    let held = closed - started;
    assert!(held >= Duration::from_millis(900) && held < Duration::from_secs(5), "partial headers held {held:?}");

    let started = Instant::now();
    let mut short = connect(&url);
    short
        .write_all(
            format!("POST /v1/verify HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n{{\"key\":").as_bytes(),
        )
        .unwrap();
    let (answer, closed) = read_to_close(short);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("REQUEST_TIMEOUT"), "{answer}");
    assert!(closed - started < Duration::from_secs(5));

    let started = Instant::now();
    let mut huge = connect(&url);
    huge.write_all(format!("POST /v1/verify HTTP/1.1\r\nHost: {host}\r\nContent-Length: 99999999\r\n\r\n").as_bytes())
        .unwrap();
    let (answer, closed) = read_to_close(huge);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
    assert!(closed - started < Duration::from_millis(900), "413 at once, not after waiting for the body");

    let mut idle = connect(&url);
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let answered = Instant::now();
    let (_, closed) = read_to_close(idle);
    assert!(closed - answered < Duration::from_secs(5), "an idle keep-alive connection is closed");

    let big = "x".repeat(20 * 1024);
    let mut headers = connect(&url);
    headers.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: {big}\r\n\r\n").as_bytes()).unwrap();
    let (answer, _) = read_to_close(headers);
    assert!(answer.starts_with("HTTP/1.1 431"), "{}", &answer[..answer.len().min(200)]);
    assert!(answer.contains("application/problem+json") && answer.contains("HEADERS_TOO_LARGE"), "{answer}");

    let mut twice = connect(&url);
    twice
        .write_all(
            format!("GET /v1/keys HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let (answer, _) = read_to_close(twice);
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("one Authorization header"), "{answer}");

    // Four idle connections take every slot; a fifth waits for one of them
    // to be cut off by the read timeout.
    let holders: Vec<TcpStream> = (0..4).map(|_| connect(&url)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let mut waiting = connect(&url);
    waiting
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let (answer, served) = read_to_close(waiting);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let waited = served - started;
    assert!(waited >= Duration::from_millis(500), "served at once ({waited:?}): the limit did not hold");
    drop(holders);
    server.stop();
}

/// Answers that carry a secret may not be cached.
#[test]
fn secrets_are_not_cached() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let cache =
        |r: &ureq::http::Response<ureq::Body>| r.headers().get("cache-control").map(|v| v.to_str().unwrap().to_owned());
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let post = |path: &str, token: &str, body: serde_json::Value| {
        agent
            .post(format!("{}{path}", server.url))
            .header("Authorization", format!("Bearer {token}"))
            .send_json(body)
            .unwrap()
    };
    let mut org = post("/v1/orgs", &system, json!({"id": "acme", "name": "Acme"}));
    assert_eq!(cache(&org), Some("no-store".into()));
    let admin: serde_json::Value = serde_json::from_slice(&org.body_mut().read_to_vec().unwrap()).unwrap();
    let admin = admin["secret"].as_str().unwrap();
    let mut created = post("/v1/keys", admin, json!({"name": "k", "scopes": ["read"]}));
    assert_eq!(cache(&created), Some("no-store".into()));
    let key: serde_json::Value = serde_json::from_slice(&created.body_mut().read_to_vec().unwrap()).unwrap();
    let id = key["key"]["id"].as_str().unwrap();
    let rotated = post(&format!("/v1/keys/{id}/rotate"), admin, json!({}));
    assert_eq!(rotated.status(), 200);
    assert_eq!(cache(&rotated), Some("no-store".into()));
    let listed =
        agent.get(format!("{}/v1/keys", server.url)).header("Authorization", format!("Bearer {admin}")).call().unwrap();
    assert_eq!(cache(&listed), None, "only answers with a secret");
    let after_all = api.get("/v1/events").auth(&system).query("after_seq", &u64::MAX.to_string()).send();
    assert!(after_all.body.is_empty(), "nothing comes after the last sequence there can be");
    server.stop();
}

/// A tenant's chain check and digest speak of its own org: its events, its
/// last sequence, its keys; the whole log's figures need a `_system` key.
#[test]
fn tenants_see_their_own_org_in_the_chain_check_and_the_digest() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let acme = new_org(&api, &system, "acme");
    let beta = new_org(&api, &system, "beta");
    new_key(&api, &acme, json!({"name": "a1", "scopes": ["read"]}));
    let acme_last = api.head();
    for i in 0..5 {
        new_key(&api, &beta, json!({"name": format!("b{i}"), "scopes": ["read"]}));
    }
    let global = api.get("/v1/audit/verify").auth(&system).send().ok(200).clone();
    let own = api.get("/v1/audit/verify").auth(&acme).send().ok(200).clone();
    assert_eq!(global["head_seq"], api.head());
    assert_eq!((own["ok"].as_bool(), own["events"].as_u64()), (Some(true), Some(3)), "{own}");
    assert_eq!(own["head_seq"], acme_last, "{own}");
    assert_ne!(own["head_hash"], global["head_hash"]);
    let after = api.get("/v1/events").auth(&system).query("after_seq", &acme_last.to_string()).send().body;
    let next: serde_json::Value = serde_json::from_slice(after.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(own["head_hash"], next["prevhash"], "the hash of acme's last event");

    let global_digest = api.get("/v1/state/digest").auth(&system).send().ok(200).clone();
    let acme_digest = api.get("/v1/state/digest").auth(&acme).send().ok(200).clone();
    assert_eq!(global_digest["seq"], api.head());
    assert_eq!(acme_digest["seq"], acme_last);
    assert_ne!(acme_digest["digest"], global_digest["digest"]);
    new_key(&api, &beta, json!({"name": "b-later", "scopes": ["read"]}));
    assert_eq!(
        api.get("/v1/state/digest").auth(&acme).send().ok(200),
        &acme_digest,
        "beta's activity does not move acme's"
    );
    server.stop();
}

/// Requests with invented methods, on the API, the console and a
/// replica, each answered 405 as problem+json, and no new series in
/// `/metrics`: 300 of them used to make 300.
#[test]
fn invented_methods_add_no_metric_series() {
    let dir = tempdir();
    let nats = crate::nats_support::start_nats(dir.path());
    let (server, _) = Server::init_and_start(dir.path(), &["--nats", &nats.url]);
    let replica = crate::nats_support::Verifier::start(&nats.url, &server.data, "r1", 3_600_000);
    let ask = |url: &str, method: &str, path: &str| {
        let mut s = connect(url);
        write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        read_to_close(s).0
    };
    for i in 0..100 {
        for (url, path) in [(&server.url, "/v1/keys"), (&server.url, "/console/keys"), (&replica.url, "/healthz")] {
            let answer = ask(url, &format!("INVENTED{i}"), path);
            assert!(answer.starts_with("HTTP/1.1 405"), "{path}: {answer}");
            assert!(answer.contains("application/problem+json"), "{path}: {answer}");
        }
    }
    for url in [&server.url, &replica.url] {
        let metrics = String::from_utf8(Api::new(url).ops("/metrics").body).unwrap();
        assert!(!metrics.contains("INVENTED"), "{metrics}");
        assert!(metrics.len() < 20_000, "{} bytes of metrics", metrics.len());
    }
    server.stop();
}

/// A tenant writing faster than its allowance (here 20 events, or 300 KB
/// of events, a minute) is answered 429 `RATE_LIMITED` with `Retry-After`,
/// and nothing is appended; other orgs, the operator and verifies go on.
#[test]
fn a_tenant_cannot_grow_the_log_without_bound() {
    let dir = tempdir();
    let limits = ["--org-events-per-minute", "20", "--org-bytes-per-minute", "300000"];
    let (server, system) = Server::init_and_start(dir.path(), &limits);
    let api = Api::new(&server.url);
    let acme = new_org(&api, &system, "acme");
    let beta = new_org(&api, &system, "beta");
    let mut made = 0;
    let refused = loop {
        let answer =
            api.post("/v1/keys").auth(&acme).json(json!({"name": format!("k{made}"), "scopes": ["read"]})).send();
        if answer.status != 201 {
            break answer;
        }
        made += 1;
        assert!(made < 100, "no limit met after 100 keys");
    };
    refused.problem(429, "RATE_LIMITED");
    let retry: u64 = refused.retry_after.as_deref().and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    assert!((18..=20).contains(&made), "{made} keys before the limit");
    let head = api.head();
    api.post("/v1/keys")
        .auth(&acme)
        .json(json!({"name": "more", "scopes": ["read"]}))
        .send()
        .problem(429, "RATE_LIMITED");
    assert_eq!(api.head(), head, "a refused write appended something");
    let (_, key) = new_key(&api, &beta, json!({"name": "theirs", "scopes": ["read"]}));
    new_key(&api, &system, json!({"name": "operator's", "scopes": ["read"]}));
    assert_eq!(verify(&api, json!({"key": key})), "VALID");

    // Bytes: catalogues of about 110 KB each; the third is over 300 KB.
    let gamma = new_org(&api, &system, "gamma");
    let catalogue = |n: usize| {
        let actions: Vec<serde_json::Value> =
            (0..n).map(|i| json!({"action": format!("svc:a{i}"), "description": "d".repeat(250)})).collect();
        json!({"actions": actions, "enforce": false})
    };
    let put = |n| api.req("PUT", "/v1/catalog", None).auth(&gamma).json(catalogue(n)).send();
    put(400).ok(200);
    put(401).ok(200);
    put(402).ok(200);
    put(403).problem(429, "RATE_LIMITED");
    server.stop();
}

/// Keys tried through the console's sign-in: ten failures from one address
/// (or one sign-in form) are answered as usual, then sign-ins from there
/// are refused (429) before any key is looked at, even a right one; it
/// used to take thousands of guesses a second.
#[test]
fn failed_sign_ins_are_throttled() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let form = || {
        let mut s = connect(&server.url);
        write!(s, "GET /console/sign-in HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let page = read_to_close(s).0;
        let cookie = page.split("keyreg_sign_in=").nth(1).unwrap().split(';').next().unwrap().to_owned();
        let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        (cookie, csrf)
    };
    let sign_in = |key: &str| {
        let (cookie, csrf) = form();
        let body = format!("csrf={csrf}&key={key}&user=");
        let mut s = connect(&server.url);
        write!(
            s,
            "POST /console/sign-in HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: keyreg_sign_in={cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        read_to_close(s).0
    };
    assert!(sign_in(&system).starts_with("HTTP/1.1 303"), "a right key signs in");
    let wrong = keyreg::domain::token::TokenFormat::default().generate().expose().to_owned();
    for i in 0..10 {
        let answer = sign_in(&wrong);
        assert!(answer.starts_with("HTTP/1.1 401"), "try {i}: {}", &answer[..40]);
    }
    let throttled = sign_in(&system);
    assert!(throttled.starts_with("HTTP/1.1 429"), "{}", &throttled[..40]);
    assert!(throttled.contains("Too many failed sign-ins"));
    server.stop();
}

/// One client holding many connections open without finishing a request
/// (a slowloris) gets at most `--max-connections-per-client`; the next one
/// from its address is closed at once, and another client is answered as
/// if nothing were happening.
#[test]
fn one_client_cannot_hold_every_connection() {
    let dir = tempdir();
    let (server, _) =
        Server::init_and_start(dir.path(), &["--max-connections-per-client", "20", "--max-connections", "40"]);
    let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect(&server.url);
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc").unwrap();
            s
        })
        .collect();
    let mut one_more = connect(&server.url);
    one_more.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut byte = [0u8; 1];
    // Closed by the server: a read returns 0 at once (kept open, it would
    // time out instead, the server waiting for a request).
    assert!(matches!(one_more.read(&mut byte), Ok(0)), "the 21st connection from one address was kept");
    // Another client, from another loopback address.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answer = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.unwrap().unwrap();
        out
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    server.stop();
}

/// Health, readiness and metrics tell a load balancer, a stranger or a
/// tenant whether to route here, nothing of the log's head or activity;
/// the operator (a `_system` key holding `audit:read`) gets the detail.
#[test]
fn strangers_and_tenants_learn_nothing_of_the_logs_activity() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &[]);
    let api = Api::new(&server.url);
    let tenant = new_org(&api, &system, "acme");
    let (_, reader) = new_key(&api, &system, json!({"name": "ops reader", "scopes": ["keys:read"]}));
    for path in ["/healthz", "/readyz"] {
        for who in [None, Some(tenant.as_str()), Some(reader.as_str())] {
            let req = api.get(path);
            let answer = match who {
                Some(token) => req.auth(token),
                None => req,
            }
            .send();
            assert_eq!(answer.status, 200, "{path}");
            assert_eq!(answer.json, json!({"status": "ok"}), "{path} as {who:?}");
        }
        let full = api.get(path).auth(&system).send();
        assert!(full.json["head_seq"].as_u64().is_some_and(|s| s > 0), "{}", full.json);
    }
    api.get("/metrics").send().problem(401, "UNAUTHENTICATED");
    api.get("/metrics").auth(&tenant).send().problem(403, "FORBIDDEN");
    let metrics = api.get("/metrics").auth(&system).send();
    assert_eq!(metrics.status, 200);
    assert!(String::from_utf8_lossy(&metrics.body).contains("keyreg_log_head_seq"));
    crate::api_contract::check_against_openapi(&api.exchanges.borrow());
    server.stop();
}

/// SIGTERM while a client holds a kept-alive connection: the connection is
/// closed gracefully and the server exits, with no task panicking on the
/// way (one used to poll the shutdown signal after it had fired).
#[test]
fn a_stop_with_a_connection_kept_alive_is_clean() {
    let dir = tempdir();
    let (server, _) = Server::init_and_start(dir.path(), &[]);
    let address = server.url.trim_start_matches("http://").to_owned();
    // Several, since which of a connection's two wake-ups came first was
    // left to chance.
    let connections: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut connection = TcpStream::connect(&address).unwrap();
            connection.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut answer = [0u8; 512];
            let n = connection.read(&mut answer).unwrap();
            assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
            connection
        })
        .collect();
    let log = server.log.clone();
    server.stop();
    let said = std::fs::read_to_string(log).unwrap();
    assert!(!said.contains("panicked"), "{said}");
    drop(connections);
}
