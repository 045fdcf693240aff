//! `qlab engine serve`: the engine as a daemon with its HTTP API, syslog listeners and pollers,
//! wired to the real adapters.
//!
//! [`Daemon::start`] loads the topology, checks the config against it, builds one wire client
//! per device, binds the listeners, opens the journal and the [`Engine`] (which resumes
//! unfinished operations, R16) and starts serving; [`serve`] adds the ready line and stops on
//! Ctrl-C or SIGTERM. Stopping is a crash as far as the engine is concerned: the journal is
//! what survives (R7, R16), so no drain is needed beyond letting API replies go out.
//!
//! When the engine halts (a journal failure, or a panic in one of its tasks), [`serve`] keeps
//! answering for [`HALT_LINGER`] (`/health` 503 with the reason) and then returns
//! [`DaemonError::Halted`]: `qlab engine serve` exits 1, and a service manager's restart
//! resumes from the journal (R16). `docs/intake.md` describes the daemon under load: the
//! syslog intake queue, the connection caps and timeouts, and the logs.

mod api;
pub mod auth;
mod build;
pub mod client;
pub mod config;
mod epo;
mod listener;
pub mod log;
pub mod metrics;
pub mod policy;
mod routes;
mod syslog_in;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::{Engine, EngineError, EngineObserver, EngineOptions, Journal, JournalError};
use crate::model::load::{key_path_string, locate, KeySeg};
use crate::model::{load_site, Site, TopologyError};
use config::EngineConfig;
use metrics::Metrics;

pub use listener::{
    HEADER_READ_TIMEOUT, KEEP_ALIVE_IDLE, MAX_API_CONNECTIONS, MAX_API_CONNECTIONS_PER_SOURCE,
};
pub use routes::MAX_PAGE;
pub use syslog_in::{
    FIRST_BYTE_TIMEOUT as SYSLOG_FIRST_BYTE_TIMEOUT, FRAME_TIMEOUT as SYSLOG_FRAME_TIMEOUT,
    IDLE_TIMEOUT as SYSLOG_IDLE_TIMEOUT, MAX_TCP_CONNECTIONS, MAX_TCP_CONNECTIONS_PER_SOURCE,
};

/// Environment variable whose value, when set, is the API token instead of the config's.
pub const TOKEN_ENV: &str = "QLAB_TOKEN";

/// Test hook, undocumented on purpose: when set, [`serve`] makes an engine task panic right
/// after the start, so a test of the binary sees a panic halt the engine and the exit code.
#[doc(hidden)]
pub const TEST_PANIC_ENV: &str = "QLAB_TEST_PANIC_ENGINE_TASK";

/// How long [`Daemon::shutdown`] lets in-flight API requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long [`serve`] keeps answering (`/health` 503 with the reason) after the engine
/// halted, before it stops with an error: monitoring sees why, then a service manager
/// restarts the daemon, which resumes from the journal (R16).
pub const HALT_LINGER: Duration = Duration::from_secs(5);

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config file is unusable or does not fit the topology.
    #[error("{}: {message}", key_path_string(key))]
    Config {
        /// Dotted key path such as `devices[2].url`.
        key: Vec<KeySeg>,
        /// What is wrong.
        message: String,
    },
    /// The config file cannot be read or parsed (the message names file and line).
    #[error("{0}")]
    ConfigFile(String),
    /// The topology is invalid (file, line and key in the message).
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// No usable API token.
    #[error("{0}")]
    Token(String),
    /// The journal cannot be opened.
    #[error("cannot open the journal {}: {error}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// Why.
        error: JournalError,
    },
    /// The engine refused to open.
    #[error("cannot open the engine: {0}")]
    Engine(#[from] EngineError),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr} ({what}): {error}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The API server failed while running.
    #[error("the API server failed: {0}")]
    Serve(String),
    /// The engine halted (a journal failure or a task's panic); the daemon stopped.
    #[error("the engine halted: {0}")]
    Halted(String),
}

