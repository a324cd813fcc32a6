//! The HTTP endpoint: `GET /metrics` (the registry's text exposition), `GET /healthz` (the
//! daemon's event loop answers) and `GET /readyz` (what the readiness check says). A minimal
//! HTTP/1.1 server of its own: one request per connection, at most [`MAX_REQUEST`] bytes of
//! request head read within [`READ_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once; anything
//! else is refused with a status, never parsed further.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::metrics::Registry;

/// The request line and headers of one request; a scraper sends a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// A client that has not sent its whole request head by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// Whether the daemon is ready: `Err` says why not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoint {
    /// The metrics of `/metrics`.
    pub registry: Registry,
    /// The check behind `/readyz`.
    pub ready: Readiness,
}

/// Binds the endpoint's listener (a start-up error names the address).
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

impl Endpoint {
    /// Serves connections on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.answer(stream).await;
                drop(permit);
            });
        }
    }

    async fn answer(&self, mut stream: TcpStream) {
        let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
            Ok(Ok(head)) => self.respond(&head),
            Ok(Err(status)) => Response::text(status, status_reason(status)),
            Err(_) => Response::text(408, "request head not received in time"),
        };
        let _ = stream.write_all(&response.bytes()).await;
        let _ = stream.shutdown().await;
    }

    /// The response to a request whose head is `head`.
    fn respond(&self, head: &[u8]) -> Response {
        let Some((method, target)) = request_line(head) else {
            return Response::text(400, "malformed request line");
        };
        let path = target.split('?').next().unwrap_or_default();
        let head_only = method == "HEAD";
        if method != "GET" && !head_only {
            return Response::text(405, "only GET and HEAD");
        }
        let mut response = match path {
            "/metrics" => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: self.registry.render(),
            },
            "/healthz" => Response::text(200, "ok"),
            "/readyz" => match (self.ready)() {
                Ok(()) => Response::text(200, "ready"),
                Err(why) => Response::text(503, &format!("not ready: {why}")),
            },
            _ => Response::text(404, "not found: try /metrics, /healthz or /readyz"),
        };
        if head_only {
            response.body.clear();
        }
        response
    }
}

/// Reads until the blank line that ends the request head; a status when the client breaks
/// off or sends more than [`MAX_REQUEST`] bytes.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, u16> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > MAX_REQUEST {
            return Err(431);
        }
    }
}

/// The method and target of the request line (`GET /metrics HTTP/1.1`).
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && target.starts_with('/') && version.starts_with("HTTP/1."))
        .then_some((method, target))
}

fn status_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            status_reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operate::metrics::{Collect, Counter, Exposition, Kind};

    struct One(Counter);

    impl Collect for One {
        fn collect(&self, out: &mut Exposition) {
            out.family("things_total", Kind::Counter, "Things.");
            out.sample("things_total", &[], self.0.get());
        }
    }

    /// Sends `request` to a live endpoint on a loopback port and returns the whole answer.
    async fn ask(endpoint: Endpoint, request: &[u8]) -> String {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(endpoint.serve(listener));
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(request).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        server.abort();
        answer
    }

    fn endpoint(ready: Result<(), String>) -> Endpoint {
        let registry = Registry::default();
        let one = Arc::new(One(Counter::default()));
        one.0.add(2);
        registry.register(one);
        Endpoint {
            registry,
            ready: Arc::new(move || ready.clone()),
        }
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let ok = || endpoint(Ok(()));
        let metrics = ask(ok(), b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(metrics.ends_with("\r\n\r\n# HELP agent_sensor_things_total Things.\n# TYPE agent_sensor_things_total counter\nagent_sensor_things_total 2\n"), "{metrics}");
        let health = ask(ok(), b"GET /healthz HTTP/1.0\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("ok\n"));
        let ready = ask(ok(), b"GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(ready.starts_with("HTTP/1.1 200 OK\r\n"), "{ready}");
        let not_ready = ask(
            endpoint(Err("the output is full".into())),
            b"GET /readyz HTTP/1.1\r\n\r\n",
        )
        .await;
        assert!(
            not_ready.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && not_ready.ends_with("not ready: the output is full\n"),
            "{not_ready}"
        );
        let head = ask(ok(), b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            head.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn refuses_what_it_does_not_serve() {
        let ok = || endpoint(Ok(()));
        let status = |answer: String| answer.split(' ').nth(1).unwrap().to_owned();
        assert_eq!(
            status(ask(ok(), b"POST /metrics HTTP/1.1\r\n\r\n").await),
            "405"
        );
        assert_eq!(
            status(ask(ok(), b"GET /etc/passwd HTTP/1.1\r\n\r\n").await),
            "404"
        );
        assert_eq!(
            status(ask(ok(), b"GET metrics HTTP/1.1\r\n\r\n").await),
            "400"
        );
        assert_eq!(status(ask(ok(), b"\xff\xfe\r\n\r\n").await), "400");
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        // One byte over: the server reads it all, so closing does not reset the connection.
        huge.resize(MAX_REQUEST + 1, b'a');
        assert_eq!(status(ask(ok(), &huge).await), "431");
    }
}
