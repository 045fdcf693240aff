//! `qlab engine serve`, the API client commands (`qlab engine quarantine|release|status|decide|
//! reload-policy`) and `qlab notify`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;

use super::{fail, runtime, Exit};
use crate::daemon::{self, client};
use crate::model::topology::Action;
use crate::model::{Category, Detection};

/// Where the engine's API is and how to authenticate.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// Base URL of the engine's API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API bearer token (default: the QLAB_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
    /// Timeout of each HTTP exchange, e.g. 10s.
    #[arg(long, default_value = "10s")]
    timeout: humantime::Duration,
    /// CA certificate(s) (PEM) to trust for an https:// --url (the engine's `[api] tls_cert`
    /// signer); only these are trusted then, not the built-in web roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

/// `qlab engine ...`.
#[derive(Subcommand)]
pub enum EngineCommand {
    /// Runs the engine daemon: HTTP API, syslog listeners, pollers. Prints one JSON line when
    /// ready. The token comes from QLAB_TOKEN when set, else from the config.
    Serve {
        /// Engine config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Log line format on stderr: text or json (default: QLAB_LOG_FORMAT, else text).
        #[arg(long)]
        log_format: Option<daemon::log::LogFormat>,
    },
    /// Manual quarantine of an L-Server (R12).
    Quarantine {
        /// L-Server path, e.g. /tenant-a/vdi-001.
        lserver: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release of a quarantined L-Server (R14).
    Release {
        /// L-Server path.
        lserver: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Shows one L-Server, or all of them.
    Status {
        /// L-Server path; all L-Servers when absent.
        lserver: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Decides for an L-Server waiting for a decision (R5).
    Decide {
        /// L-Server path.
        lserver: String,
        /// The action to run.
        #[arg(long, value_enum)]
        choice: Action,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Reloads the policy (the topology file's [policy]) of a running engine without a restart,
    /// as SIGHUP does; an invalid file leaves the running policy in force (exit 1). Needs a
    /// token with the `operate` scope.
    ReloadPolicy {
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `qlab notify`'s arguments.
#[derive(clap::Args)]
pub struct NotifyArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// AV server name in the topology.
    #[arg(long)]
    source: String,
    /// Infected host's IP address.
    #[arg(long, required_unless_present_any = ["hostname", "mac"])]
    ip: Option<std::net::IpAddr>,
    /// Infected host's name.
    #[arg(long)]
    hostname: Option<String>,
    /// Infected host's MAC address.
    #[arg(long)]
    mac: Option<String>,
    /// Threat name.
    #[arg(long)]
    threat: String,
    /// Threat category; only virus and malware start an operation (R1).
    #[arg(long, value_enum, default_value_t = Category::Virus)]
    category: Category,
    /// The AV server's event id (dedupe key with --source, R4); default: a hash of the
    /// fields and the current minute (see --help).
    #[arg(long)]
    event_id: Option<String>,
    /// Tries in all on connection errors and 5xx answers (backoff 250 ms, doubling).
    #[arg(long, default_value_t = 5)]
    attempts: u32,
}

/// `qlab engine ...`.
pub fn engine(command: EngineCommand) -> Exit {
    match command {
        EngineCommand::Serve { config, log_format } => engine_serve(&config, log_format),
        EngineCommand::Quarantine { lserver, api } => with_client(&api, |c| async move {
            c.command(&lserver, "quarantine", None).await
        }),
        EngineCommand::Release { lserver, api } => with_client(&api, |c| async move {
            c.command(&lserver, "release", None).await
        }),
        EngineCommand::Status { lserver, api } => {
            with_client(&api, |c| async move { c.status(lserver.as_deref()).await })
        }
        EngineCommand::Decide {
            lserver,
            choice,
            api,
        } => with_client(&api, |c| async move {
            c.command(&lserver, "decide", Some(choice.as_str())).await
        }),
        EngineCommand::ReloadPolicy { api } => with_client(&api, |c| async move {
            c.post(&["policy", "reload"], &serde_json::json!({})).await
        }),
    }
}

/// `qlab notify`: 0 only when the engine made the detection durable (202).
pub fn notify(args: NotifyArgs) -> Exit {
    let mut detection = Detection {
        source: args.source,
        event_id: args.event_id.unwrap_or_default(),
        ip: args.ip,
        mac: args.mac,
        hostname: args.hostname,
        threat: args.threat,
        category: args.category,
    };
    if detection.event_id.is_empty() {
        detection.event_id = client::default_event_id(&detection);
    }
    if let Err(e) = detection.check() {
        return fail(e, Exit::BadInput);
    }
    let attempts = args.attempts;
    with_client(&args.api, |client| async move {
        client
            .notify(&detection, attempts, Duration::from_millis(250))
            .await
    })
}

/// `qlab engine serve`: exit 2 on a bad config, topology or token, 1 when it fails later.
fn engine_serve(config: &Path, log_format: Option<daemon::log::LogFormat>) -> Exit {
    daemon::log::init(log_format);
    let runtime = match runtime(true) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let token = std::env::var_os(daemon::TOKEN_ENV).map(|t| t.to_string_lossy().into_owned());
    let result = runtime.block_on(daemon::serve_file(config, token, |ready| {
        println!("{}", ready.line());
        // The ready line is what scripts wait for: push it out now, not at exit.
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }));
    match result {
        Ok(()) => Exit::Success,
        Err(e) => fail(
            e.located(config),
            if e.is_input_error() {
                Exit::BadInput
            } else {
                Exit::Failed
            },
        ),
    }
}

/// Runs one API call and prints its JSON reply. Exit 0 on 2xx; 1 when the engine refused
/// (404, 409, 429, 5xx); 2 on bad arguments or a rejected token; 3 when the engine could not be
/// reached ([`Exit::Unreachable`]).
fn with_client<F, Fut>(api: &ApiArgs, call: F) -> Exit
where
    F: FnOnce(client::ApiClient) -> Fut,
    Fut: std::future::Future<Output = Result<client::Reply, client::ClientError>>,
{
    let token = api.token.clone().or_else(|| {
        std::env::var(daemon::TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
    });
    let Some(token) = token else {
        let env = daemon::TOKEN_ENV;
        return fail(
            format!("no API token: pass --token or set {env}"),
            Exit::BadInput,
        );
    };
    let runtime = match runtime(false) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let ca_pem = match &api.ca_file {
        Some(file) => match std::fs::read(file) {
            Ok(pem) => Some(pem),
            Err(e) => return fail(format!("--ca-file {}: {e}", file.display()), Exit::BadInput),
        },
        None => None,
    };
    let client =
        match client::ApiClient::with_ca(&api.url, &token, api.timeout.into(), ca_pem.as_deref()) {
            Ok(c) => c,
            Err(e) => return fail(e, Exit::BadInput),
        };
    match runtime.block_on(call(client)) {
        Ok(reply) => {
            let text = serde_json::to_string_pretty(&reply.body)
                .unwrap_or_else(|_| reply.body.to_string());
            if reply.exit_code() != 0 {
                eprintln!("error: the engine answered HTTP {}", reply.status);
            }
            println!("{text}");
            Exit::from_code(reply.exit_code())
        }
        Err(e) => {
            let exit = match e {
                client::ClientError::Transport { .. } => Exit::Unreachable,
                client::ClientError::BadUrl(_) | client::ClientError::BadCa(_) => Exit::BadInput,
            };
            fail(e, exit)
        }
    }
}
