//! What the two CLI-over-JSON-RPC switch clients (NX-API, eAPI) share: the HTTP exchange
//! ([`CliClient`]), the classes of the error codes both use, the whole-request failures read
//! from the HTTP status, and the splitting of one request's outcome into per-port results.
//! Each client keeps its own request and reply shapes (its dialect).

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::Value;

use super::http;
use super::{DeviceError, DeviceResult, OutcomeClass, Switch};

/// The device is busy, retry later: -32001, in JSON-RPC's implementation-defined server-error
/// range, so it cannot collide with a CLI error (no public source gave one; the lab's choice).
pub const CODE_BUSY: i64 = -32001;
/// JSON-RPC internal error: the device failed while executing, and nothing proves it had not
/// changed the port yet (`unknown`).
pub const CODE_INTERNAL: i64 = -32603;

/// A JSON-RPC 2.0 error object as both clients read it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RpcError {
    /// Error code, classed by [`code_class`]: NX-API -32602 a CLI error, -32001 busy, -32603
    /// internal, else protocol errors; eAPI's are its module's `CODE_*` constants.
    pub code: i64,
    /// Short text; eAPI's command errors say `CLI command k of n '...' failed: ...`.
    #[serde(default)]
    pub message: String,
    /// The vendor's detail: eAPI's outputs of the commands that ran, the failing one last as
    /// `{"errors": [...]}`; NX-API's `{"msg": "..."}` with the CLI's own words.
    #[serde(default)]
    pub data: Option<Value>,
}

/// The class of a JSON-RPC error code: busy, internal (`unknown`), else `rejected` (a CLI or
/// protocol error: not applied).
pub fn code_class(code: i64) -> OutcomeClass {
    match code {
        CODE_BUSY => OutcomeClass::Busy,
        CODE_INTERNAL => OutcomeClass::Unknown,
        _ => OutcomeClass::Rejected,
    }
}

/// The failure of a whole request told by its HTTP status alone (401 `auth`, 503
/// `unavailable`), before any body is read.
pub(crate) fn whole_request_failure(status: StatusCode, body: &str) -> Option<DeviceError> {
    (status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE).then(|| {
        let detail = format!("HTTP {status}: {}", http::snippet(body));
        DeviceError::new(http::status_class(status), detail)
    })
}

/// The failure an error reply reports: of command `index` when the reply tells which failed
/// (its class from the error `code`); else of the whole request, where a protocol error is
/// refused before anything runs (its class stands) and any other leaves unknown which command
/// failed, so neither is whether earlier ones ran (`unknown`).
pub(crate) fn command_failure(
    code: i64,
    index: Option<usize>,
    protocol: bool,
    detail: String,
) -> (usize, DeviceError) {
    let class = code_class(code);
    match index {
        Some(index) => (index, DeviceError::new(class, detail)),
        None if protocol => (0, DeviceError::new(class, detail)),
        None => (0, DeviceError::new(OutcomeClass::Unknown, detail)),
    }
}

/// A reply the client cannot read: a 4xx keeps its status class, anything else may have been
/// applied (`unknown`).
pub(crate) fn unreadable(status: StatusCode, body: &str, vendor: &str) -> DeviceError {
    let class = if status.is_client_error() {
        http::status_class(status)
    } else {
        OutcomeClass::Unknown
    };
    let detail = format!(
        "unreadable {vendor} reply (HTTP {status}): {}",
        http::snippet(body)
    );
    DeviceError::new(class, detail)
}

/// One switch endpoint: the HTTP client, URL and Basic credentials.
pub struct CliClient {
    http: reqwest::Client,
    call_timeout: std::time::Duration,
    url: String,
    user: String,
    password: String,
}

