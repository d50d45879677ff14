//! Real Redis servers for tests: each test starts its own `redis-server` on a free loopback port
//! (and, for cluster tests, a 3-master Redis Cluster), can kill it with SIGKILL, restart it and
//! pause it, and stops everything when the handle is dropped. No test relies on a server at a
//! fixed port, and nothing but 127.0.0.1 is ever contacted.
//!
//! Fault injection talks RESP over a plain `TcpStream` ([`RedisServer::command`]), so it works
//! whatever client the code under test uses.
//!
//! A server (or cluster) started with `start_persistent` writes every change to an append-only
//! file, synced before each reply, so [`RedisServer::restart`] after a kill finds its data again
//! (as a crashed production server with AOF would); [`RedisServer::restart_empty`] deletes the
//! data first, for a restart that loses everything whatever the configuration.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first `PING` (generous: a loaded CI machine).
const STARTUP: Duration = Duration::from_secs(20);

const INSTALL_HINT: &str = "redis-server was not found on PATH. The Redis tests start their own \
    servers: install Redis (Debian/Ubuntu: `apt-get install -y redis-server`, which also brings \
    redis-cli), or run ./scripts/test.sh, which installs it when missing.";

/// Why a harness operation failed.
#[derive(Debug)]
pub enum HarnessError {
    /// `redis-server` or `redis-cli` is not installed.
    NotInstalled(&'static str),
    /// A process or socket operation failed.
    Io(std::io::Error),
    /// The server did not become ready, or answered something unexpected.
    Unexpected(String),
}

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HarnessError::NotInstalled(hint) => f.write_str(hint),
            HarnessError::Io(error) => write!(f, "redis harness: {error}"),
            HarnessError::Unexpected(what) => write!(f, "redis harness: {what}"),
        }
    }
}

impl std::error::Error for HarnessError {}

impl From<std::io::Error> for HarnessError {
    fn from(error: std::io::Error) -> Self {
        HarnessError::Io(error)
    }
}

/// One RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other simple strings.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$n` bulk strings; `None` for a nil reply.
    Bulk(Option<Vec<u8>>),
    /// `*n` arrays; `None` for a nil array.
    Array(Option<Vec<Reply>>),
}

fn unique_dir(label: &str) -> std::io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cachemere-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A loopback port that is free now, and (for cluster nodes) whose bus port `+10000` is too.
fn free_port(with_bus_port: bool) -> std::io::Result<u16> {
    for _ in 0..200 {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        if !with_bus_port {
            return Ok(port);
        }
        if let Some(bus) = port.checked_add(10_000)
            && TcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no free loopback port pair found"))
}

fn require(binary: &str) -> Result<(), HarnessError> {
    match Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        _ => Err(HarnessError::NotInstalled(INSTALL_HINT)),
    }
}

/// What `start_persistent` adds: an append-only file, synced before every reply (later
/// arguments override the `--appendonly no` every server is started with).
const PERSISTENCE: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

/// The files and directories a server's data persists in (`appendonlydir` since Redis 7, a
/// single `appendonly.aof` before), under its `--dir`. A cluster node's `nodes.conf` is not data.
const DATA_FILES: [&str; 3] = ["appendonlydir", "appendonly.aof", "dump.rdb"];