impl DaemonError {
    /// Whether the error is in the user's input (config, topology, token): exit code 2.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            DaemonError::Config { .. }
                | DaemonError::ConfigFile(_)
                | DaemonError::Topology(_)
                | DaemonError::Token(_)
        )
    }

    /// The message with the config file and, when found, the line of the key in front:
    /// `engine.toml:12: devices[1].url: ...`.
    pub fn located(&self, config_file: &Path) -> String {
        let DaemonError::Config { key, .. } = self else {
            return self.to_string();
        };
        let line = std::fs::read_to_string(config_file)
            .ok()
            .filter(|t| t.len() as u64 <= config::MAX_CONFIG_BYTES)
            .and_then(|text| locate(&text, key));
        match line {
            Some(line) => format!("{}:{line}: {self}", config_file.display()),
            None => format!("{}: {self}", config_file.display()),
        }
    }
}

/// Where the daemon listens, as printed on its ready line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyInfo {
    /// Always `true`.
    pub ready: bool,
    /// Base URL of the API, `http://127.0.0.1:PORT`.
    pub api: String,
    /// UDP syslog address, `null` when disabled.
    pub syslog_udp: Option<SocketAddr>,
    /// TCP syslog address, `null` when disabled.
    pub syslog_tcp: Option<SocketAddr>,
}

impl ReadyInfo {
    /// The one JSON line `qlab engine serve` prints when ready (`docs/formats/engine-config.md`).
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"ready\":true}".into())
    }
}

/// A running daemon.
pub struct Daemon {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    reloader: Arc<policy::PolicyReloader>,
    info: ReadyInfo,
    api_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<(), String>>,
    /// Out-of-process adapters, told `shutdown` when the daemon stops.
    plugins: Vec<Arc<crate::adapters::plugin::PluginAdapter>>,
}

impl Daemon {
    /// Starts everything `config` describes; `token` is the all-scope token (empty for none,
    /// then `[[tokens]]` must list one).
    pub async fn start(config: EngineConfig, token: String) -> Result<Daemon, DaemonError> {
        let site = Arc::new(load_site(&config.topology)?);
        Daemon::start_with(site, config, token, None).await
    }

