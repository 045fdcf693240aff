//! The wire face of the simulated world: protocol-level servers (wiremock) on 127.0.0.1 that
//! speak each vendor's format over the same device models as the sim face, each behind a TCP
//! fault proxy for the transport faults.
//!
//! A face's `Respond` handler turns the request into a [`crate::sim::DeviceOp`], calls
//! [`SimWorld::call_now`], and renders the [`WireCall`] with [`render`]: the vendor's body for
//! the result, held back by the call's delay, marked for the proxy when the transport fails.

pub mod avsender;
pub mod eapi;
pub mod epo;
pub mod jsonrpc;
pub mod nxapi;
pub mod proxy;
pub mod redfish;
pub mod restconf;
pub mod site;
pub mod smtp_sink;
pub mod vcenter;

use std::net::SocketAddr;
use std::sync::Arc;

use wiremock::{Mock, MockServer, ResponseTemplate};

use super::world::{Reply, WireCall};
use crate::adapters::DeviceError;
use crate::model::Credentials;
use proxy::{FaultProxy, FAULT_HEADER};

/// User and password the simulators accept when the topology sets none (`docs/formats/topology.md`).
pub const DEFAULT_USER: &str = "qlab";
/// See [`DEFAULT_USER`].
pub const DEFAULT_PASSWORD: &str = "qlab";

/// The spec of `device` among `specs` (`is_it` says which one it is), or an `InvalidInput`
/// error saying `device` is not `what`: a face for the wrong device would serve a model that
/// does not exist.
pub(crate) fn find_device<'a, T>(
    specs: &'a [T],
    is_it: impl Fn(&T) -> bool,
    device: &str,
    what: &str,
) -> std::io::Result<&'a T> {
    specs.iter().find(|s| is_it(s)).ok_or_else(|| {
        let text = format!("{device} is not {what}");
        std::io::Error::new(std::io::ErrorKind::InvalidInput, text)
    })
}

/// The credentials a simulated device accepts.
pub fn accepted_credentials(configured: Option<&Credentials>) -> Credentials {
    configured.cloned().unwrap_or_else(|| Credentials {
        user: DEFAULT_USER.into(),
        password: DEFAULT_PASSWORD.into(),
    })
}

/// One running protocol simulator: the wiremock server and the fault proxy clients talk to.
pub struct WireServer {
    /// Kept so the server lives as long as its proxy.
    _mock: MockServer,
    proxy: FaultProxy,
    tls: bool,
}

impl WireServer {
    /// Starts a wiremock server with `mocks` and a fault proxy in front of it, both on
    /// 127.0.0.1 ephemeral ports.
    pub async fn start(mocks: Vec<Mock>) -> std::io::Result<WireServer> {
        // No request log: a long-running `qlab sim serve` must not grow with every call.
        let mock = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        for m in mocks {
            m.mount(&mock).await;
        }
        let proxy = FaultProxy::start(*mock.address()).await?;
        Ok(WireServer {
            _mock: mock,
            proxy,
            tls: false,
        })
    }

    /// Replaces the plain proxy by one that terminates TLS with `config` (on a new port).
    pub async fn serve_tls(&mut self, config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
        self.proxy = FaultProxy::start_tls(*self._mock.address(), config).await?;
        self.tls = true;
        Ok(())
    }

    /// The base URL clients use (the proxy's).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.proxy.addr())
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }
}

/// Renders a call: `ok` builds the vendor's success reply, `error` its error reply; the delay
/// and the transport-fault marker are added here so every face behaves alike.
pub fn render(
    call: WireCall,
    ok: impl FnOnce(Reply) -> ResponseTemplate,
    error: impl FnOnce(&DeviceError) -> ResponseTemplate,
) -> ResponseTemplate {
    let template = match &call.transport {
        // The proxy drops or holds this reply; its body does not matter.
        Some(fault) => ResponseTemplate::new(200).insert_header(FAULT_HEADER, fault.as_str()),
        None => match call.result {
            Ok(reply) => ok(reply),
            Err(e) => error(&e),
        },
    };
    if call.delay.is_zero() {
        template
    } else {
        template.set_delay(call.delay)
    }
}
