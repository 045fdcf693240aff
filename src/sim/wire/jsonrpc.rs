//! What the NX-API and eAPI faces share: the credentials check, [`Batch`] (the commands of one
//! request run in order against the world, stopping at the first failure, like the real
//! devices), and the one switch CLI both emulate ([`Cli`], [`Session`]): the same commands,
//! modes and device calls, with each face rendering the [`Output`]s in its vendor's shapes.
//!
//! Every line that touches a port is a device call of the model, so faults drive it: `switchport
//! access vlan N` is a `SetPort`, `show interface X switchport` and `show running-config
//! interfaces X` one `GetPort`, `show vlan` and `show running-config` one `GetPort` per port of
//! the switch, `copy running-config startup-config` a `SaveConfig`. `show version`, mode
//! changes and `switchport mode access` touch no port and make no call.
//!
//! Decisions where no source says (the goldens in `fixtures/devices/` hold the shapes):
//! - The model's ports are access ports; `switchport mode access` is accepted without a device
//!   call (it changes nothing), `switchport mode trunk` is refused like an unsupported command.
//! - Port names are matched case-insensitively against the switch's ports and written the
//!   topology's way (`interface ethernet1/5` is `Ethernet1/5`); `interface ethernet 1/5` (the
//!   number as its own word) is the same port.
//! - A switch's ports are the ports the site's physical NICs sit on; `show vlan` lists VLAN 1,
//!   every topology network's VLAN and any other VLAN a port carries.
//! - `show running-config` has no JSON form (eAPI's 1003, NX-API's "structured output
//!   unsupported"): clients ask for text, as pyeapi and the NX-OS drivers do.

use std::io;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use wiremock::{Request, ResponseTemplate};

use super::accepted_credentials;
use super::proxy::ProxyFault;
use crate::adapters::{DeviceError, OutcomeClass};
use crate::model::{Credentials, NicLocation, SwitchKind, SwitchSpec};
use crate::sim::{DeviceOp, Reply, SimWorld, WireCall};

/// Most commands one request may carry; more is a protocol error, not an allocation.
pub(crate) const MAX_COMMANDS: usize = 1024;
/// JSON-RPC 2.0: the body is not JSON.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0: not a valid request object.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0: no such method.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC 2.0: bad params; NX-API also reports CLI errors with it.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC 2.0 internal error: a failure that may have applied (`unknown`).
pub(crate) const INTERNAL: i64 = -32603;
/// Busy, retry later: -32001, JSON-RPC's implementation-defined server-error range (the lab's
/// choice; no public source gave one).
pub(crate) const BUSY: i64 = -32001;

/// What a switch face serves: the world, the switch, its ports and the credentials it takes.
pub(crate) struct SwitchSite {
    /// The world whose model answers.
    pub world: SimWorld,
    /// The switch's name.
    pub device: String,
    /// Its ports ([`switch_ports`]).
    pub ports: Vec<String>,
    /// What it accepts.
    pub credentials: Credentials,
}

impl SwitchSite {
    /// Switch `device` of kind `kind`; an error when the site has no such switch.
    pub fn new(world: SimWorld, device: &str, kind: SwitchKind) -> io::Result<SwitchSite> {
        Ok(SwitchSite {
            credentials: switch_credentials(&world, device, kind)?,
            ports: switch_ports(&world, device),
            device: device.to_string(),
            world,
        })
    }

    /// A CLI session on the switch (see [`Session::new`] for `strict`).
    pub fn session(&self, strict: bool) -> Session<'_> {
        Session::new(&self.world, &self.device, &self.ports, strict)
    }
}

/// The credentials switch `device` of kind `kind` accepts; an error when the site has no such
/// switch (a face for the wrong device would serve a model that does not exist).
pub(crate) fn switch_credentials(
    world: &SimWorld,
    device: &str,
    kind: SwitchKind,
) -> io::Result<Credentials> {
    let switches = &world.site().topology.switches;
    let is_it = |s: &SwitchSpec| s.name == device && s.kind == kind;
    let what = format!("a {kind:?} switch of the site");
    let spec = super::find_device(switches, is_it, device, &what)?;
    Ok(accepted_credentials(spec.credentials.as_ref()))
}