    /// Starts on an already loaded `site` (the config's `topology` is not read) with an optional
    /// engine observer: the lab's wire mode runs the daemon's code path this way, on a topology
    /// whose durations it scaled, and records the engine's events in its history.
    pub async fn start_with(
        site: Arc<Site>,
        config: EngineConfig,
        token: String,
        observer: Option<Arc<dyn EngineObserver>>,
    ) -> Result<Daemon, DaemonError> {
        let tokens = auth::Tokens::from_config(&config, &token)?;
        build::check(&config, &site)?;
        let build::Built { adapters, plugins } = build::adapters(&config, &site).await?;
        // Bind before opening the engine: a port conflict then fails the start before the
        // engine resumes any journaled operation (R16) only to be dropped again.
        let api_tls = listener::api_tls(&config.api)?;
        let api = bind_tcp("api", config.api.listen).await?;
        let api_addr = api.local_addr().map_err(|error| DaemonError::Bind {
            what: "api",
            addr: config.api.listen,
            error,
        })?;
        let udp = match config.syslog_in.udp {
            Some(addr) => Some(
                syslog_in::bind_udp(addr, config.syslog_in.udp_recv_buffer_bytes)
                    .and_then(|(s, granted)| s.local_addr().map(|a| (s, a, granted)))
                    .map_err(|error| DaemonError::Bind {
                        what: "syslog udp",
                        addr,
                        error,
                    })?,
            ),
            None => None,
        };
        let tcp = match config.syslog_in.tcp {
            Some(addr) => {
                let listener = bind_tcp("syslog tcp", addr).await?;
                let local = listener.local_addr().map_err(|error| DaemonError::Bind {
                    what: "syslog tcp",
                    addr,
                    error,
                })?;
                Some((listener, local))
            }
            None => None,
        };

        let journal = Journal::open(&config.journal).map_err(|error| DaemonError::Journal {
            path: config.journal.clone(),
            error,
        })?;
        let options = EngineOptions {
            hostname: config.hostname.clone(),
            origin_ms: wall_clock_ms(),
            observer,
            ..EngineOptions::default()
        };
        let engine = Arc::new(Engine::open(site.clone(), journal, adapters, options)?);

        let metrics = Arc::new(Metrics::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let reloader = Arc::new(policy::PolicyReloader::new(
            config.topology.clone(),
            engine.clone(),
        ));
        let router = api::router(
            engine.clone(),
            metrics.clone(),
            tokens,
            config.api.max_body_bytes,
            build::insecure_devices(&config),
            reloader.clone(),
        );
        let (api_metrics, api_stop) = (metrics.clone(), stop_rx.clone());
        let scheme = if api_tls.is_some() { "https" } else { "http" };
        tasks.spawn(listener::serve_api(
            api,
            api_tls,
            router,
            api_metrics,
            listener::Caps {
                total: MAX_API_CONNECTIONS,
                per_source: MAX_API_CONNECTIONS_PER_SOURCE,
            },
            api_stop,
        ));
        let intake = Arc::new(syslog_in::Intake::new(
            engine.clone(),
            metrics.clone(),
            &site,
            config.syslog_in.max_message_bytes,
        ));
        let gauges = &metrics.intake;
        gauges.queue_capacity.store(
            config.syslog_in.queue_messages as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let (queue, queued) = syslog_in::queue(
            config.syslog_in.queue_messages,
            config.syslog_in.queue_bytes,
            metrics.clone(),
        );
        {
            let intake = intake.clone();
            tasks.spawn(async move {
                syslog_in::run_dispatcher(queued, intake).await;
                Ok(())
            });
        }
        let syslog_udp = udp.as_ref().map(|(_, addr, _)| *addr);
        if let Some((socket, addr, granted)) = udp {
            let requested = config.syslog_in.udp_recv_buffer_bytes;
            gauges
                .udp_recv_buffer_requested
                .store(requested as u64, std::sync::atomic::Ordering::Relaxed);
            gauges
                .udp_recv_buffer_granted
                .store(granted as u64, std::sync::atomic::Ordering::Relaxed);
            gauges.udp_socket_inode.store(
                syslog_in::socket_inode(&socket),
                std::sync::atomic::Ordering::Relaxed,
            );
            if granted < requested {
                tracing::warn!(
                    requested,
                    granted,
                    "the kernel granted a smaller UDP receive buffer than \
                     syslog_in.udp_recv_buffer_bytes (raise net.core.rmem_max)"
                );
            }
            let ended =
                syslog_in::spawn_udp(socket, intake.clone(), queue.clone(), stop_rx.clone())
                    .map_err(|error| DaemonError::Bind {
                        what: "syslog udp",
                        addr,
                        error,
                    })?;
            tasks.spawn(async move {
                let _ = ended.await;
                Ok(())
            });
        }
        let syslog_tcp = tcp.as_ref().map(|(_, addr)| *addr);
        if let Some((listener, _)) = tcp {
            let (intake, queue, stop) = (intake.clone(), queue.clone(), stop_rx.clone());
            tasks.spawn(async move {
                syslog_in::run_tcp(listener, intake, queue, stop).await;
                Ok(())
            });
        }
        // The dispatcher ends once the listeners (the queue's last senders) are gone.
        drop(queue);
        for poller in &config.epo_pollers {
            epo::spawn(
                &mut tasks,
                poller,
                &config.journal,
                engine.clone(),
                metrics.clone(),
                stop_rx.clone(),
                site.topology.engine.call_timeout,
            );
        }
        let info = ReadyInfo {
            ready: true,
            api: format!("{scheme}://{api_addr}"),
            syslog_udp,
            syslog_tcp,
        };
        Ok(Daemon {
            engine,
            metrics,
            reloader,
            info,
            api_addr,
            stop,
            tasks,
            plugins,
        })
    }

    /// The API's bound address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The API's base URL, `http://127.0.0.1:PORT` (`https://` with `[api] tls_cert`).
    pub fn api_url(&self) -> &str {
        &self.info.api
    }

    /// The UDP syslog listener's address, when enabled.
    pub fn syslog_udp_addr(&self) -> Option<SocketAddr> {
        self.info.syslog_udp
    }

    /// The TCP syslog listener's address, when enabled.
    pub fn syslog_tcp_addr(&self) -> Option<SocketAddr> {
        self.info.syslog_tcp
    }

    /// What the ready line says.
    pub fn ready_info(&self) -> &ReadyInfo {
        &self.info
    }

    /// The running engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The rejection counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Policy reloads of this daemon (`POST /api/v1/policy/reload` uses the same).
    pub fn policy_reloader(&self) -> &Arc<policy::PolicyReloader> {
        &self.reloader
    }

    /// Reloads the policy on every SIGHUP from now on (`qlab engine serve`; a library user
    /// that runs the daemon in its own process may not want SIGHUP taken).
    pub fn reload_on_sighup(&mut self) {
        let (reloader, stop) = (self.reloader.clone(), self.stop.subscribe());
        // Registered here, not in the task: the task may first run after the ready line.
        let hangup = policy::Hangup::register();
        self.tasks
            .spawn(async move { policy::reload_on_sighup(reloader, stop, hangup).await });
    }

    /// Waits until a listener fails (it returns that failure) or every task ended.
    pub async fn wait(&mut self) -> Result<(), DaemonError> {
        while let Some(ended) = self.tasks.join_next().await {
            match ended {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(DaemonError::Serve(e)),
                Err(e) if e.is_panic() => return Err(DaemonError::Serve(e.to_string())),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Resolves once the engine halted, with the reason.
    pub async fn halted(&self) -> String {
        self.engine.halted().await;
        self.engine
            .halt_reason()
            .unwrap_or_else(|| "no reason recorded".into())
    }

    /// Ends the daemon as a process crash would (the lab's wire mode crashes it so): the engine
    /// is killed first ([`Engine::kill`]), so a daemon started next on the same journal finds
    /// it as this one left it, though this one's connections may hold the engine a while
    /// longer; then every task is aborted, nothing drained.
    pub async fn kill(mut self) {
        self.engine.kill().await;
        self.tasks.shutdown().await;
    }

    /// Stops the listeners, lets in-flight API requests finish for a few seconds, then drops
    /// the engine (its running operations resume on the next start, R16).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("listeners did not stop within {SHUTDOWN_GRACE:?}; aborting them");
        }
        self.tasks.shutdown().await;
        for plugin in &self.plugins {
            plugin.stop().await;
        }
    }
}

/// Runs the daemon until Ctrl-C or SIGTERM (or a listener failure), calling `ready` once it
/// listens.
pub async fn serve(
    config: EngineConfig,
    token: String,
    ready: impl FnOnce(&ReadyInfo),
) -> Result<(), DaemonError> {
    let mut daemon = Daemon::start(config, token).await?;
    daemon.reload_on_sighup();
    if std::env::var_os(TEST_PANIC_ENV).is_some() {
        daemon.engine().panic_an_engine_task_for_tests();
    }
    ready(daemon.ready_info());
    let engine = daemon.engine().clone();
    let result = tokio::select! {
        r = daemon.wait() => r,
        _ = stop_signal() => {
            tracing::info!("stop signal received; stopping");
            Ok(())
        }
        _ = async {
            engine.halted().await;
            tokio::time::sleep(HALT_LINGER).await;
        } => {
            let reason = engine.halt_reason().unwrap_or_default();
            tracing::error!(%reason, "the engine halted; stopping the daemon");
            Err(DaemonError::Halted(reason))
        }
    };
    daemon.shutdown().await;
    result
}

/// Loads `config_file`, picks the token ([`TOKEN_ENV`] when set, else the config's) and runs
/// [`serve`]. Errors carry the file (and line) they are about.
pub async fn serve_file(
    config_file: &Path,
    env_token: Option<String>,
    ready: impl FnOnce(&ReadyInfo),
) -> Result<(), DaemonError> {
    let config = EngineConfig::load(config_file).map_err(DaemonError::ConfigFile)?;
    let token = match env_token {
        Some(t) if t.is_empty() => {
            return Err(DaemonError::Token(format!(
                "{TOKEN_ENV} is set but empty; unset it to use the config's token"
            )))
        }
        Some(t) => t,
        None => config.token.clone(),
    };
    serve(config, token, ready).await
}

/// Resolves on Ctrl-C, or SIGTERM on Unix (how service managers stop a daemon). A signal
/// that cannot be watched never resolves rather than stopping the daemon at once.
async fn stop_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

async fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| DaemonError::Bind { what, addr, error })
}

/// Milliseconds since the Unix epoch: engine time in production reads like wall time.
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
