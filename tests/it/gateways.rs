//! Forward auth behind real proxies: Debian's nginx (`auth_request`) and
//! Caddy (`forward_auth`), started here on loopback in front of a tiny
//! backend that echoes the key id the proxy handed it, with the configs
//! docs/gateways.md gives. Traefik and Envoy are not packaged here: the
//! header shapes they send are asked as raw requests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::serve::*;
use crate::support::*;

/// A backend that answers every request `200` with the `Keyreg-Key-Id` and
/// `Keyreg-Owner` headers it received as its body.
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let (mut id, mut owner) = (String::from("-"), String::from("-"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some((name, value)) = line.split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "keyreg-key-id" => id = value.trim().to_owned(),
                        "keyreg-owner" => owner = value.trim().to_owned(),
                        _ => {}
                    }
                }
                line.clear();
            }
            let body = format!("{id} {owner}");
            let _ =
                write!(&stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn installed(bin: &str, package: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(bin);
        if path.exists() {
            return path.display().to_string();
        }
    }
    panic!("{bin} is not installed: apt-get install {package} (.ci/run does)");
}

/// A proxy process, killed when dropped.
struct Proxy {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Runs `command`, its stderr to `dir/<name>.log`, and waits until
    /// `port` takes connections.
    fn start(command: &mut Command, name: &str, dir: &Path, port: u16) -> Proxy {
        let log = dir.join(format!("{name}.log"));
        let child = command.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let proxy = Proxy { child, url: format!("http://127.0.0.1:{port}"), log };
        let up = eventually(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let said = std::fs::read_to_string(&proxy.log).unwrap_or_default();
        assert!(up, "{name} did not start listening on {}: {said}", proxy.url);
        proxy
    }
}

/// A config from docs/gateways with its addresses (the proxy on 8080,
/// keyreg on 8000, the service on 9000) made this test's.
fn addressed(config: &str, port: u16, keyreg: &str, backend: u16) -> String {
    config
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8000", keyreg.trim_start_matches("http://"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{backend}"))
}

fn nginx(dir: &Path, keyreg: &str, backend: u16) -> Proxy {
    let port = free_port();
    let config = addressed(include_str!("../../docs/gateways/nginx.conf"), port, keyreg, backend);
    let conf = dir.join("nginx.conf");
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    // Run in the foreground, as this user, with everything under `prefix`.
    let whole = format!(
        "daemon off;\nuser root;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n{config}\n}}\n",
        p = prefix.display()
    );
    std::fs::write(&conf, whole).unwrap();
    let mut command = Command::new(installed("nginx", "nginx-light"));
    command.args(["-p", path_str(&prefix), "-c", path_str(&conf), "-e", "stderr"]);
    Proxy::start(&mut command, "nginx", dir, port)
}

fn caddy(dir: &Path, keyreg: &str, backend: u16) -> Proxy {
    let port = free_port();
    let site = addressed(include_str!("../../docs/gateways/Caddyfile"), port, keyreg, backend);
    let file = dir.join("Caddyfile");
    std::fs::write(&file, format!("{{\n  admin off\n  auto_https off\n}}\n{site}")).unwrap();
    let mut command = Command::new(installed("caddy", "caddy"));
    command
        .args(["run", "--config", path_str(&file), "--adapter", "caddyfile"])
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    Proxy::start(&mut command, "caddy", dir, port)
}

#[test]
fn nginx_and_caddy_pass_refuse_and_hand_the_key_on() {
    let dir = tempdir();
    let (server, system) = Server::init_and_start(dir.path(), &["--access-flush-ms", "50"]);
    let api = Api::new(&server.url);
    let admin = new_org(&api, &system, "acme");
    let (reader_id, reader) =
        new_key(&api, &admin, json!({"name": "reader", "scopes": ["read@files/**"], "owner": "ada@example.com"}));
    let (writer_id, writer) = new_key(&api, &admin, json!({"name": "writer", "scopes": ["read", "write"]}));
    let (_, far) = new_key(&api, &admin, json!({"name": "far", "scopes": ["read"], "allowed_cidrs": ["10.0.0.0/8"]}));
    let (_, here) =
        new_key(&api, &admin, json!({"name": "here", "scopes": ["read"], "allowed_cidrs": ["127.0.0.1/32"]}));
    let (revoked_id, revoked) = new_key(&api, &admin, json!({"name": "gone", "scopes": ["read"]}));
    api.req("POST", "/v1/keys/{id}/revoke", Some(&revoked_id)).auth(&admin).json(json!({})).send().ok(200);
    let backend = backend();
    let proxies =
        [("nginx", nginx(dir.path(), &server.url, backend)), ("caddy", caddy(dir.path(), &server.url, backend))];

    for (name, proxy) in &proxies {
        let through = Api::new(&proxy.url);
        let call = |method: &'static str, path: &'static str, key: Option<(&str, &str)>| {
            let mut req = through.req(method, path, None);
            if let Some((header, value)) = key {
                req = req.header(header, value);
            }
            req.send()
        };
        let bearer = |k: &str| format!("Bearer {k}");
        let passed = call("GET", "/files/report.pdf", Some(("Authorization", &bearer(&reader))));
        assert_eq!(passed.status, 200, "{name}: a reader reads");
        assert_eq!(passed.text(), format!("{reader_id} ada@example.com"), "{name}: the backend learns who called");
        let by_header = call("GET", "/files/report.pdf", Some(("X-API-Key", &reader)));
        assert_eq!((by_header.status, by_header.text()), (200, format!("{reader_id} ada@example.com")), "{name}");
        assert_eq!(
            call("POST", "/files/report.pdf", Some(("Authorization", &bearer(&reader)))).status,
            403,
            "{name}: no write"
        );
        assert_eq!(
            call("GET", "/other/thing", Some(("Authorization", &bearer(&reader)))).status,
            403,
            "{name}: outside files/"
        );
        let wrote = call("POST", "/anything", Some(("Authorization", &bearer(&writer))));
        assert_eq!(
            (wrote.status, wrote.text().split(' ').next().map(str::to_owned)),
            (200, Some(writer_id.clone())),
            "{name}"
        );
        assert_eq!(call("GET", "/files/a", None).status, 401, "{name}: no key");
        assert_eq!(
            call("GET", "/files/a", Some(("Authorization", "Bearer kr_nope"))).status,
            401,
            "{name}: a malformed key"
        );
        assert_eq!(call("GET", "/files/a", Some(("Authorization", &bearer(&revoked)))).status, 401, "{name}: revoked");
        // The caller's address comes from the proxy's X-Forwarded-For.
        assert_eq!(call("GET", "/x", Some(("Authorization", &bearer(&here)))).status, 200, "{name}: from 127.0.0.1");
        assert_eq!(call("GET", "/x", Some(("Authorization", &bearer(&far)))).status, 403, "{name}: not from 10/8");
    }

    // Each call through a proxy was a verify, counted by its outcome.
    let usage = || api.req("GET", "/v1/keys/{id}/usage", Some(&reader_id)).auth(&admin).send().json;
    let counted = eventually(Duration::from_secs(10), || usage()["total"] == 8);
    assert!(counted, "usage: {}", usage());
    assert_eq!(usage()["outcomes"], json!({"VALID": 4, "FORBIDDEN_SCOPE": 4}));
    drop(proxies);

    // Traefik's ForwardAuth and Envoy's ext_authz, by the headers they send.
    let direct = Api::new(&server.url);
    let raw = |req: Req<'_>| req.send().status;
    let traefik = |method: &str, key: &str| {
        direct
            .get("/v1/authz")
            .header("Authorization", &format!("Bearer {key}"))
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "api.example.com")
            .header("X-Forwarded-Uri", "/files/q3.csv?download=1")
            .header("X-Forwarded-For", "127.0.0.1, 10.1.2.3")
    };
    assert_eq!(raw(traefik("GET", &reader)), 200);
    assert_eq!(raw(traefik("DELETE", &reader)), 403);
    let envoy = |method: &'static str, path: &'static str, key: &str| {
        direct.req(method, path, None).header("Authorization", &format!("Bearer {key}"))
    };
    let envoy_pass = envoy("GET", "/v1/authz/files/q3.csv", &reader).send();
    assert_eq!((envoy_pass.status, envoy_pass.header("keyreg-key-id")), (200, Some(reader_id.clone())));
    assert_eq!(envoy_pass.header("keyreg-scopes").as_deref(), Some("read@files/**"));
    assert_eq!(raw(envoy("POST", "/v1/authz/files/q3.csv", &reader)), 403);
    assert_eq!(raw(envoy("GET", "/v1/authz/elsewhere", &reader)), 403);
    let unknown = envoy("GET", "/v1/authz", "kr_nope").send();
    assert_eq!((unknown.status, unknown.header("www-authenticate").as_deref()), (401, Some("Bearer realm=\"keyreg\"")));
    assert_eq!(unknown.json["code"], "MALFORMED");

    // A registry that trusts only 10.0.0.0/8 as proxies judges a loopback
    // caller by its own address, whatever it claims.
    server.stop();
    let strict = Server::start(&dir.path().join("data"), &["--trusted-proxy", "10.0.0.0/8"]);
    let claimed = Api::new(&strict.url)
        .get("/v1/authz")
        .header("X-API-Key", &far)
        .header("Keyreg-Action", "read")
        .header("X-Forwarded-For", "10.1.2.3")
        .send();
    assert_eq!((claimed.status, claimed.json["code"].as_str()), (403, Some("FORBIDDEN_IP")));
    strict.stop();
}