/// Whether the request carries HTTP Basic credentials equal to `accepted`.
pub(crate) fn authorized(request: &Request, accepted: &Credentials) -> bool {
    let Some(value) = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(pair) = String::from_utf8(decoded) else {
        return false;
    };
    pair.split_once(':') == Some((accepted.user.as_str(), accepted.password.as_str()))
}

/// A 401 asking for Basic credentials.
pub(crate) fn unauthorized(realm: &str) -> ResponseTemplate {
    ResponseTemplate::new(401)
        .insert_header("www-authenticate", format!("Basic realm=\"{realm}\""))
        .set_body_string("Unauthorized")
}

/// The content type of a request, lowercased, without parameters.
pub(crate) fn media_type(request: &Request) -> String {
    request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A JSON reply.
pub(crate) fn json_template(status: u16, body: &Value, content_type: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), content_type)
}

/// The route and method checks every switch face makes first: `None` when the request may go on.
pub(crate) fn refuse_route(
    request: &Request,
    path: &str,
    credentials: &Credentials,
    realm: &str,
) -> Option<ResponseTemplate> {
    if request.url.path() != path {
        return Some(ResponseTemplate::new(404).set_body_string("Not Found"));
    }
    if request.method.as_str() != "POST" {
        return Some(ResponseTemplate::new(405).set_body_string("Method Not Allowed"));
    }
    (!authorized(request, credentials)).then(|| unauthorized(realm))
}

/// Why a command failed without the device failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CliFailure {
    /// Not a command, or not in this mode: the CLI's "invalid command".
    Invalid,
    /// A command with no structured (JSON) output asked for as JSON.
    NoJson,
}

/// The commands of one request run against the world in order, stopping at the first failure,
/// folded into one [`WireCall`] for [`super::render`]: the request is held back by the largest
/// delay among its device calls (the device's latency once per request, as the sim face's
/// [`SimWorld::call_batch`] has it, with a fault's extra delay on one command still showing), and
/// the first failure or transport fault ends the request (later commands never run, as on the
/// real devices).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Outputs of the commands that succeeded, in order.
    pub results: Vec<Output>,
    delay: Duration,
    failure: Option<(DeviceError, Option<CliFailure>)>,
    transport: Option<ProxyFault>,
    device_calls: usize,
}

impl Batch {
    /// Whether a command failed, so nothing more runs.
    pub fn stopped(&self) -> bool {
        self.failure.is_some() || self.transport.is_some()
    }

    /// Makes one device call; its reply, or `None` when it failed (the batch has stopped).
    pub fn call(&mut self, world: &SimWorld, device: &str, op: DeviceOp) -> Option<Reply> {
        let call = world.call_now(device, op);
        self.delay = self.delay.max(call.delay);
        let earlier_calls = self.device_calls;
        self.device_calls += 1;
        if let Some(fault) = call.transport {
            self.transport = Some(fault);
            return None;
        }
        match call.result {
            Ok(reply) => Some(reply),
            Err(error) => {
                // 503 and 401 refuse a whole request before it runs, which cannot be said once
                // an earlier command of it changed the device: report a mid-way failure.
                let whole_request =
                    matches!(error.class, OutcomeClass::Unavailable | OutcomeClass::Auth);
                let error = if whole_request && earlier_calls > 0 {
                    let detail = format!("failed after earlier commands ran: {}", error.detail);
                    DeviceError::new(OutcomeClass::Unknown, detail)
                } else {
                    error
                };
                self.failure = Some((error, None));
                None
            }
        }
    }

    /// Stops the batch with a CLI error of the command at hand (not a device call).
    pub fn fail(&mut self, kind: CliFailure, detail: impl Into<String>) {
        let error = DeviceError::new(OutcomeClass::Rejected, detail);
        self.failure = Some((error, Some(kind)));
    }

