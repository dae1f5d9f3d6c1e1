//! Two registry nodes on a 3-node NATS cluster (R3 streams and lease
//! bucket, `--lease 1s`), with a replica: the leader SIGKILLed under eight
//! writers writing through both nodes, and the leader SIGSTOPped past its
//! lease, then resumed. What a user checks: writes are acknowledged again
//! within the lease and a second, no acknowledged write is lost, none is
//! stored twice, the replica refuses no verify, every node's log is a
//! prefix of the stream, and a node that comes back stands by.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::nats_server::NatsCluster;
use crate::nats_support::*;
use crate::serve::*;
use crate::support::*;

const LEASE: Duration = Duration::from_secs(1);
/// Writes acknowledged before the kill, and again after the failover.
const UNDER_LOAD: usize = 100;

struct Nodes {
    _dir: tempfile::TempDir,
    cluster: NatsCluster,
    flags: Vec<String>,
    system: String,
    admin: String,
    /// By name: `a` made by `init`, `b` by `init --join`.
    servers: HashMap<&'static str, Server>,
    data: HashMap<&'static str, std::path::PathBuf>,
}

impl Nodes {
    fn start() -> Nodes {
        let dir = tempdir();
        let cluster = NatsCluster::start(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
        let flags: Vec<String> = [&cluster.url, "--stream-replicas", "3", "--lease", "1s", "--commit-timeout", "2s"]
            .into_iter()
            .chain(["--snapshot-every", "20"])
            .map(|s| s.to_string())
            .collect();
        let flags = [vec!["--nats".to_owned()], flags].concat();
        let a_dir = dir.path().join("a");
        std::fs::create_dir_all(&a_dir).unwrap();
        let (a, system) = Server::init_and_start(&a_dir, &node_flags(&flags, "a"));
        let b_data = dir.path().join("b").join("data");
        let joined =
            keyreg(&["init", "--data", path_str(&b_data), "--join", "--pepper-file", path_str(&a.data.join("pepper"))]);
        assert!(joined.status.success(), "{}", stderr(&joined));
        assert!(stdout(&joined).is_empty(), "init --join prints no key");
        Server::operator_is(&b_data, &system);
        let b = Server::start(&b_data, &node_flags(&flags, "b"));
        let data = HashMap::from([("a", a.data.clone()), ("b", b_data)]);
        let api = Api::new(&a.url);
        // The cluster elects its JetStream leaders first (slow on a loaded
        // machine); then node a leads, publishing its log.
        assert!(
            eventually(Duration::from_secs(60), || api.ops("/readyz").json["role"] == "leader"),
            "node a never led: {}\n{}",
            api.ops("/readyz").json,
            log_tail(&a.log)
        );
        let admin = wait_for_write(|| {
            let r = api
                .post("/v1/orgs")
                .auth(&system)
                .json(json!({"id": "acme", "name": "Acme", "max_keys": 1_000_000}))
                .send();
            (r.status == 201).then(|| r.json["secret"].as_str().unwrap().to_owned())
        });
        let nodes =
            Nodes { _dir: dir, cluster, flags, system, admin, servers: HashMap::from([("a", a), ("b", b)]), data };
        let head = nodes.api("a").head();
        assert!(
            eventually(Duration::from_secs(30), || nodes.health("b")["applied_seq"] == head
                && nodes.health("b")["leader"]["node"] == "a"),
            "the standby never caught up, or never learned the leader: {}",
            nodes.health("b")
        );
        nodes
    }

    fn api(&self, name: &str) -> Api {
        Api::new(&self.servers[name].url)
    }

    fn health(&self, name: &str) -> Value {
        self.api(name).ops("/readyz").json
    }

    fn role(&self, name: &str) -> String {
        self.health(name)["role"].as_str().unwrap_or("").to_owned()
    }

    fn leader(&self) -> &'static str {
        let mut leader = None;
        assert!(
            eventually(Duration::from_secs(10), || {
                leader = ["a", "b"].into_iter().find(|n| self.role(n) == "leader");
                leader.is_some()
            }),
            "no node leads"
        );
        leader.unwrap()
    }

