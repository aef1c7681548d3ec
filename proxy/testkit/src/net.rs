//! Loopback helpers: free ports, polling with a deadline, an HTTP client, and a
//! downstream that accepts connections and never answers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// A blocking HTTP client that returns every status as a response, not an error, and
/// trusts the CAs of every [`crate::tls::TestCa`] made so far.
pub fn http_agent() -> ureq::Agent {
    let roots: Vec<ureq::tls::Certificate<'static>> = crate::tls::trusted()
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
        .collect();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                .build(),
        )
        .build()
        .into()
}

/// A downstream that accepts TCP connections and never answers: requests to it hang
/// until the client gives up. Counts the connections it has taken.
#[derive(Debug)]
pub struct BlackHole {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    /// Starts listening on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    held.push(stream);
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Ok(Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request a [`Recorder`] saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request target (path and query).
    pub path: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Seen = parking_lot::Mutex<Vec<Recorded>>;

/// A plain-HTTP server that answers every request alike (an empty Prometheus success
/// unless told otherwise) and records each, to see what a client sends.
#[derive(Debug)]
pub struct Recorder {
    addr: SocketAddr,
    seen: Arc<Seen>,
    gate: Arc<Gate>,
}

/// Holds answers back until opened (open from the start unless made with
/// [`Recorder::held`]).
#[derive(Debug, Default)]
struct Gate {
    open: parking_lot::Mutex<bool>,
    opened: parking_lot::Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock();
        while !*open {
            self.opened.wait(&mut open);
        }
    }
}

impl Recorder {
    /// Starts listening on a free loopback port (the thread ends with the process).
    pub fn start() -> anyhow::Result<Self> {
        Self::answering("application/json", br#"{"status":"success","data":[]}"#)
    }

    /// Starts a recorder that answers `body` of `content_type` to every request.
    pub fn answering(content_type: &'static str, body: &'static [u8]) -> anyhow::Result<Self> {
        Self::start_gated(content_type, body, true)
    }

    /// Starts a recorder that records requests at once but answers none until
    /// [`Recorder::release`].
    pub fn held() -> anyhow::Result<Self> {
        Self::start_gated("application/json", br#"{"status":"success","data":[]}"#, false)
    }

    /// Answers every request held, and every later one at once.
    pub fn release(&self) {
        *self.gate.open.lock() = true;
        self.gate.opened.notify_all();
    }

    fn start_gated(content_type: &'static str, body: &'static [u8], open: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let gate = Arc::new(Gate {
            open: parking_lot::Mutex::new(open),
            opened: parking_lot::Condvar::new(),
        });
        let (log, held) = (seen.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, held) = (log.clone(), held.clone());
                std::thread::spawn(move || serve_recorded(stream, &log, &held, content_type, body));
            }
        });
        Ok(Self { addr, seen, gate })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().clone()
    }
}

fn serve_recorded(stream: TcpStream, log: &Seen, gate: &Gate, content_type: &str, answer: &[u8]) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        if (&mut reader).take(length).read_to_end(&mut body).is_err() {
            return;
        }
        log.lock().push(Recorded { path, headers, body });
        gate.wait();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(answer))
            .is_err()
        {
            return;
        }
    }
}

/// An HTTP proxy that serves `CONNECT host:port` by tunnelling bytes both ways, as a
/// forward proxy does, and counts the tunnels it opened.
#[derive(Debug)]
pub struct ConnectProxy {
    addr: SocketAddr,
    tunnels: Arc<AtomicUsize>,
}

impl ConnectProxy {
    /// Starts listening on a free loopback port (the thread ends with the process).
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let tunnels = Arc::new(AtomicUsize::new(0));
        let count = tunnels.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || tunnel(stream, &count));
            }
        });
        Ok(Self { addr, tunnels })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

fn tunnel(client: TcpStream, count: &AtomicUsize) {
    use std::io::{BufRead as _, BufReader, Write as _};
    let Ok(mut writer) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(client);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut words = request.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = writer.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = writer.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    count.fetch_add(1, Ordering::SeqCst);
    if writer
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .is_err()
    {
        return;
    }
    // Whatever the client sent after its headers is already in the reader's buffer.
    let buffered = reader.buffer().to_vec();
    let (Ok(mut to_upstream), Ok(mut from_upstream)) = (upstream.try_clone(), upstream.try_clone()) else {
        return;
    };
    if to_upstream.write_all(&buffered).is_err() {
        return;
    }
    let mut client_read = reader.into_inner();
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut to_upstream);
        let _ = to_upstream.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut from_upstream, &mut writer);
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