    /// The folded call, the outputs of the commands that succeeded (the failing command, if
    /// any, is the next one) and, for a CLI error, its kind.
    pub fn finish(self) -> (WireCall, Vec<Output>, Option<CliFailure>) {
        let (result, kind) = match self.failure {
            Some((error, kind)) => (Err(error), kind),
            None => (Ok(Reply::Done), None),
        };
        let call = WireCall {
            result,
            delay: self.delay,
            transport: self.transport,
        };
        (call, self.results, kind)
    }
}

/// One parsed CLI line, in either vendor's spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cli {
    Enable,
    Configure,
    Exit,
    End,
    Interface(String),
    ModeAccess,
    AccessVlan(u16),
    ShowVersion,
    ShowVlan {
        brief: bool,
    },
    ShowSwitchport(String),
    ShowRunning {
        interface: Option<String>,
        all: bool,
    },
    Save,
}

/// Parses one CLI line; the error is the CLI's complaint.
pub(crate) fn parse_cli(cmd: &str) -> Result<Cli, String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let invalid = || format!("% Invalid command at '^' marker: {}", cmd.trim());
    let joined = |rest: &[&str]| (!rest.is_empty()).then(|| rest.concat());
    match words.as_slice() {
        ["enable"] => Ok(Cli::Enable),
        ["configure"] | ["configure", "terminal"] | ["conf", "t"] => Ok(Cli::Configure),
        ["exit"] => Ok(Cli::Exit),
        ["end"] => Ok(Cli::End),
        ["interface" | "int", rest @ ..] => joined(rest).map(Cli::Interface).ok_or_else(invalid),
        ["switchport", "mode", "access"] => Ok(Cli::ModeAccess),
        ["switchport", "access", "vlan", vlan] => match vlan.parse::<u16>() {
            Ok(v) if (1..=4094).contains(&v) => Ok(Cli::AccessVlan(v)),
            _ => Err(format!("% Invalid number, range is (1-4094) at '{vlan}'")),
        },
        ["show", "version"] => Ok(Cli::ShowVersion),
        ["show", "vlan"] => Ok(Cli::ShowVlan { brief: false }),
        ["show", "vlan", "brief"] => Ok(Cli::ShowVlan { brief: true }),
        ["show", "interface" | "interfaces", rest @ .., "switchport"] => {
            joined(rest).map(Cli::ShowSwitchport).ok_or_else(invalid)
        }
        ["show", "running-config" | "run", rest @ ..] => match rest {
            [] => Ok(Cli::ShowRunning {
                interface: None,
                all: false,
            }),
            ["all"] => Ok(Cli::ShowRunning {
                interface: None,
                all: true,
            }),
            ["interface" | "interfaces", port @ ..] if !port.is_empty() => Ok(Cli::ShowRunning {
                interface: Some(port.concat()),
                all: false,
            }),
            _ => Err(invalid()),
        },
        ["copy", "running-config" | "run", "startup-config" | "start"] => Ok(Cli::Save),
        _ => Err(invalid()),
    }
}

/// What a command produced, for the face to render as JSON or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// A mode change or configuration line.
    Empty,
    /// `show version` of the named switch.
    Version(String),
    /// `show vlan`: every VLAN with the ports on it, VLAN order; names from the topology.
    Vlans { brief: bool, vlans: Vec<VlanRow> },
    /// `show interface X switchport`.
    Switchport { port: String, vlan: u16 },
    /// `show running-config`: the switch, its VLANs and the ports shown with their VLANs.
    Running {
        device: String,
        vlans: Vec<VlanRow>,
        ports: Vec<(String, u16)>,
        all: bool,
    },
    /// The running config was saved.
    Saved,
}

/// One VLAN of `show vlan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VlanRow {
    /// VLAN id.
    pub id: u16,
    /// Name: the topology network's, `default` for VLAN 1, else `VLAN0123`.
    pub name: String,
    /// Ports whose access VLAN it is.
    pub ports: Vec<String>,
}

/// Where a CLI session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Exec,
    Privileged,
    Config,
    Interface(String),
}