    fn restart(&mut self, name: &'static str) {
        let server = Server::start(&self.data[name], &node_flags(&self.flags, name));
        self.servers.insert(name, server);
    }

    /// Every node's log is a prefix of the stream: its head's chain hash,
    /// which covers every event before it, is the stream's at that place.
    fn assert_prefixes_of_the_stream(&self) {
        let stream = stream_events(&self.cluster.url);
        for name in self.servers.keys() {
            let h = self.health(name);
            let seq = h["head_seq"].as_u64().unwrap();
            let at = stream.iter().find(|(s, ..)| *s == seq).unwrap_or_else(|| panic!("{name} is ahead: {h}"));
            assert_eq!(at.2.as_deref(), h["head_hash"].as_str(), "{name}'s log forks from the stream at {seq}");
        }
    }
}

fn node_flags(flags: &[String], name: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = flags.iter().map(|s| &*s.clone().leak()).collect();
    out.extend(["--node", name.to_owned().leak()]);
    out
}

fn log_tail(log: &Path) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let from = (log.len().saturating_sub(3000)..log.len()).find(|i| log.is_char_boundary(*i)).unwrap_or(0);
    log[from..].to_owned()
}

fn wait_for_write<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(t) = attempt() {
            return t;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no write was taken");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Names the stream holds in `key.created` events, with how often.
fn created_in_stream(url: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for (_, bytes, _) in stream_events(url) {
        let event: Value = serde_json::from_slice(&bytes).unwrap();
        if event["type"] == "key.created" {
            *seen.entry(event["data"]["name"].as_str().unwrap_or("").to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

/// Eight writers creating keys, each through one node first and the other
/// when the first does not answer; what each got back, and when.
struct Writers {
    stop: Arc<AtomicBool>,
    /// Each acknowledged write: its name, when it was sent.
    acked: Arc<Mutex<Vec<(String, Instant, Instant)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(urls: [String; 2], admin: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(vec![]));
        let threads = (0..8)
            .map(|i| {
                let (stop, acked, admin) = (stop.clone(), acked.clone(), admin.to_owned());
                let mut urls = urls.clone();
                urls.rotate_left(i % 2);
                std::thread::spawn(move || {
                    let apis = urls.map(|u| Api::new(&u));
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("w{i}-{n}");
                        n += 1;
                        let sent = Instant::now();
                        for api in &apis {
                            let body = json!({"name": name, "scopes": ["read"]});
                            match api.post("/v1/keys").auth(&admin).json(body).try_send() {
                                Ok(r) if r.status == 201 => {
                                    acked.lock().unwrap().push((name.clone(), sent, Instant::now()));
                                    break;
                                }
                                Ok(r) if r.status == 503 => {}
                                Ok(r) => panic!("{name}: {} {}", r.status, r.json),
                                Err(_) => {}
                            }
                        }
                    }
                })
            })
            .collect();
        Writers { stop, acked, threads }
    }

    /// How many writes were acknowledged, of those sent after `t`.
    fn acked_since(&self, t: Option<Instant>) -> usize {
        self.acked.lock().unwrap().iter().filter(|(_, sent, _)| t.is_none_or(|t| *sent > t)).count()
    }

    /// When the first write sent after `t` was acknowledged.
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.acked.lock().unwrap().iter().filter(|(_, sent, _)| *sent > t).map(|(.., at)| *at).min()
    }

    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap().into_iter().map(|(n, ..)| n).collect()
    }
}

/// Verifies one key against the replica until stopped; counts refusals.
fn verifying(replica: &Verifier, key: &str) -> (Arc<AtomicBool>, Arc<AtomicU64>, std::thread::JoinHandle<u64>) {
    let (stop, refused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let (s, r, url, key) = (stop.clone(), refused.clone(), replica.url.clone(), key.to_owned());
    let thread = std::thread::spawn(move || {
        let api = Api::new(&url);
        let mut asked = 0;
        while !s.load(Ordering::Relaxed) {
            asked += 1;
            let code = verify_code(&api, &key);
            if code != "VALID" {
                eprintln!("the replica answered {code}");
                r.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        asked
    });
    (stop, refused, thread)
}

fn replica_of(nodes: &Nodes) -> (Verifier, String) {
    let api = nodes.api("a");
    let (_, before) = new_key(&api, &nodes.admin, json!({"name": "before", "scopes": ["read"]}));
    let replica = Verifier::start(&nodes.cluster.url, &nodes.data["a"], "r1", 3_600_000);
    assert!(eventually(Duration::from_secs(10), || verify_code(&Api::new(&replica.url), &before) == "VALID"));
    (replica, before)
}

#[test]
fn a_standby_leads_within_the_lease_and_a_second_after_the_leader_is_killed() {
    let mut nodes = Nodes::start();
    let (replica, before) = replica_of(&nodes);
    let leader = nodes.leader();
    let standby = if leader == "a" { "b" } else { "a" };
    assert!(
        eventually(Duration::from_secs(5), || nodes.role(standby) == "standby"),
        "{}\n{}",
        nodes.health(standby),
        log_tail(&nodes.servers[standby].log)
    );
    assert!(
        eventually(Duration::from_secs(5), || nodes.health(standby)["leader"]["node"] == leader),
        "{}",
        nodes.health(standby)
    );

    let (stop_verifying, refused, verifier) = verifying(&replica, &before);
    let writers = Writers::start([nodes.servers["a"].url.clone(), nodes.servers["b"].url.clone()], &nodes.admin);
    // The kill comes under load: once the writers have had writes taken
    // through both nodes.
    assert!(eventually(Duration::from_secs(10), || writers.acked_since(None) >= UNDER_LOAD), "the writers stalled");
    let killed = Instant::now();
    nodes.servers.remove(leader).unwrap().kill();
    assert!(
        eventually(Duration::from_secs(5), || writers.first_ack_after(killed).is_some()),
        "no write after the kill"
    );
    let failover = writers.first_ack_after(killed).unwrap() - killed;
    eprintln!("FAILOVER_MS {}", failover.as_millis());
    assert!(
        eventually(Duration::from_secs(10), || writers.acked_since(Some(killed)) >= UNDER_LOAD),
        "writes did not go on after the failover"
    );
    let acked = writers.stop();
    stop_verifying.store(true, Ordering::Relaxed);
    let asked = verifier.join().unwrap();
    assert!(failover <= LEASE + Duration::from_secs(1), "writes were acknowledged again only after {failover:?}");
    assert_eq!(refused.load(Ordering::Relaxed), 0, "the replica refused verifies ({asked} asked)");
    assert!(nodes.role(standby) == "leader");

    let stored = created_in_stream(&nodes.cluster.url);
    for name in &acked {
        assert_eq!(
            stored.get(name),
            Some(&1),
            "{name} was acknowledged; the stream holds it {:?} times",
            stored.get(name)
        );
    }
    assert!(stored.values().all(|n| *n == 1), "an event was stored twice");
    let last = stream_events(&nodes.cluster.url).last().map(|(seq, ..)| *seq);
    assert_eq!(Some(nodes.api(standby).head()), last, "the new leader holds the whole stream");

    nodes.restart(leader);
    let head = nodes.api(standby).head();
    assert!(
        eventually(Duration::from_secs(20), || nodes.role(leader) == "standby"
            && nodes.health(leader)["applied_seq"] == head),
        "the killed node did not come back as a standby: {}",
        nodes.health(leader)
    );
    let digest = |n: &str| nodes.api(n).get("/v1/state/digest").auth(&nodes.system).send().ok(200).clone();
    assert_eq!(digest(leader), digest(standby));
    nodes.assert_prefixes_of_the_stream();
    eprintln!("{} writes acknowledged through the failover, {asked} verifies answered", acked.len());
}

#[test]
fn a_leader_paused_past_its_lease_acknowledges_nothing_as_leader_and_stands_by() {
    let nodes = Nodes::start();
    let leader = nodes.leader();
    let standby = if leader == "a" { "b" } else { "a" };
    let old = &nodes.servers[leader];
    old.pause();
    let paused = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || nodes.role(standby) == "leader"),
        "the standby did not lead: {}",
        nodes.health(standby)
    );
    eprintln!("the standby led {:?} after the pause", paused.elapsed());
    let (_, during) = new_key(&nodes.api(standby), &nodes.admin, json!({"name": "during", "scopes": ["read"]}));
    old.resume();

    // The old leader's first answers: each write is forwarded to the new
    // leader or refused, never taken as the old leader's own.
    for i in 0..5 {
        let name = format!("after-{i}");
        let r = nodes
            .api(leader)
            .post("/v1/keys")
            .auth(&nodes.admin)
            .json(json!({"name": name, "scopes": ["read"]}))
            .send();
        assert!(r.status == 201 || r.status == 503, "{} {}", r.status, r.json);
    }
    assert!(
        eventually(Duration::from_secs(5), || nodes.role(leader) == "standby"),
        "the old leader did not stand by: {}",
        nodes.health(leader)
    );
    let head = nodes.api(standby).head();
    assert!(eventually(Duration::from_secs(10), || nodes.health(leader)["head_seq"] == head));
    nodes.assert_prefixes_of_the_stream();
    let stored = created_in_stream(&nodes.cluster.url);
    assert!(stored.values().all(|n| *n == 1), "an event was stored twice: {stored:?}");
    assert_eq!(stored.get("during"), Some(&1));
    assert_eq!(verify_code(&nodes.api(leader), &during), "VALID", "the old leader serves what the new one wrote");
}

#[test]
fn a_standby_serves_the_command_line_counts_its_verifies_once_keeps_its_own_snapshots_and_leads_at_once_after_a_clean_stop()
 {
    let nodes = Nodes::start();
    let leader = nodes.leader();
    let standby = if leader == "a" { "b" } else { "a" };
    let (id, secret) = new_key(&nodes.api(leader), &nodes.admin, json!({"name": "counted", "scopes": ["read"]}));

    // The command line, given a dead node and the standby: the write goes
    // through the standby to the leader, once.
    let urls = format!("http://127.0.0.1:9,{}", nodes.servers[standby].url);
    for i in 0..25 {
        let name = format!("cli-{i}");
        let created = std::process::Command::new(keyreg_bin())
            .args(["keys", "create", "--name", &name, "--scope", "read", "--url", &urls])
            .env("KEYREG_TOKEN", &nodes.admin)
            .output()
            .unwrap();
        assert!(created.status.success(), "{}", stderr(&created));
    }
    let stored = created_in_stream(&nodes.cluster.url);
    assert!((0..25).all(|i| stored.get(&format!("cli-{i}")) == Some(&1)), "{stored:?}");

    // Verifies answered by the standby are counted by the leader, once.
    let head = nodes.api(leader).head();
    assert!(eventually(Duration::from_secs(10), || nodes.health(standby)["applied_seq"] == head));
    for _ in 0..7 {
        assert_eq!(verify_code(&nodes.api(standby), &secret), "VALID");
    }
    let total = |n: &str| {
        nodes.api(n).req("GET", "/v1/keys/{id}/usage", Some(&id)).auth(&nodes.admin).send().json["total"].as_u64()
    };
    assert!(eventually(Duration::from_secs(10), || total(leader) == Some(7)), "{:?}", total(leader));
    assert!(eventually(Duration::from_secs(10), || total(standby) == Some(7)), "{:?}", total(standby));
    // One more verify, and its report comes after any repeat of the first
    // seven (a retry goes out before new counts): 8, never 15.
    assert_eq!(verify_code(&nodes.api(standby), &secret), "VALID");
    assert!(
        eventually(Duration::from_secs(10), || total(leader) == Some(8)),
        "a report was counted twice, or lost: {:?}",
        total(leader)
    );

    // Past --snapshot-every, the standby wrote a snapshot of its own state.
    let snapshots = nodes.data[standby].join("snapshots");
    let written = std::fs::read_dir(&snapshots).map(|d| d.count()).unwrap_or(0);
    assert!(written > 0, "no snapshot in {}", snapshots.display());

    // A clean stop hands the lease over at once, well within the lease.
    let mut nodes = nodes;
    let stopped = Instant::now();
    nodes.servers.remove(leader).unwrap().stop();
    assert!(eventually(Duration::from_secs(5), || nodes.role(standby) == "leader"), "{}", nodes.health(standby));
    let handed = stopped.elapsed();
    assert!(handed < LEASE, "the standby led only {handed:?} after the leader stopped cleanly");
}