impl CliClient {
    /// A client for `base_url` + `path`, each call cut at `call_timeout`.
    pub fn new(
        base_url: &str,
        path: &str,
        user: &str,
        password: &str,
        call_timeout: std::time::Duration,
    ) -> DeviceResult<CliClient> {
        Ok(CliClient {
            http: http::client(call_timeout)?,
            call_timeout,
            url: endpoint(base_url, path)?,
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// Verifies the switch's certificate as `trust` says (R18) from now on.
    pub fn trust(&mut self, trust: &http::TlsTrust) -> DeviceResult<()> {
        self.http = http::client_with(self.call_timeout, trust)?;
        Ok(())
    }

    /// Posts `request` as JSON of `content_type`; the status and body text, or a failure of
    /// the whole request (index 0, like [`CommandOutcome`]). A request that cannot be encoded
    /// is refused before anything is sent.
    pub async fn post(
        &self,
        content_type: &str,
        request: &impl serde::Serialize,
    ) -> Result<(StatusCode, String), (usize, DeviceError)> {
        let body = serde_json::to_vec(request).map_err(|e| {
            let error = DeviceError::new(OutcomeClass::Rejected, format!("cannot encode: {e}"));
            (0, error)
        })?;
        let request = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        http::exchange(request).await.map_err(|e| (0, e))
    }
}

/// A CLI-over-JSON-RPC switch: how it words requests, reads replies and which lines it needs.
/// The [`Switch`] port, and the HTTP exchange through [`CliClient`], are implemented once over
/// this.
pub trait CliDialect: Default + Send + Sync {
    /// The vendor's name in error details.
    const VENDOR: &'static str;
    /// The endpoint's path below the switch's base URL.
    const PATH: &'static str;
    /// The `Content-Type` of a request.
    const CONTENT_TYPE: &'static str;
    /// The body of one request.
    type Request: serde::Serialize + Send + Sync;
    /// Lines sent before the per-port lines of a change (entering configuration mode).
    fn set_preamble(&self) -> &'static [&'static str];
    /// The lines that save the running config.
    fn save_lines(&self) -> &'static [&'static str];
    /// The line that reads a port's switchport state.
    fn show_line(&self, port: &str) -> String;
    /// The access VLAN of `port` in the output of [`CliDialect::show_line`].
    fn parse_show(&self, port: &str, output: &Value) -> Option<u16>;
    /// The request that runs `commands`, in order.
    fn request(&self, commands: &[String]) -> Self::Request;
    /// Classifies the reply (`status`, `body`) to a request of `count` commands.
    fn interpret(status: StatusCode, body: &str, count: usize) -> CommandOutcome;
}

/// CLI lines a change emits per port, after the dialect's preamble.
pub const SET_COMMANDS_PER_PORT: usize = 2;

/// The lines that set each `(port, vlan)` in order: `preamble`, then
/// [`SET_COMMANDS_PER_PORT`] lines per port.
pub fn set_commands(preamble: &[&str], changes: &[(&str, u16)]) -> Vec<String> {
    let lines = changes.iter().flat_map(|(port, vlan)| {
        [
            format!("interface {port}"),
            format!("switchport access vlan {vlan}"),
        ]
    });
    preamble
        .iter()
        .map(|c| c.to_string())
        .chain(lines)
        .collect()
}

/// A switch client speaking dialect `D`: the engine's [`Switch`] port, batching ports per
/// request.
pub struct CliSwitch<D> {
    client: CliClient,
    dialect: D,
}

impl<D: CliDialect> CliSwitch<D> {
    /// A client for the switch at `base_url` (`http://host:port`), authenticating every request
    /// with HTTP Basic `user`/`password`; each call is cut at `call_timeout`.
    pub fn new(
        base_url: &str,
        user: &str,
        password: &str,
        call_timeout: std::time::Duration,
    ) -> DeviceResult<CliSwitch<D>> {
        let client = CliClient::new(base_url, D::PATH, user, password, call_timeout)?;
        Ok(CliSwitch {
            client,
            dialect: D::default(),
        })
    }

    /// The same client verifying the switch's certificate as `trust` says (R18).
    pub fn with_trust(mut self, trust: &http::TlsTrust) -> DeviceResult<Self> {
        self.client.trust(trust)?;
        Ok(self)
    }

    /// Sends `commands` as one request and classifies the reply.
    async fn run(&self, commands: &[String]) -> CommandOutcome {
        let request = self.dialect.request(commands);
        let (status, text) = self.client.post(D::CONTENT_TYPE, &request).await?;
        D::interpret(status, &text, commands.len())
    }

    /// Sets several ports' access VLANs in one request (R15 batching); one result per change,
    /// in order. The device stops at the first failing command, so changes before it applied.
    pub async fn set_ports(&self, changes: &[(&str, u16)]) -> Vec<DeviceResult<()>> {
        if changes.is_empty() {
            return Vec::new();
        }
        if let Some(e) = changes.iter().find_map(|(p, _)| check_port(p).err()) {
            return vec![Err(e); changes.len()];
        }
        let preamble = self.dialect.set_preamble();
        let outcome = self.run(&set_commands(preamble, changes)).await;
        per_change(
            outcome,
            changes.len(),
            preamble.len(),
            SET_COMMANDS_PER_PORT,
        )
    }
}

#[async_trait]
impl<D: CliDialect> Switch for CliSwitch<D> {
    async fn get_port(&self, port: &str) -> DeviceResult<u16> {
        first_result(self.get_ports(&[port.to_string()]).await)
    }

