//! obleth-loadgen: a minimal HTTP/1.1 load generator for the gateway-overhead benchmark.
//!
//! Blocking sockets, one OS thread per connection, keep-alive, TCP_NODELAY, a
//! hand-written response parser (Content-Length and chunked). No dependencies, so the
//! client's own overhead is small and identical for both targets (mock directly, and
//! the mock through obleth).
//!
//! Modes (every option is `--name value`):
//!
//! * `open`   — open loop at a fixed rate. Request `i` is *scheduled* at
//!   `start + i / rate`; a free connection thread claims the next slot, sleeps until its
//!   scheduled time and sends it. Latency is measured from the scheduled time, so when
//!   the server (or the client) falls behind, the waiting is counted: the percentiles
//!   are corrected for coordinated omission. The uncorrected service time (from the
//!   actual send) is reported alongside.
//!   Options: --addr --path --body-file [--bearer] --rate --duration --warmup [--conns 64]
//! * `closed` — closed loop: `--conns` threads each send back to back.
//!   Options: --addr --path --body-file [--bearer] --duration --warmup [--conns 1]
//! * `ttft`   — sequential streamed requests on one connection: time from the send to
//!   the first non-empty chunk of the SSE body (the first `data:` event), and to the end.
//!   Options: --addr --path --body-file [--bearer] --requests [--warmup 200]
//!
//! * `hiccup` — the machine's noise floor: `--threads` threads spin reading the clock
//!   for `--duration` seconds and report how often and how long they could not run
//!   (gaps between consecutive clock reads: preemption by other threads, interrupts,
//!   or the hypervisor descheduling the vCPU). No network; needs no --addr.
//!   Options: [--duration 3] [--threads 2]
//!
//! Output: one JSON object on stdout. Times are in microseconds. With
//! `--samples-out FILE` (open, ttft), the raw samples are also written, one
//! `latency_ns service_ns` (open) or `ttft_ns total_ns` (ttft) pair per line.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() < 2 {
        eprintln!("usage: obleth-loadgen open|closed|ttft --addr HOST:PORT --path /v1/... --body-file F [options]");
        std::process::exit(2);
    }
    let mode = argv[1].clone();
    let mut opts: HashMap<String, String> = HashMap::new();
    let mut it = argv[2..].iter();
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else {
            die(&format!("unexpected argument {k}"));
        };
        let v = it.next().unwrap_or_else(|| die(&format!("--{name} needs a value")));
        opts.insert(name.to_owned(), v.clone());
    }
    // Timer slack is inherited by threads created afterwards: 1 ns instead of the
    // default 50 µs makes the open-loop pacing sleeps wake on time.
    let _ = std::fs::write("/proc/self/timerslack_ns", "1");

    if mode == "hiccup" {
        let get = |k: &str, d: f64| opts.get(k).map_or(d, |v| v.parse().unwrap_or_else(|_| die("bad number")));
        println!("{}", hiccup(get("duration", 3.0), get("threads", 2.0) as usize));
        return;
    }
    let addr = opts.get("addr").cloned().unwrap_or_else(|| die("--addr is required"));
    let path = opts.get("path").cloned().unwrap_or_else(|| "/v1/chat/completions".to_owned());
    let body_file = opts.get("body-file").unwrap_or_else(|| die("--body-file is required"));
    let body = std::fs::read(body_file).unwrap_or_else(|e| die(&format!("reading {body_file}: {e}")));
    let bearer = opts.get("bearer").cloned();
    let request = Arc::new(build_request(&addr, &path, &body, bearer.as_deref()));
    let num = |name: &str, default: Option<f64>| -> f64 {
        match opts.get(name) {
            Some(v) => v.parse().unwrap_or_else(|_| die(&format!("--{name}: not a number: {v}"))),
            None => default.unwrap_or_else(|| die(&format!("--{name} is required"))),
        }
    };
    let out = match mode.as_str() {
        "open" => open_loop(
            &addr,
            request,
            num("rate", None),
            num("duration", None),
            num("warmup", Some(2.0)),
            num("conns", Some(64.0)) as usize,
            opts.get("samples-out").map(String::as_str),
        ),
        "closed" => closed_loop(
            &addr,
            request,
            num("duration", None),
            num("warmup", Some(2.0)),
            num("conns", Some(1.0)) as usize,
        ),
        "ttft" => ttft(
            &addr,
            &request,
            num("requests", None) as usize,
            num("warmup", Some(200.0)) as usize,
            opts.get("samples-out").map(String::as_str),
        ),
        other => die(&format!("unknown mode {other}")),
    };
    println!("{out}");
}