/// A `redis-server` child process on a free loopback port, killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server (no persistence) and waits until it answers `PING`.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(Vec::new(), false)
    }

    /// Starts a standalone server that persists every write (AOF, `appendfsync always`), so
    /// that [`restart`](Self::restart) after [`kill`](Self::kill) finds the data again.
    pub fn start_persistent() -> Result<Self, HarnessError> {
        Self::start_with(PERSISTENCE.map(str::to_owned).to_vec(), false)
    }

    /// Starts a standalone server that persists only when told (`SAVE`, an RDB snapshot), so
    /// that a [`restart`](Self::restart) after [`kill`](Self::kill) comes back with the last
    /// snapshot: without the writes the server acknowledged after it, as a real crash loses
    /// them under `save` or `appendfsync everysec`.
    pub fn start_snapshotting() -> Result<Self, HarnessError> {
        Self::start_with(vec!["--save".to_owned(), String::new()], false)
    }

    fn start_with(extra_args: Vec<String>, cluster: bool) -> Result<Self, HarnessError> {
        require("redis-server")?;
        let mut server = RedisServer {
            port: free_port(cluster)?,
            dir: unique_dir("redis")?,
            extra_args,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Reply::Status(pong)) = self.command(&["PING"])
                && pong == "PONG"
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(HarnessError::Unexpected(format!(
                    "redis-server on port {} exited at startup: {status}",
                    self.port
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Unexpected(format!(
                    "redis-server on port {} did not answer PING within {STARTUP:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command over a fresh connection and reads the reply.
    pub fn command(&self, args: &[&str]) -> Result<Reply, HarnessError> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command_bytes(&bytes)
    }

    /// As [`command`](Self::command), with binary arguments (to write garbage values).
    pub fn command_bytes(&self, args: &[&[u8]]) -> Result<Reply, HarnessError> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        (&stream).write_all(&request)?;
        read_reply(&mut BufReader::new(stream))
    }

    /// Kills the server with SIGKILL, as a crash would (the port stays reserved for a restart).
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port, directory and arguments (killing it first if
    /// it runs): empty, unless it was started with persistence, in which case it reloads what
    /// it had written (everything it acknowledged, with `start_persistent`).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill()?;
        self.spawn()
    }

    /// As [`restart`](Self::restart), but deletes the persisted data first, so the server
    /// comes back empty whatever its persistence (a cluster node keeps its `nodes.conf`: its
    /// identity and slots).
    pub fn restart_empty(&mut self) -> Result<(), HarnessError> {
        self.kill()?;
        for name in DATA_FILES {
            let path = self.dir.join(name);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error.into());
                }
                _ => {}
            }
        }
        self.spawn()
    }

    /// Whether the process runs (it has not been killed, or has been restarted since).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `CLIENT PAUSE <ms> ALL`: the server stops answering clients for that long.
    pub fn pause(&self, duration: Duration) -> Result<(), HarnessError> {
        let ms = duration.as_millis().to_string();
        match self.command(&["CLIENT", "PAUSE", &ms, "ALL"])? {
            Reply::Status(ok) if ok == "OK" => Ok(()),
            other => Err(HarnessError::Unexpected(format!(
                "CLIENT PAUSE answered {other:?}"
            ))),
        }
    }

    /// The data directory (cluster config files live here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_line(reader: &mut impl BufRead) -> Result<String, HarnessError> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(HarnessError::Unexpected("connection closed".into()));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn read_reply(reader: &mut impl BufRead) -> Result<Reply, HarnessError> {
    let line = read_line(reader)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| HarnessError::Unexpected(format!("bad RESP length in {line:?}")))
    };
    match kind {
        "+" => Ok(Reply::Status(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => Ok(Reply::Integer(number()?)),
        "$" => {
            let Ok(length) = usize::try_from(number()?) else {
                return Ok(Reply::Bulk(None));
            };
            let mut data = vec![0; length + 2];
            reader.read_exact(&mut data)?;
            data.truncate(length);
            Ok(Reply::Bulk(Some(data)))
        }
        "*" => {
            let Ok(count) = usize::try_from(number()?) else {
                return Ok(Reply::Array(None));
            };
            let items = (0..count)
                .map(|_| read_reply(reader))
                .collect::<Result<_, _>>()?;
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(HarnessError::Unexpected(format!(
            "not a RESP reply: {line:?}"
        ))),
    }
}

/// A 3-master Redis Cluster on loopback (no replicas), created with `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them, and waits until every node reports
    /// `cluster_state:ok`.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(false)
    }

    /// As [`start`](Self::start), with every node persisting as
    /// [`RedisServer::start_persistent`] does: a node killed and restarted (see
    /// [`nodes_mut`](Self::nodes_mut)) comes back with its data, slots and identity.
    pub fn start_persistent() -> Result<Self, HarnessError> {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Result<Self, HarnessError> {
        require("redis-cli")?;
        let persistence: &[&str] = if persistent { &PERSISTENCE } else { &[] };
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // A relative config file lands in the node's own data directory.
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]
            .into_iter()
            .chain(["--cluster-node-timeout", "5000"])
            .chain(persistence.iter().copied())
            .map(str::to_owned)
            .collect();
            nodes.push(RedisServer::start_with(args, true)?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(HarnessError::Unexpected(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// Waits until every node reports `cluster_state:ok` (after a node was restarted, say).
    pub fn wait_ok(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + STARTUP;
        loop {
            let all_ok = self.nodes.iter().all(|node| {
                matches!(
                    node.command(&["CLUSTER", "INFO"]),
                    Ok(Reply::Bulk(Some(info))) if String::from_utf8_lossy(&info).contains("cluster_state:ok")
                )
            });
            if all_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Unexpected(format!(
                    "cluster did not reach cluster_state:ok within {STARTUP:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes, for fault injection.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to kill and restart one. A node restarted within the node timeout (5 s)
    /// rejoins with its slots before the others mark it failed; a node that is down owns its
    /// slots still, and operations on them fail until it is back.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// Processes (and their data directories) that live until the test process exits.
static SHARED: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

extern "C" fn stop_shared_at_exit() {
    let shared = std::mem::take(&mut *SHARED.lock().unwrap_or_else(PoisonError::into_inner));
    for (pid, dir) in shared {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: `kill` has no memory-safety preconditions; the pid is our own child's.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn stop_at_exit(server: &RedisServer) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` without arguments, as `atexit` requires.
        unsafe { libc::atexit(stop_shared_at_exit) };
    });
    if let Some(child) = &server.child {
        SHARED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((child.id(), server.dir.clone()));
    }
}

impl RedisServer {
    /// Keeps the server for the rest of the test process (for fixtures shared by many tests):
    /// it is killed, and its directory removed, when the process exits.
    pub fn shared_until_exit(self) -> &'static RedisServer {
        stop_at_exit(&self);
        Box::leak(Box::new(self))
    }
}

impl RedisCluster {
    /// As [`RedisServer::shared_until_exit`], for every node.
    pub fn shared_until_exit(self) -> &'static RedisCluster {
        self.nodes.iter().for_each(stop_at_exit);
        Box::leak(Box::new(self))
    }
}
