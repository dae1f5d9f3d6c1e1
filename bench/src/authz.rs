//! Forward auth under `wrk` (keep-alive, loopback): `GET /v1/authz` with
//! the question in headers against `POST /v1/verify` with it in a body, on
//! the same registry, runs interleaved; then nginx with `auth_request` to
//! that registry against the same nginx serving the same file without it.

use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::http::{Request, wrk};
use crate::{Row, Size, median, progress};
use keyreg::domain::command::Command;
use keyreg::domain::id::{Actor, OrgId};
use keyreg::registry::Registry;
use keyreg::server::{ServeOptions, serve};
use keyreg::store::DataDir;

/// nginx, killed when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One nginx worker with two servers on free ports: `guarded` asks keyreg
/// at `keyreg` before serving `ok.txt`, `open` serves it as it is.
fn nginx(dir: &std::path::Path, keyreg: std::net::SocketAddr) -> anyhow::Result<(Nginx, u16, u16)> {
    let port = || -> anyhow::Result<u16> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let (guarded, open) = (port()?, port()?);
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ok.txt"), "ok")?;
    let d = dir.display();
    let conf = format!(
        "daemon off; user root; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream keyreg {{ server {keyreg}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{guarded};
    location / {{ auth_request /_keyreg; root {d}; try_files /ok.txt =404; }}
    location = /_keyreg {{
      internal;
      proxy_pass http://keyreg/v1/authz;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_pass_request_body off;
      proxy_set_header Content-Length \"\";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
    }}
  }}
  server {{ listen 127.0.0.1:{open}; location / {{ root {d}; try_files /ok.txt =404; }} }}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| std::path::Path::new(p).exists());
    let child = Process::new(bin.context("nginx is needed: apt-get install nginx-light")?)
        .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf"), "-e", "stderr"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let nginx = Nginx(child);
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", open)).is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((nginx, guarded, open))
}

pub(crate) fn measure(size: Size) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("keyreg-bench-authz-{}", std::process::id()));
    let (registry, _) = Registry::init(&DataDir::new(&dir.join("data")), crate::config())?;
    let token = registry.format().generate();
    let key = registry.new_key(&token, "authz bench", "", &["billing:*"]);
    registry.execute_blocking(Actor::system("bench"), OrgId::system(), Command::CreateKey(key))?;
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let options = ServeOptions { access_flush: Duration::from_secs(1), ..ServeOptions::default() };
    runtime.spawn(serve(listener, registry.clone(), options, std::future::pending()));

    let secret = token.expose();
    let body = format!("{{\"key\":\"{secret}\",\"action\":\"billing:read\",\"resource\":\"invoices/7\"}}");
    let verify = Request::post(&body, None);
    let asked = Request {
        method: "GET",
        headers: vec![
            ("Authorization", format!("Bearer {secret}")),
            ("Keyreg-Action", "billing:read".into()),
            ("Keyreg-Resource", "invoices/7".into()),
        ],
        body: None,
    };
    let through = Request { method: "GET", headers: vec![("Authorization", format!("Bearer {secret}"))], body: None };
    let (_nginx, guarded, open) = nginx(&dir.join("nginx"), addr)?;
    let seconds = if size.runs > 3 { 10 } else { 4 };
    let runs = size.runs.min(3);
    let targets: [(&str, String, &Request); 4] = [
        ("POST /v1/verify", format!("http://{addr}/v1/verify"), &verify),
        ("GET /v1/authz", format!("http://{addr}/v1/authz"), &asked),
        ("nginx, auth_request", format!("http://127.0.0.1:{guarded}/invoices/7"), &through),
        ("nginx alone", format!("http://127.0.0.1:{open}/invoices/7"), &through),
    ];
    let mut results: Vec<Vec<(f64, f64, f64)>> = vec![vec![]; targets.len()];
    for run in 0..runs {
        for (i, (name, url, request)) in targets.iter().enumerate() {
            progress(&format!("authz: {name}, run {} of {runs}", run + 1));
            results[i].push(wrk(url, request, seconds, 32)?);
        }
    }
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    let medians: Vec<(f64, f64, f64)> = results
        .iter()
        .map(|r| {
            let rps = median(r.iter().map(|x| x.0).collect());
            r.iter().copied().find(|x| x.0 == rps).unwrap_or(r[0])
        })
        .collect();
    let shown = |(rps, p50, p99): (f64, f64, f64)| format!("{rps:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms");
    let (verify, authz, guarded, open) = (medians[0], medians[1], medians[2], medians[3]);
    Ok(vec![
        Row::new(
            "2c. forward auth on the registry: `GET /v1/authz`, the question in headers (wrk, 32 connections)",
            shown(authz),
            "≥ 0.95 × /v1/verify",
            format!(
                "`POST /v1/verify`, the same question in a body, runs interleaved: {}; ×{:.2}",
                shown(verify),
                authz.0 / verify.0
            ),
            Some(authz.0 / verify.0 >= 0.95),
        ),
        Row::new(
            "2c. nginx (1 worker) with `auth_request` to the registry's `/v1/authz`, serving a file (wrk, 32 connections)",
            shown(guarded),
            "-",
            format!(
                "the same nginx serving the same file without `auth_request`: {}; ×{:.2}",
                shown(open),
                guarded.0 / open.0
            ),
            None,
        ),
    ])
}