fn die(msg: &str) -> ! {
    eprintln!("obleth-loadgen: {msg}");
    std::process::exit(2);
}

fn build_request(addr: &str, path: &str, body: &[u8], bearer: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: */*\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(b) = bearer {
        r.push_str(&format!("Authorization: Bearer {b}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

// === HTTP/1.1 client connection ===

struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    pending: Vec<u8>,
    scratch: Vec<u8>,
}

struct Resp {
    status: u16,
    /// When the first non-empty body bytes arrived (for chunked bodies: the first
    /// non-empty chunk payload, i.e. the first SSE event).
    first_data: Option<Instant>,
}

enum Chunked {
    Size,
    Data(usize),
    DataCrlf,
    Trailer,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    fn new(addr: &str) -> Conn {
        Conn { addr: addr.to_owned(), stream: None, pending: Vec::with_capacity(64 * 1024), scratch: vec![0; 64 * 1024] }
    }

    fn connect(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.stream = Some(s);
            self.pending.clear();
        }
        Ok(())
    }

    /// Reads once more; returns the time the bytes arrived.
    fn read_more(&mut self) -> io::Result<Instant> {
        let s = self.stream.as_mut().ok_or_else(|| io::Error::other("not connected"))?;
        let n = s.read(&mut self.scratch)?;
        let at = Instant::now();
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server"));
        }
        self.pending.extend_from_slice(&self.scratch[..n]);
        Ok(at)
    }

    /// Sends `req` and reads the whole response. On error the connection is dropped
    /// (the next call reconnects).
    fn exchange(&mut self, req: &[u8]) -> io::Result<Resp> {
        let r = self.exchange_inner(req);
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    fn exchange_inner(&mut self, req: &[u8]) -> io::Result<Resp> {
        self.connect()?;
        self.stream.as_mut().expect("connected").write_all(req)?;
        let mut last_read = Instant::now();
        let head_end = loop {
            if let Some(i) = find(&self.pending, b"\r\n\r\n") {
                break i + 4;
            }
            last_read = self.read_more()?;
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).to_ascii_lowercase();
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim();
                match k.trim() {
                    "content-length" => content_length = v.parse().ok(),
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    "connection" => close = v.contains("close"),
                    _ => {}
                }
            }
        }
        let mut first_data = None;
        let mut p = head_end;
        if chunked {
            let mut state = Chunked::Size;
            loop {
                let progressed = match state {
                    Chunked::Size => match find(&self.pending[p..], b"\r\n") {
                        Some(i) => {
                            let line = std::str::from_utf8(&self.pending[p..p + i]).unwrap_or("");
                            let hex = line.split(';').next().unwrap_or("").trim();
                            let size = usize::from_str_radix(hex, 16)
                                .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
                            p += i + 2;
                            state = if size == 0 { Chunked::Trailer } else { Chunked::Data(size) };
                            true
                        }
                        None => false,
                    },
                    Chunked::Data(rem) => {
                        let take = rem.min(self.pending.len() - p);
                        if take > 0 {
                            if first_data.is_none() {
                                first_data = Some(last_read);
                            }
                            p += take;
                            state = if rem == take { Chunked::DataCrlf } else { Chunked::Data(rem - take) };
                            true
                        } else {
                            false
                        }
                    }
                    Chunked::DataCrlf => {
                        if self.pending.len() - p >= 2 {
                            p += 2;
                            state = Chunked::Size;
                            true
                        } else {
                            false
                        }
                    }
                    Chunked::Trailer => match find(&self.pending[p..], b"\r\n") {
                        Some(0) => {
                            p += 2;
                            break;
                        }
                        Some(i) => {
                            p += i + 2;
                            true
                        }
                        None => false,
                    },
                };
                if !progressed {
                    last_read = self.read_more()?;
                }
            }
        } else if let Some(len) = content_length {
            while self.pending.len() - head_end < len {
                last_read = self.read_more()?;
            }
            if len > 0 {
                first_data = Some(last_read);
            }
            p = head_end + len;
        } else {
            // Delimited by the end of the connection.
            loop {
                if self.pending.len() > p && first_data.is_none() {
                    first_data = Some(last_read);
                }
                match self.read_more() {
                    Ok(at) => last_read = at,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            p = self.pending.len();
            close = true;
        }
        self.pending.drain(..p);
        if close {
            self.stream = None;
        }
        Ok(Resp { status, first_data })
    }
}

// === statistics ===

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// Percentiles (µs) of nanosecond samples, as a JSON object.
fn summary(mut ns: Vec<u64>) -> String {
    ns.sort_unstable();
    let mean = if ns.is_empty() { f64::NAN } else { ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0 };
    format!(
        "{{\"n\": {}, \"mean\": {:.1}, \"p50\": {:.1}, \"p90\": {:.1}, \"p99\": {:.1}, \"p999\": {:.1}, \"max\": {:.1}}}",
        ns.len(),
        mean,
        pct(&ns, 50.0),
        pct(&ns, 90.0),
        pct(&ns, 99.0),
        pct(&ns, 99.9),
        pct(&ns, 100.0)
    )
}

/// Writes raw samples, one `a b` pair of nanoseconds per line, for merging across runs.
fn write_samples(path: Option<&str>, a: &[u64], b: &[u64]) {
    let Some(path) = path else { return };
    let mut out = String::with_capacity(a.len() * 20);
    for (x, y) in a.iter().zip(b) {
        out.push_str(&format!("{x} {y}\n"));
    }
    if let Err(e) = std::fs::write(path, out) {
        die(&format!("writing {path}: {e}"));
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

// === modes ===

fn open_loop(
    addr: &str,
    request: Arc<Vec<u8>>,
    rate: f64,
    duration: f64,
    warmup: f64,
    conns: usize,
    samples_out: Option<&str>,
) -> String {
    let interval = 1e9 / rate;
    let total_slots = ((warmup + duration) * rate).round() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let reported = Arc::new(AtomicBool::new(false));
    // Leave time for every thread to connect before the first slot.
    let start = Instant::now() + Duration::from_millis(300);
    let measure_from = start + Duration::from_secs_f64(warmup);
    let mut handles = Vec::new();
    for _ in 0..conns {
        let (addr, request, next, errors, reported) =
            (addr.to_owned(), request.clone(), next.clone(), errors.clone(), reported.clone());
        handles.push(std::thread::spawn(move || {
            let mut conn = Conn::new(&addr);
            let _ = conn.connect();
            let mut corrected = Vec::new();
            let mut service = Vec::new();
            let mut lateness = Vec::new();
            let mut last_done = start;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total_slots {
                    break;
                }
                let scheduled = start + Duration::from_nanos((i as f64 * interval) as u64);
                let now = Instant::now();
                if scheduled > now {
                    std::thread::sleep(scheduled - now);
                }
                let sent = Instant::now();
                let ok = match conn.exchange(&request) {
                    Ok(r) if r.status == 200 => true,
                    Ok(r) => {
                        if !reported.swap(true, Ordering::Relaxed) {
                            eprintln!("obleth-loadgen: HTTP status {}", r.status);
                        }
                        false
                    }
                    Err(e) => {
                        if !reported.swap(true, Ordering::Relaxed) {
                            eprintln!("obleth-loadgen: {e}");
                        }
                        false
                    }
                };
                let done = Instant::now();
                if scheduled >= measure_from {
                    if ok {
                        corrected.push(nanos(done - scheduled));
                        service.push(nanos(done - sent));
                        lateness.push(nanos(sent.saturating_duration_since(scheduled)));
                        last_done = last_done.max(done);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (corrected, service, lateness, last_done)
        }));
    }
    let (mut corrected, mut service, mut lateness, mut last_done) = (Vec::new(), Vec::new(), Vec::new(), start);
    for h in handles {
        let (c, s, l, d) = h.join().expect("thread");
        corrected.extend(c);
        service.extend(s);
        lateness.extend(l);
        last_done = last_done.max(d);
    }
    write_samples(samples_out, &corrected, &service);
    let n = corrected.len();
    let window = last_done.saturating_duration_since(measure_from).as_secs_f64().max(duration);
    format!(
        "{{\"mode\": \"open\", \"rate\": {rate}, \"duration_s\": {duration}, \"conns\": {conns}, \"requests\": {n}, \"errors\": {}, \"achieved_rps\": {:.1}, \"latency_us\": {}, \"service_us\": {}, \"send_lateness_us\": {}}}",
        errors.load(Ordering::Relaxed),
        n as f64 / window,
        summary(corrected),
        summary(service),
        summary(lateness)
    )
}

fn closed_loop(addr: &str, request: Arc<Vec<u8>>, duration: f64, warmup: f64, conns: usize) -> String {
    let start = Instant::now() + Duration::from_millis(300);
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(duration);
    let errors = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..conns {
        let (addr, request, errors) = (addr.to_owned(), request.clone(), errors.clone());
        handles.push(std::thread::spawn(move || {
            let mut conn = Conn::new(&addr);
            let _ = conn.connect();
            let now = Instant::now();
            if start > now {
                std::thread::sleep(start - now);
            }
            let mut lat = Vec::new();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = matches!(conn.exchange(&request), Ok(r) if r.status == 200);
                let done = Instant::now();
                if sent >= measure_from {
                    if ok {
                        lat.push(nanos(done - sent));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().expect("thread"));
    }
    let n = lat.len();
    format!(
        "{{\"mode\": \"closed\", \"duration_s\": {duration}, \"conns\": {conns}, \"requests\": {n}, \"errors\": {}, \"rps\": {:.1}, \"latency_us\": {}}}",
        errors.load(Ordering::Relaxed),
        n as f64 / duration,
        summary(lat)
    )
}

fn ttft(addr: &str, request: &[u8], requests: usize, warmup: usize, samples_out: Option<&str>) -> String {
    let mut conn = Conn::new(addr);
    let mut first = Vec::with_capacity(requests);
    let mut total = Vec::with_capacity(requests);
    let mut errors = 0u64;
    for i in 0..warmup + requests {
        let sent = Instant::now();
        let r = conn.exchange(request);
        let done = Instant::now();
        match r {
            Ok(Resp { status: 200, first_data: Some(f) }) => {
                if i >= warmup {
                    first.push(nanos(f - sent));
                    total.push(nanos(done - sent));
                }
            }
            other => {
                if errors == 0 {
                    match other {
                        Ok(r) => eprintln!("obleth-loadgen: HTTP status {} (or empty body)", r.status),
                        Err(e) => eprintln!("obleth-loadgen: {e}"),
                    }
                }
                if i >= warmup {
                    errors += 1;
                }
            }
        }
    }
    write_samples(samples_out, &first, &total);
    format!(
        "{{\"mode\": \"ttft\", \"requests\": {}, \"errors\": {errors}, \"ttft_us\": {}, \"total_us\": {}}}",
        first.len(),
        summary(first),
        summary(total)
    )
}

fn hiccup(duration: f64, threads: usize) -> String {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let end = start + Duration::from_secs_f64(duration);
                let mut last = start;
                let mut gaps = Vec::new();
                loop {
                    let now = Instant::now();
                    let gap = now - last;
                    if gap >= Duration::from_micros(10) {
                        gaps.push(nanos(gap));
                    }
                    last = now;
                    if now >= end {
                        break;
                    }
                }
                gaps
            })
        })
        .collect();
    let mut gaps: Vec<u64> = Vec::new();
    for h in handles {
        gaps.extend(h.join().expect("thread"));
    }
    let total = duration * threads as f64;
    let over = |us: u64| gaps.iter().filter(|&&g| g >= us * 1000).count() as f64 / total;
    let lost: u64 = gaps.iter().sum();
    format!(
        "{{\"mode\": \"hiccup\", \"threads\": {threads}, \"duration_s\": {duration}, \"lost_pct\": {:.2}, \"per_s_over_50us\": {:.1}, \"per_s_over_200us\": {:.1}, \"per_s_over_1ms\": {:.2}, \"gaps_us\": {}}}",
        100.0 * lost as f64 / 1e9 / total,
        over(50),
        over(200),
        over(1000),
        summary(gaps)
    )
}