/// One request's CLI session on switch `device`.
pub(crate) struct Session<'a> {
    world: &'a SimWorld,
    device: &'a str,
    ports: &'a [String],
    /// Where the session is; NX-API starts privileged (its `cli` lines need no `enable`) and
    /// takes `interface` outside configuration mode, eAPI starts in exec mode.
    pub mode: Mode,
    strict: bool,
}

impl<'a> Session<'a> {
    /// A session on `device` whose ports are `ports`. `strict` sessions (eAPI) need `enable`
    /// before `configure`/`copy` and `configure` before `interface`.
    pub fn new(world: &'a SimWorld, device: &'a str, ports: &'a [String], strict: bool) -> Self {
        let mode = if strict { Mode::Exec } else { Mode::Privileged };
        Session {
            world,
            device,
            ports,
            mode,
            strict,
        }
    }

    /// The switch's name for `port` (case-insensitive), or `port` itself when it has none.
    fn canonical(&self, port: &str) -> String {
        self.ports
            .iter()
            .find(|p| p.eq_ignore_ascii_case(port))
            .cloned()
            .unwrap_or_else(|| port.to_string())
    }

    fn read(&self, batch: &mut Batch, port: &str) -> Option<u16> {
        let op = DeviceOp::GetPort {
            port: port.to_string(),
        };
        match batch.call(self.world, self.device, op)? {
            Reply::Vlan(vlan) => Some(vlan),
            other => {
                batch.fail(
                    CliFailure::Invalid,
                    format!("simulator bug: reply {other:?}"),
                );
                None
            }
        }
    }

    fn vlan_rows(&self, ports: &[(String, u16)]) -> Vec<VlanRow> {
        let site = self.world.site();
        let mut ids: Vec<u16> = std::iter::once(1)
            .chain(site.topology.networks.iter().map(|n| n.vlan))
            .chain(ports.iter().map(|(_, v)| *v))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let name = match site.topology.networks.iter().find(|n| n.vlan == id) {
                    Some(network) => network.name.clone(),
                    None if id == 1 => "default".to_string(),
                    None => format!("VLAN{id:04}"),
                };
                let ports = ports
                    .iter()
                    .filter(|(_, v)| *v == id)
                    .map(|(p, _)| p.clone())
                    .collect();
                VlanRow { id, name, ports }
            })
            .collect()
    }

    /// Every port with its VLAN, one device read each; `None` when a read failed.
    fn read_all(&self, batch: &mut Batch) -> Option<Vec<(String, u16)>> {
        let mut all = Vec::with_capacity(self.ports.len());
        for port in self.ports {
            all.push((port.clone(), self.read(batch, port)?));
        }
        Some(all)
    }

    /// Runs one CLI line; `json` says whether structured output was asked for.
    pub fn execute(&mut self, batch: &mut Batch, cmd: &str, json: bool) {
        let line = match parse_cli(cmd) {
            Ok(line) => line,
            Err(msg) => return batch.fail(CliFailure::Invalid, msg),
        };
        let enabled = self.mode != Mode::Exec;
        let configuring = matches!(self.mode, Mode::Config | Mode::Interface(_));
        let output = match line {
            Cli::Enable => {
                if self.mode == Mode::Exec {
                    self.mode = Mode::Privileged;
                }
                Output::Empty
            }
            Cli::Configure | Cli::Save if !enabled => {
                return batch.fail(
                    CliFailure::Invalid,
                    "% Invalid input (privileged mode required)",
                )
            }
            Cli::Configure => {
                self.mode = Mode::Config;
                Output::Empty
            }
            Cli::Exit => {
                self.mode = match &self.mode {
                    Mode::Interface(_) => Mode::Config,
                    Mode::Config | Mode::Privileged => Mode::Privileged,
                    Mode::Exec => Mode::Exec,
                };
                Output::Empty
            }
            Cli::End => {
                if configuring {
                    self.mode = Mode::Privileged;
                }
                Output::Empty
            }
            Cli::Interface(_) if self.strict && !configuring => {
                return batch.fail(
                    CliFailure::Invalid,
                    "% Invalid input (configuration mode required)",
                )
            }
            Cli::Interface(port) => {
                self.mode = Mode::Interface(self.canonical(&port));
                Output::Empty
            }
            Cli::ModeAccess | Cli::AccessVlan(_) if !matches!(self.mode, Mode::Interface(_)) => {
                return batch.fail(
                    CliFailure::Invalid,
                    "% Invalid input (interface configuration mode required)",
                )
            }
            Cli::ModeAccess => Output::Empty,
            Cli::AccessVlan(vlan) => {
                let Mode::Interface(port) = &self.mode else {
                    return;
                };
                let op = DeviceOp::SetPort {
                    port: port.clone(),
                    vlan,
                };
                if batch.call(self.world, self.device, op).is_none() {
                    return;
                }
                Output::Empty
            }
            Cli::ShowVersion => Output::Version(self.device.to_string()),
            Cli::ShowVlan { brief } => {
                let Some(ports) = self.read_all(batch) else {
                    return;
                };
                Output::Vlans {
                    brief,
                    vlans: self.vlan_rows(&ports),
                }
            }
            Cli::ShowSwitchport(port) => {
                let port = self.canonical(&port);
                let Some(vlan) = self.read(batch, &port) else {
                    return;
                };
                Output::Switchport { port, vlan }
            }
            Cli::ShowRunning { .. } if json => {
                return batch.fail(
                    CliFailure::NoJson,
                    "This command does not have structured output; ask for text",
                )
            }
            Cli::ShowRunning { interface, all } => {
                let ports = match interface {
                    Some(port) => {
                        let port = self.canonical(&port);
                        let Some(vlan) = self.read(batch, &port) else {
                            return;
                        };
                        vec![(port, vlan)]
                    }
                    None => match self.read_all(batch) {
                        Some(ports) => ports,
                        None => return,
                    },
                };
                Output::Running {
                    device: self.device.to_string(),
                    vlans: self.vlan_rows(&ports),
                    ports,
                    all,
                }
            }
            Cli::Save => {
                if batch
                    .call(self.world, self.device, DeviceOp::SaveConfig)
                    .is_none()
                {
                    return;
                }
                Output::Saved
            }
        };
        batch.results.push(output);
    }
}