    async fn set_port(&self, port: &str, vlan: u16) -> DeviceResult<()> {
        first_result(CliSwitch::set_ports(self, &[(port, vlan)]).await)
    }

    async fn save_config(&self) -> DeviceResult<()> {
        let lines: Vec<String> = self
            .dialect
            .save_lines()
            .iter()
            .map(|l| l.to_string())
            .collect();
        self.run(&lines).await.map(|_| ()).map_err(|(_, e)| e)
    }

    fn batches(&self) -> bool {
        true
    }

    async fn set_ports(&self, changes: &[(String, u16)]) -> Vec<DeviceResult<()>> {
        let changes: Vec<(&str, u16)> = changes.iter().map(|(p, v)| (p.as_str(), *v)).collect();
        CliSwitch::set_ports(self, &changes).await
    }

    async fn get_ports(&self, ports: &[String]) -> Vec<DeviceResult<u16>> {
        if let Some(e) = ports.iter().find_map(|p| check_port(p).err()) {
            return vec![Err(e); ports.len()];
        }
        let commands: Vec<String> = ports.iter().map(|p| self.dialect.show_line(p)).collect();
        let outcome = self.run(&commands).await;
        per_read(outcome, ports, D::VENDOR, |port, out| {
            self.dialect.parse_show(port, out)
        })
    }
}

/// A VLAN id printed as a number or a numeric string.
pub fn vlan_value(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// How one request of several commands ended: every command's result in order, or the index
/// of the command that failed (the ones before it ran) and why. A failure of the whole request
/// (auth, unavailable, transport) has index 0.
pub type CommandOutcome = Result<Vec<Value>, (usize, DeviceError)>;

/// Splits a [`CommandOutcome`] into one result per port change, where the commands of change
/// `i` are `offset + i * per_change ..` (`per_change` of them). Changes whose commands all ran
/// are ok; the change holding the failed command gets its error; later changes never ran and
/// get the same class (a `rejected` stays "not applied", an `unknown` stays "may have been").
/// One read result per port from the reply to one show command per port: a failed request
/// fails every read; a reply without a VLAN for a port is `unknown` for that port.
pub(crate) fn per_read(
    outcome: CommandOutcome,
    ports: &[String],
    vendor: &str,
    parse: impl Fn(&str, &Value) -> Option<u16>,
) -> Vec<DeviceResult<u16>> {
    match outcome {
        Ok(results) => ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                results
                    .get(i)
                    .and_then(|result| parse(port, result))
                    .ok_or_else(|| {
                        DeviceError::new(
                            OutcomeClass::Unknown,
                            format!("{vendor} reply has no access VLAN for {port}"),
                        )
                    })
            })
            .collect(),
        Err((_, error)) => vec![Err(error); ports.len()],
    }
}

/// The only result of a one-item batch.
pub(crate) fn first_result<T>(results: Vec<DeviceResult<T>>) -> DeviceResult<T> {
    results
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(DeviceError::new(OutcomeClass::Unknown, "no result")))
}

pub(crate) fn per_change(
    outcome: CommandOutcome,
    changes: usize,
    offset: usize,
    per_change: usize,
) -> Vec<DeviceResult<()>> {
    match outcome {
        Ok(_) => vec![Ok(()); changes],
        Err((failed, error)) => (0..changes)
            .map(|i| {
                let start = offset + i * per_change;
                if failed >= start + per_change {
                    Ok(())
                } else if failed >= start {
                    Err(error.clone())
                } else {
                    let detail = format!("not executed: {}", error.detail);
                    Err(DeviceError::new(error.class, detail))
                }
            })
            .collect(),
    }
}

/// Refuses a port name that would not be one CLI token (empty, blanks, control characters):
/// sending it could run a different command. Never sent, so `rejected`.
pub(crate) fn check_port(port: &str) -> DeviceResult<()> {
    if port.is_empty() || port.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DeviceError::new(
            OutcomeClass::Rejected,
            format!("invalid port name {port:?}"),
        ));
    }
    Ok(())
}

/// `base_url` joined with `path`, checked to be an http(s) URL. A bad URL is a configuration
/// error: nothing can be sent, so `unavailable`.
pub(crate) fn endpoint(base_url: &str, path: &str) -> DeviceResult<String> {
    let url = format!("{}{}", base_url.trim_end_matches('/'), path);
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(url),
        _ => Err(DeviceError::new(
            OutcomeClass::Unavailable,
            format!("invalid device URL {base_url:?}"),
        )),
    }
}
