//! A PostgreSQL cluster of one's own: created in a folder, listening on loopback at a
//! free port, and gone when dropped.
//!
//! Tests and benchmarks use [`Cluster::start`]: every run gets a fresh cluster, so runs
//! never see each other's data, and nothing is left behind even when a test panics
//! (the cluster stops in `Drop`). A developer runs one in the foreground with
//! `cargo xtask postgres` ([`Cluster::init`] and [`Cluster::foreground_command`]).
//!
//! What it takes care of, because each cost time when unknown:
//! - PostgreSQL refuses to run as root. When this process is root, every program runs
//!   as the `postgres` user that Debian's package creates, and the folder is handed to
//!   that user; when not, programs run as the current user.
//! - The server reaches its folder through every parent folder; when a parent cannot be
//!   entered by others (a checkout under a `0700` home directory) and the server must
//!   run as `postgres`, the cluster goes into a temporary folder instead.
//! - The Unix socket lives in the cluster's folder (Debian's `/var/run/postgresql` may
//!   be missing), and the server listens on 127.0.0.1 only, with trust authentication:
//!   acceptable for a cluster that lives for one run on loopback, never for a shipped
//!   configuration.
//! - `fsync` and `synchronous_commit` stay at PostgreSQL's defaults (on), so that
//!   figures measured on such a cluster are durable ones.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The database user every cluster is created with.
pub const SUPERUSER: &str = "postgres";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server programs in /usr/lib/postgresql/*/bin \
         (`cargo xtask setup` installs Debian's postgresql package)"
    )]
    NotInstalled,
    #[error("the `postgres` system user is missing (Debian's postgresql package creates it)")]
    NoPostgresUser,
    #[error("{action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {output}")]
    Program {
        program: String,
        status: String,
        output: String,
    },
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}

/// Where the server programs are: the newest `/usr/lib/postgresql/<version>/bin`.
pub fn server_bin_dir() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

/// Who runs the server programs.
#[derive(Debug, Clone)]
enum RunAs {
    CurrentUser,
    /// This process is root; programs run as `postgres` (uid, gid).
    Postgres(u32, u32),
}

impl RunAs {
    fn detect() -> Result<RunAs, ClusterError> {
        if !is_root() {
            return Ok(RunAs::CurrentUser);
        }
        let id = |flag: &str| -> Option<u32> {
            let output = Command::new("id").args([flag, SUPERUSER]).output().ok()?;
            if !output.status.success() {
                return None;
            }
            String::from_utf8_lossy(&output.stdout).trim().parse().ok()
        };
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) => Ok(RunAs::Postgres(uid, gid)),
            _ => Err(ClusterError::NoPostgresUser),
        }
    }

    fn command(&self, program: &Path) -> Command {
        match self {
            RunAs::CurrentUser => Command::new(program),
            RunAs::Postgres(..) => {
                let mut command = Command::new("runuser");
                command.args(["-u", SUPERUSER, "--"]).arg(program);
                command
            }
        }
    }

    /// Makes `path` (just created by this process) belong to the server's user.
    fn hand_over(&self, path: &Path) -> Result<(), ClusterError> {
        if let RunAs::Postgres(uid, gid) = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(io(format!("handing {} to postgres", path.display())))?;
        }
        Ok(())
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether another user can reach `path` through every parent folder.
fn reachable_by_others(path: &Path) -> bool {
    path.ancestors().skip(1).all(|folder| {
        std::fs::metadata(folder)
            .map(|metadata| metadata.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

/// A free TCP port on 127.0.0.1, as far as one can tell without keeping it.
fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

fn checked(program: &Path, command: &mut Command) -> Result<Output, ClusterError> {
    let output = command
        .output()
        .map_err(io(format!("running {}", program.display())))?;
    if output.status.success() {
        Ok(output)
    } else {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(ClusterError::Program {
            program: program.display().to_string(),
            status: output.status.to_string(),
            output: text.trim().to_owned(),
        })
    }
}

/// A cluster's folder and port. Started with [`Cluster::start`], it stops and its
/// folder is removed when dropped; made with [`Cluster::init`], it is only the folder.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    run_as: RunAs,
    /// The folder that holds `data/` (the cluster, its socket and its log).
    folder: PathBuf,
    port: u16,
    /// Whether this value started the server and so stops it and removes the folder.
    owned: bool,
}

impl Cluster {
    /// A fresh cluster under `parent` (a new folder in it), started and accepting
    /// connections. Falls back to the system's temporary folder when the server's user
    /// could not reach `parent`.
    pub fn start(parent: &Path) -> Result<Cluster, ClusterError> {
        let bin = server_bin_dir().ok_or(ClusterError::NotInstalled)?;
        let run_as = RunAs::detect()?;
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        let parent = parent
            .canonicalize()
            .map_err(io(format!("resolving {}", parent.display())))?;
        let parent = match run_as {
            RunAs::Postgres(..) if !reachable_by_others(&parent.join("x")) => std::env::temp_dir(),
            _ => parent,
        };
        let folder = unique_folder(&parent)?;
        let mut cluster = Cluster {
            bin,
            run_as,
            folder,
            port: free_port()?,
            owned: true,
        };
        cluster.initdb()?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// A cluster in `folder`, created there (by `initdb`) unless it already holds one,
    /// not started: see [`Cluster::foreground_command`]. Nothing is removed on drop.
    pub fn init(folder: &Path, port: u16) -> Result<Cluster, ClusterError> {
        let bin = server_bin_dir().ok_or(ClusterError::NotInstalled)?;
        let run_as = RunAs::detect()?;
        std::fs::create_dir_all(folder).map_err(io(format!("creating {}", folder.display())))?;
        let folder = folder
            .canonicalize()
            .map_err(io(format!("resolving {}", folder.display())))?;
        if matches!(run_as, RunAs::Postgres(..)) && !reachable_by_others(&folder) {
            return Err(ClusterError::Io {
                action: format!("using {}", folder.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "a parent folder cannot be entered by the postgres user (chmod o+x it)",
                ),
            });
        }
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("opening {}", folder.display())))?;
        let cluster = Cluster {
            bin,
            run_as,
            folder,
            port,
            owned: false,
        };
        if !cluster.data_dir().join("PG_VERSION").is_file() {
            cluster.initdb()?;
        }
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.folder.join("data")
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        std::fs::create_dir_all(&data).map_err(io(format!("creating {}", data.display())))?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("closing {}", data.display())))?;
        self.run_as.hand_over(&data)?;
        let initdb = self.bin.join("initdb");
        checked(
            &initdb,
            self.run_as
                .command(&initdb)
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
                // The cluster is thrown away: its creation need not survive a power cut.
                // The server itself keeps fsync on.
                .arg("--no-sync"),
        )?;
        Ok(())
    }

    /// The server's options: loopback only, at our port, the socket in the folder.
    fn server_options(&self) -> Vec<String> {
        vec![
            "-p".to_owned(),
            self.port.to_string(),
            "-k".to_owned(),
            self.data_dir().display().to_string(),
            "-c".to_owned(),
            "listen_addresses=127.0.0.1".to_owned(),
        ]
    }

    fn start_server(&mut self) -> Result<(), ClusterError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data_dir();
        checked(
            &pg_ctl,
            self.run_as
                .command(&pg_ctl)
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(self.server_options().join(" "))
                // The log must be writable by the server's user: inside its folder.
                .arg("-l")
                .arg(data.join("server.log"))
                .args(["-w", "-t", "60", "start"]),
        )?;
        Ok(())
    }

    /// The server in the foreground (for `cargo xtask postgres`): Ctrl-C in the
    /// terminal reaches it too, and it shuts down cleanly.
    pub fn foreground_command(&self) -> Command {
        let postgres = self.bin.join("postgres");
        let mut command = self.run_as.command(&postgres);
        command.arg("-D").arg(self.data_dir());
        command.args(self.server_options());
        command
    }

    /// Waits until the server accepts connections (for a server started with
    /// [`Cluster::foreground_command`]).
    pub fn wait_until_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let pg_isready = self.bin.join("pg_isready");
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self
                .run_as
                .command(&pg_isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map_err(io(format!("running {}", pg_isready.display())))?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Program {
                    program: pg_isready.display().to_string(),
                    status: ready.to_string(),
                    output: format!("the server did not accept connections within {timeout:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (the first line of `postmaster.pid`), while it runs: the
    /// parent of every backend, so a benchmark can add up the server's CPU time.
    pub fn server_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Creates a database (no error if it exists) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, ClusterError> {
        let output = self.psql(
            "postgres",
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = '{}'",
                name.replace('\'', "''")
            ),
        )?;
        if output.trim() != "1" {
            self.psql(
                "postgres",
                &format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")),
            )?;
        }
        Ok(self.url(name))
    }

    /// The URL of a database of this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one SQL command with `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, ClusterError> {
        let psql = self.bin.join("psql");
        let output = checked(
            &psql,
            self.run_as
                .command(&psql)
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", SUPERUSER, "-d", database, "-c", sql]),
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the server and removes its folder once this process has ended, however it
    /// ends: for a cluster kept in a `static` (shared by a test binary's tests), whose
    /// `Drop` never runs.
    pub fn stop_when_process_ends(&self) -> Result<(), ClusterError> {
        self.stop_after_process(std::process::id())
    }

    /// Stops the server and removes its folder once the process `pid` has ended. A
    /// small shell loop watches it; it ignores Ctrl-C and hang-ups, which end the
    /// process it watches, so that it outlives them to clean up.
    pub fn stop_after_process(&self, pid: u32) -> Result<(), ClusterError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match self.run_as {
            RunAs::CurrentUser => String::new(),
            RunAs::Postgres(..) => format!("runuser -u {SUPERUSER} -- "),
        };
        let script = format!(
            "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {stop}'{pg_ctl}' -D '{data}' -m immediate -w stop >/dev/null 2>&1; \
             rm -rf '{folder}'",
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            folder = self.folder.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(io("starting the cluster's watcher"))?;
        Ok(())
    }

    /// Turns TLS on with `certificate_pem` (the server's certificate chain) and
    /// `key_pem`, for tests of clients that use it: the files go into the cluster's
    /// folder, readable by the server's user only (PostgreSQL refuses a key others can
    /// read), and the server reloads its configuration. Clients without TLS keep
    /// connecting as before.
    pub fn enable_tls(&self, certificate_pem: &str, key_pem: &str) -> Result<(), ClusterError> {
        let data = self.data_dir();
        for (name, contents) in [("server.crt", certificate_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, contents).map_err(io(format!("writing {}", path.display())))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(format!("restricting {}", path.display())))?;
            self.run_as.hand_over(&path)?;
        }
        self.psql("postgres", "ALTER SYSTEM SET ssl = on")?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        // The reload is a signal: wait until a new connection sees it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.psql("postgres", "SHOW ssl")?.trim() != "on" {
            if Instant::now() > deadline {
                return Err(ClusterError::Program {
                    program: "pg_reload_conf".to_owned(),
                    status: "ssl stayed off".to_owned(),
                    output: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The server's log so far (for a test's failure message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("server.log")).unwrap_or_default()
    }
}

/// A new folder in `parent` that the server's user can enter.
fn unique_folder(parent: &Path) -> Result<PathBuf, ClusterError> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let folder = parent.join(format!("pgcluster-{}-{n}", std::process::id()));
        match std::fs::create_dir(&folder) {
            Ok(()) => {
                std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(format!("opening {}", folder.display())))?;
                return Ok(folder);
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io(format!("creating {}", folder.display()))(error)),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // Immediate: the data is thrown away, so there is nothing to flush.
        let pg_ctl = self.bin.join("pg_ctl");
        let _ = self
            .run_as
            .command(&pg_ctl)
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pgcluster-tests")
    }

    #[test]
    fn a_cluster_serves_sql_and_is_gone_when_dropped() {
        let cluster = Cluster::start(&target_dir()).unwrap();
        let url = cluster.create_database("footpath").unwrap();
        assert_eq!(
            url,
            format!("postgres://postgres@127.0.0.1:{}/footpath", cluster.port())
        );
        // Creating it again is harmless.
        cluster.create_database("footpath").unwrap();
        cluster
            .psql(
                "footpath",
                "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2), (40)",
            )
            .unwrap();
        assert_eq!(
            cluster
                .psql("footpath", "SELECT sum(n) FROM t")
                .unwrap()
                .trim(),
            "43"
        );
        // Durable settings, so that benchmarks on such a cluster measure durable writes.
        assert_eq!(cluster.psql("footpath", "SHOW fsync").unwrap().trim(), "on");
        assert_eq!(
            cluster
                .psql("footpath", "SHOW listen_addresses")
                .unwrap()
                .trim(),
            "127.0.0.1"
        );
        let folder = cluster.folder.clone();
        let port = cluster.port();
        assert!(folder.join("data/PG_VERSION").is_file());
        drop(cluster);
        assert!(!folder.exists(), "{} is left behind", folder.display());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the server still listens on {port}"
        );
    }

    #[test]
    fn a_watched_cluster_stops_once_its_process_has_ended() {
        let cluster = Cluster::start(&target_dir()).unwrap();
        let mut process = Command::new("sleep").arg("600").spawn().unwrap();
        cluster.stop_after_process(process.id()).unwrap();
        // Still serving while the process lives.
        cluster.psql("postgres", "SELECT 1").unwrap();
        process.kill().unwrap();
        process.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster.folder.exists()
            || std::net::TcpStream::connect(("127.0.0.1", cluster.port())).is_ok()
        {
            assert!(
                Instant::now() < deadline,
                "the cluster still runs after its process ended"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn two_clusters_never_share_a_folder_or_a_port() {
        let first = Cluster::start(&target_dir()).unwrap();
        let second = Cluster::start(&target_dir()).unwrap();
        assert_ne!(first.port(), second.port());
        assert_ne!(first.folder, second.folder);
        first
            .psql("postgres", "CREATE DATABASE only_in_first")
            .unwrap();
        let listed = second
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'only_in_first'",
            )
            .unwrap();
        assert_eq!(listed.trim(), "0");
    }

    #[test]
    fn sql_errors_are_reported_with_the_servers_message() {
        let cluster = Cluster::start(&target_dir()).unwrap();
        let error = cluster
            .psql("postgres", "SELECT * FROM no_such_table")
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("no_such_table"), "{text}");
        assert!(text.contains("does not exist"), "{text}");
    }
}
