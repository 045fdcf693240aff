//! `qlab certify diff`: the same probe sequence against the family's simulator and a target,
//! and, field by field, where their replies differ.
//!
//! The probes are read-only, or rewrite what is already there: switch: read the first resource
//! port, write its VLAN back, read an absent port; hypervisor: log in, read the first resource
//! vNIC, write its backing back, read an absent VM; BMC: one reset (the only call a BMC adapter
//! has: the product's `[resources] system` is the one the vendor allows to reset).
//!
//! Replies are compared exchange by exchange (in order): method and path (numbers and ids in
//! paths are not compared), status, then every leaf of the JSON body by its path
//! (`/a/0/b`). A field present on one side only, or of another JSON type, is a *shape*
//! difference; a different value is a *value* difference (informational: the devices' state
//! differs). Volatile fields are ignored: any key containing `date`, `time`, `etag`, `token`,
//! `session` or `uuid`, and the keys `id`, `@odata.id`, `@odata.context` and `version`
//! (case-insensitive). Exit 1 when a shape differs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::product::Product;
use super::proxy::{Exchange, Transcript};
use super::target::{start_sim, AdapterFactory, BuiltinKind, Device, Endpoint, Target};
use super::CertifyError;

/// Key fragments whose fields are not compared (case-insensitive).
pub const VOLATILE: &[&str] = &["date", "time", "etag", "token", "session", "uuid"];

/// Keys not compared when they are the whole key (case-insensitive): ids of requests, objects
/// and documents, which differ between any two devices. `accessVlanId` is compared.
pub const VOLATILE_KEYS: &[&str] = &["id", "@odata.id", "version", "@odata.context"];

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Exchange number (1-based).
    pub exchange: usize,
    /// `shape` or `value`.
    pub kind: &'static str,
    /// The field's JSON path, or `status` / `request`.
    pub field: String,
    /// What the simulator said.
    pub sim: String,
    /// What the target said.
    pub target: String,
}

/// All differences between the two runs.
#[derive(Debug, Clone, Default)]
pub struct DiffReport {
    /// Every difference, in exchange order.
    pub differences: Vec<Difference>,
    /// Exchanges with the simulator.
    pub sim_exchanges: usize,
    /// Exchanges with the target.
    pub target_exchanges: usize,
}

impl DiffReport {
    /// Whether some reply has another shape.
    pub fn shape_differs(&self) -> bool {
        self.differences.iter().any(|d| d.kind == "shape")
    }

    /// As text, one line per difference.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} exchanges with the simulator, {} with the target\n",
            self.sim_exchanges, self.target_exchanges
        );
        for d in &self.differences {
            out.push_str(&format!(
                "#{} {} {}: simulator {} | target {}\n",
                d.exchange, d.kind, d.field, d.sim, d.target
            ));
        }
        if self.differences.is_empty() {
            out.push_str("no differences\n");
        }
        out
    }
}

fn volatile(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    VOLATILE.iter().any(|v| k.contains(v)) || VOLATILE_KEYS.contains(&k.as_str())
}