/// The ports of switch `device`: those the site's physical NICs sit on, in name order.
pub(crate) fn switch_ports(world: &SimWorld, device: &str) -> Vec<String> {
    let mut ports: Vec<String> = world
        .site()
        .lservers
        .iter()
        .flat_map(|ls| &ls.nics)
        .filter_map(|nic| match &nic.location {
            NicLocation::Physical { switch, port } if switch == device => Some(port.clone()),
            _ => None,
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_lines_parse_in_both_vendors_spellings() {
        assert_eq!(
            parse_cli("interface Ethernet1/5"),
            Ok(Cli::Interface("Ethernet1/5".into()))
        );
        assert_eq!(
            parse_cli("int ethernet 1/5"),
            Ok(Cli::Interface("ethernet1/5".into()))
        );
        assert_eq!(
            parse_cli("switchport access vlan 910"),
            Ok(Cli::AccessVlan(910))
        );
        assert!(parse_cli("switchport access vlan 99999").is_err());
        assert!(parse_cli("switchport access vlan 0").is_err());
        assert!(parse_cli("switchport mode trunk").is_err());
        assert_eq!(
            parse_cli("show interfaces Ethernet5 switchport"),
            Ok(Cli::ShowSwitchport("Ethernet5".into()))
        );
        assert_eq!(parse_cli("copy run startup-config"), Ok(Cli::Save));
        assert_eq!(
            parse_cli("show running-config all"),
            Ok(Cli::ShowRunning {
                interface: None,
                all: true
            })
        );
        assert_eq!(
            parse_cli("show running-config interfaces Ethernet5"),
            Ok(Cli::ShowRunning {
                interface: Some("Ethernet5".into()),
                all: false
            })
        );
        assert!(parse_cli("reload").is_err());
        assert!(parse_cli("interface").is_err());
    }
}
