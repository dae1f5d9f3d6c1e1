//! Prometheus metrics in text format: requests by route and status, latency
//! histograms by route, verify answers by code, and gauges the caller
//! supplies when rendering (log head, lags).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::verifier::Code;

const BUCKETS: [f64; 14] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    /// By path template, then method: one lock per request, held for a
    /// few adds, and no allocation once a route has been seen.
    routes: Mutex<BTreeMap<String, Vec<(String, RouteStats)>>>,
    verify: [AtomicU64; 8],
}

/// The methods counted under their own name; any other is counted as
/// `OTHER`, so a client inventing methods cannot add series without end.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

impl Metrics {
    /// Counts one request. `path` must be a route template (or a fixed
    /// word): never anything taken from the request as it came.
    pub fn observe(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        let method = METHODS.iter().find(|m| **m == method).copied().unwrap_or("OTHER");
        let secs = elapsed.as_secs_f64();
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let methods = match routes.get_mut(path) {
            Some(m) => m,
            None => routes.entry(path.to_owned()).or_default(),
        };
        let at = match methods.iter().position(|(m, _)| m == method) {
            Some(i) => i,
            None => {
                methods.push((method.to_owned(), RouteStats::default()));
                methods.len() - 1
            }
        };
        let stats = &mut methods[at].1;
        *stats.by_status.entry(status).or_default() += 1;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            stats.buckets[i] += 1;
        }
        stats.sum += secs;
        stats.count += 1;
    }

    pub fn verified(&self, code: Code) {
        self.verify[code as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with `gauges` (name, help, value) appended.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP keyreg_http_requests_total HTTP requests by route and status.\n# TYPE keyreg_http_requests_total counter\n");
        let all = || routes.iter().flat_map(|(path, methods)| methods.iter().map(move |(m, s)| (m, path, s)));
        for (method, path, stats) in all() {
            for (status, n) in &stats.by_status {
                let _ = writeln!(
                    out,
                    "keyreg_http_requests_total{{method=\"{method}\",route=\"{path}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP keyreg_http_request_duration_seconds HTTP request latency by route.\n# TYPE keyreg_http_request_duration_seconds histogram\n");
        for (method, path, stats) in all() {
            let labels = format!("method=\"{method}\",route=\"{path}\"");
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(stats.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "keyreg_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ =
                writeln!(out, "keyreg_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", stats.count);
            let _ = writeln!(out, "keyreg_http_request_duration_seconds_sum{{{labels}}} {}", stats.sum);
            let _ = writeln!(out, "keyreg_http_request_duration_seconds_count{{{labels}}} {}", stats.count);
        }
        drop(routes);
        out.push_str("# HELP keyreg_verify_total Verify answers by code.\n# TYPE keyreg_verify_total counter\n");
        for code in Code::ALL {
            let _ = writeln!(
                out,
                "keyreg_verify_total{{code=\"{}\"}} {}",
                code.as_str(),
                self.verify[code as usize].load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_series() {
        let m = Metrics::default();
        for i in 0..100 {
            m.observe(&format!("INVENTED{i}"), "/v1/keys", 405, Duration::from_millis(1));
        }
        m.observe("GET", "/v1/keys", 200, Duration::from_millis(1));
        let text = m.render(&[]);
        assert!(!text.contains("INVENTED"), "{text}");
        assert!(text.contains("method=\"OTHER\",route=\"/v1/keys\",status=\"405\"} 100"), "{text}");
        assert!(text.contains("method=\"GET\""), "{text}");
    }
}