fn leaves(value: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if !volatile(k) {
                    leaves(v, format!("{path}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{path}/{i}"), out);
            }
        }
        other => {
            out.insert(path, other.clone());
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shape_of_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.chars().any(|c| c.is_ascii_digit()) {
                "*"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Compares two transcripts.
pub fn compare(sim: &[Exchange], target: &[Exchange]) -> DiffReport {
    let mut report = DiffReport {
        sim_exchanges: sim.len(),
        target_exchanges: target.len(),
        ..DiffReport::default()
    };
    for (i, (s, t)) in sim.iter().zip(target).enumerate() {
        let n = i + 1;
        let mut push = |kind, field: String, a: String, b: String| {
            report.differences.push(Difference {
                exchange: n,
                kind,
                field,
                sim: a,
                target: b,
            })
        };
        let (rs, rt) = (
            format!("{} {}", s.method, shape_of_path(&s.path)),
            format!("{} {}", t.method, shape_of_path(&t.path)),
        );
        if rs != rt {
            push("shape", "request".into(), rs, rt);
            continue;
        }
        if s.status != t.status {
            push(
                "shape",
                "status".into(),
                format!("{:?}", s.status),
                format!("{:?}", t.status),
            );
        }
        let parse = |text: &str| serde_json::from_str::<Value>(text).ok();
        let (Some(a), Some(b)) = (parse(&s.reply), parse(&t.reply)) else {
            continue;
        };
        let (mut la, mut lb) = (BTreeMap::new(), BTreeMap::new());
        leaves(&a, String::new(), &mut la);
        leaves(&b, String::new(), &mut lb);
        for (path, va) in &la {
            match lb.get(path) {
                None => push("shape", path.clone(), va.to_string(), "(absent)".into()),
                Some(vb) if type_name(va) != type_name(vb) => {
                    push("shape", path.clone(), va.to_string(), vb.to_string())
                }
                Some(vb) if va != vb => push("value", path.clone(), va.to_string(), vb.to_string()),
                Some(_) => {}
            }
        }
        for (path, vb) in &lb {
            if !la.contains_key(path) {
                push("shape", path.clone(), "(absent)".into(), vb.to_string());
            }
        }
    }
    if sim.len() != target.len() {
        report.differences.push(Difference {
            exchange: sim.len().min(target.len()) + 1,
            kind: "shape",
            field: "exchanges".into(),
            sim: sim.len().to_string(),
            target: target.len().to_string(),
        });
    }
    report
}

async fn probe(device: &Device, product: &Product) {
    let r = &product.resources;
    match device {
        Device::Switch(sw) => {
            if let Some(port) = r.ports.first() {
                if let Ok(v) = sw.get_port(port).await {
                    let _ = sw.set_port(port, v).await;
                }
            }
            let _ = sw.get_port(r.absent_port()).await;
        }
        Device::Hypervisor(hv) => {
            let _ = hv.login().await;
            if let Some(v) = r.vms.first() {
                if let Ok(pg) = hv.get_nic(&v.vm, &v.nic).await {
                    let _ = hv.set_nic(&v.vm, &v.nic, &pg).await;
                }
                let _ = hv.get_nic(r.absent_vm(), &v.nic).await;
            }
        }
        Device::Bmc(b) => {
            let _ = b.reset().await;
        }
    }
}

async fn record(
    target: &Target,
    factory: &AdapterFactory,
    product: &Product,
    timeout: Duration,
) -> Result<Vec<Exchange>, CertifyError> {
    let transcript = Transcript::default();
    let proxy = target
        .proxy("target", &transcript)
        .await
        .map_err(CertifyError::Setup)?;
    let endpoint = Endpoint {
        url: proxy.url(),
        user: target.user.clone(),
        password: target.password.clone(),
        system: product.resources.system.clone(),
    };
    let device = factory(&endpoint, timeout)
        .map_err(|e| CertifyError::Setup(format!("cannot build the adapter: {e}")))?;
    probe(&device, product).await;
    Ok(transcript.exchanges())
}

/// Runs the probes against the simulator of `kind` and against `target`, with the adapter of
/// `factory`.
pub fn run_diff(
    product: &Product,
    kind: BuiltinKind,
    factory: AdapterFactory,
    target: super::RealTarget,
    timeout: Duration,
) -> Result<DiffReport, CertifyError> {
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let sim = start_sim(product, kind, Vec::new()).await?;
        let sim_side = record(&sim, &factory, product, timeout).await?;
        let real = Target {
            url: target.url.clone(),
            user: target.user.clone(),
            password: target.password.clone(),
            ca_pem: target.ca_pem.clone(),
            sim: None,
        };
        let target_side = record(&real, &factory, product, timeout).await?;
        Ok::<_, CertifyError>(compare(&sim_side, &target_side))
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(reply: &str) -> Exchange {
        Exchange {
            seq: 1,
            check: String::new(),
            via: String::new(),
            method: "GET".into(),
            path: "/restconf/data/x=1".into(),
            request: String::new(),
            status: Some(200),
            reply: reply.into(),
            fault: None,
            ms: 0,
        }
    }

    #[test]
    fn a_renamed_field_is_a_shape_difference_and_volatile_fields_are_ignored() {
        let a = ex(r#"{"config":{"access-vlan":110},"etag":"1"}"#);
        let b = ex(r#"{"config":{"accessVlan":110},"etag":"2"}"#);
        let d = compare(std::slice::from_ref(&a), &[b]);
        let fields: Vec<&str> = d.differences.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["/config/access-vlan", "/config/accessVlan"]);
        assert!(d.shape_differs());
        let c = ex(r#"{"config":{"access-vlan":910},"etag":"9"}"#);
        let d = compare(&[a], &[c]);
        assert!(!d.shape_differs(), "{}", d.render());
    }
}
