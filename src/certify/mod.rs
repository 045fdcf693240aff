//! `qlab certify`: vendor certification of an adapter and its device, in tiers.
//!
//! - Tier 1, function: login, read, write, verify, idempotent rewrite, save and batch when
//!   claimed, limits (invalid VLAN, unknown port or VM rejected), resources restored.
//! - Tier 2, failure classification: the certification proxy ([`proxy`]) in front of the target
//!   injects connection-level faults (refused, 503, 4xx, reset after the request, blackhole,
//!   expired session); on simulated targets the device model also plays the semantic faults
//!   (apply-then-error, accept-without-apply, stale read, busy).
//! - Tier 3, the engine with this adapter: the family's library scenarios in wire mode, their
//!   time to contain, and an outbreak of N NICs against the makespan bound ([`tier3`]).
//!
//! One job per file: [`product`] (PRODUCT.toml), [`checks`] (the catalogue), [`switch`],
//! [`hypervisor`], [`bmc`], [`av`] (the suites), [`target`] (sim or real target, adapter factory),
//! [`proxy`], [`tier3`], [`report`], [`bundle`], [`verify`], [`diff`], [`cli`].
//!
//! Decisions where the contract is silent (also in `docs/certification.md`):
//! - A check runs even when a deviation excuses it; the deviation excuses a failure, it does not
//!   hide the result. A tier reached only thanks to deviations is "tier-N with deviations".
//! - The certified tier is the highest tier up to `--tier` whose required checks (and those of
//!   every lower tier) all passed or are excused.
//! - Writes go only to `[resources]`; each suite reads them first and restores them last (the
//!   restore is a check of its own), whatever failed in between.
//! - The default call timeout is 2 s (`--call-timeout`): the blackhole check waits that long.
//! - Tier 3 needs the built-in adapter and a simulated target in this build: the wire runner
//!   builds the engine's adapters from its config and starts the simulators itself.
//! - The AV family certifies the engine's own intake (`builtin:intake`) for a product's
//!   transport and format: the suite ([`av`]) runs the daemon in-process on a small site of its
//!   own and plays the AV server itself; see its module docs for its decisions.

pub mod av;
pub mod bmc;
pub mod bundle;
pub mod checks;
pub mod cli;
pub mod diff;
pub mod hypervisor;
pub mod lever;
pub mod product;
pub mod proxy;
pub mod report;
pub mod switch;
pub mod target;
pub mod tier3;
pub mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::adapters::{DeviceError, DeviceResult, OutcomeClass};
use checks::CheckDef;
use product::Product;
use proxy::{CertProxy, Transcript};
use target::{AdapterFactory, AdapterSource, Device, Endpoint, Target};

/// An adapter family.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Hypervisor managers (vCenter).
    Hypervisor,
    /// Switches (NX-API, eAPI, RESTCONF).
    Switch,
    /// BMCs (Redfish).
    Bmc,
    /// AV feeds.
    Av,
}

impl Family {
    /// The spelling in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Hypervisor => "hypervisor",
            Family::Switch => "switch",
            Family::Bmc => "bmc",
            Family::Av => "av",
        }
    }

    /// The check id prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Hypervisor => "HV",
            Family::Switch => "SW",
            Family::Bmc => "BMC",
            Family::Av => "AV",
        }
    }
}

/// Why `qlab certify` could not do its job.
#[derive(Debug)]
pub enum CertifyError {
    /// Bad input (files, flags): exit 2.
    Input(String),
    /// The run could not be set up (simulator, proxy, output files): exit 2 as well, since
    /// nothing was certified.
    Setup(String),
}

impl fmt::Display for CertifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertifyError::Input(m) | CertifyError::Setup(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CertifyError {}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// It held.
    Passed,
    /// It did not.
    Failed,
    /// It was not run (not claimed, not applicable, tier not asked).
    Skipped,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// Stable id.
    pub id: String,
    /// Tier.
    pub tier: u8,
    /// Title.
    pub title: String,
    /// The rule it protects.
    pub rule: String,
    /// Whether the claimed tier needs it for this product and target.
    pub required: bool,
    /// Outcome.
    pub status: CheckStatus,
    /// What was seen.
    pub detail: String,
    /// The declared deviation that excuses it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deviation: Option<String>,
    /// Wall time.
    pub duration_ms: u64,
}

/// What `qlab certify` was asked to do.
#[derive(Clone)]
pub struct Options {
    /// Family under test.
    pub family: Family,
    /// The product file's path (for the bundle) and content.
    pub product_file: PathBuf,
    /// Parsed product.
    pub product: Product,
    /// PRODUCT.toml as written.
    pub product_source: String,
    /// `None`: the family's simulator; else a real target.
    pub real: Option<RealTarget>,
    /// The adapter under test.
    pub adapter: AdapterSource,
    /// Highest tier to run.
    pub tier: u8,
    /// Every device call is cut here.
    pub call_timeout: Duration,
    /// Tier 3: the scenario library folder.
    pub library: PathBuf,
    /// Tier 3: NICs in the outbreak.
    pub outbreak_nics: usize,
    /// Tier 3: wire time scale.
    pub time_scale: f64,
}

impl Options {
    /// Certifying the product at `file` up to `tier` against the simulator of its protocol with
    /// the built-in adapter, with the command line's defaults.
    pub fn sim(file: &std::path::Path, tier: u8) -> Result<Options, CertifyError> {
        let (product, source) =
            product::load_product(file).map_err(|e| CertifyError::Input(e.to_string()))?;
        let adapter = if product.family == Family::Av {
            AdapterSource::Intake
        } else {
            let kind = target::BuiltinKind::parse(&product.protocol).ok_or_else(|| {
                CertifyError::Input(format!(
                    "{}: protocol {:?} is not built in",
                    file.display(),
                    product.protocol
                ))
            })?;
            AdapterSource::Builtin(kind)
        };
        Ok(Options {
            family: product.family,
            product_file: file.to_path_buf(),
            product,
            product_source: source,
            real: None,
            adapter,
            tier,
            call_timeout: Duration::from_secs(2),
            library: PathBuf::from("scenarios"),
            outbreak_nics: 40,
            time_scale: 0.25,
        })
    }
}

/// A real target's endpoint.
#[derive(Clone)]
pub struct RealTarget {
    /// Base URL.
    pub url: String,
    /// User.
    pub user: String,
    /// Password (from `--password-env`).
    pub password: String,
    /// CA bundle (PEM) for the target's certificate.
    pub ca_pem: Option<Vec<u8>>,
}

/// What a run produced.
pub struct Outcome {
    /// The report.
    pub report: report::CertifyReport,
    /// The transcript.
    pub transcript: Transcript,
    /// Device truth of the resources at the end, on a simulated target (tests compare it with
    /// the truth at the start).
    pub sim_truth_before: BTreeMap<String, String>,
    /// See [`Outcome::sim_truth_before`].
    pub sim_truth_after: BTreeMap<String, String>,
}

/// Runs the suites with the adapter `options.adapter` names.
pub fn run(options: &Options) -> Result<Outcome, CertifyError> {
    let factory = target::factory(&options.adapter, options.family)?;
    run_with(options, factory)
}

/// Runs the suites with an adapter factory (tests pass deliberately wrong adapters).
pub fn run_with(options: &Options, factory: AdapterFactory) -> Result<Outcome, CertifyError> {
    run_inner(options, factory, &|t| t)
}

/// Runs the AV suite on its site rewritten by `edit` (tests break the deployment on purpose).
pub fn run_av_edited(options: &Options, edit: &av::SiteEdit) -> Result<Outcome, CertifyError> {
    let factory = target::factory(&options.adapter, options.family)?;
    run_inner(options, factory, edit)
}

fn run_inner(
    options: &Options,
    factory: AdapterFactory,
    edit: &av::SiteEdit,
) -> Result<Outcome, CertifyError> {
    if options.product.family != options.family {
        return Err(CertifyError::Input(format!(
            "{}: family = {:?} but --family {}",
            options.product_file.display(),
            options.product.family.as_str(),
            options.family.as_str()
        )));
    }
    if !(1..=3).contains(&options.tier) {
        return Err(CertifyError::Input(format!(
            "--tier {}: use 1, 2 or 3",
            options.tier
        )));
    }
    if options.family == Family::Av {
        let started_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let (results, transcript) = av::run_edited(options, factory, edit)?;
        return Ok(outcome(
            options,
            None,
            started_at,
            results,
            transcript,
            (BTreeMap::new(), BTreeMap::new()),
        ));
    }
    let kind = target::BuiltinKind::parse(&options.product.protocol);
    if options.real.is_none() {
        match kind {
            Some(k) if k.family() == options.family => {}
            _ => {
                return Err(CertifyError::Input(format!(
                    "{}: protocol {:?} has no built-in {} simulator (--target sim needs one of the built-in protocols of the family)",
                    options.product_file.display(),
                    options.product.protocol,
                    options.family.as_str()
                )))
            }
        }
    }
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let runtime = runtime()?;
    let transcript = Transcript::default();
    let (results, before, after) = runtime.block_on(async {
        let target = match &options.real {
            None => {
                target::start_sim(&options.product, kind.expect("checked above"), Vec::new())
                    .await?
            }
            Some(real) => Target {
                url: real.url.clone(),
                user: real.user.clone(),
                password: real.password.clone(),
                ca_pem: real.ca_pem.clone(),
                sim: None,
            },
        };
        let before = target
            .sim
            .as_ref()
            .map(|s| s.truth(&options.product))
            .unwrap_or_default();
        let proxy = target
            .proxy("target", &transcript)
            .await
            .map_err(CertifyError::Setup)?;
        let mut ctx = Ctx {
            options,
            factory: factory.clone(),
            target: &target,
            proxy,
            transcript: transcript.clone(),
            results: Vec::new(),
        };
        match options.family {
            Family::Switch => switch::run(&mut ctx).await,
            Family::Hypervisor => hypervisor::run(&mut ctx).await,
            Family::Bmc => bmc::run(&mut ctx).await,
            // The AV suite ran above, on its own intake.
            Family::Av => {}
        }
        let after = target
            .sim
            .as_ref()
            .map(|s| s.truth(&options.product))
            .unwrap_or_default();
        Ok::<_, CertifyError>((ctx.results, before, after))
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(outcome(
        options,
        kind,
        started_at,
        results,
        transcript,
        (before, after),
    ))
}

/// The run's outcome from the tier 1-2 results: tier 3 run (or recorded as not asked), the
/// checks put in catalogue order, the report built.
fn outcome(
    options: &Options,
    kind: Option<target::BuiltinKind>,
    started_at: String,
    results: Vec<CheckResult>,
    transcript: Transcript,
    (before, after): (BTreeMap<String, String>, BTreeMap<String, String>),
) -> Outcome {
    let mut results = results;
    if options.tier >= 3 {
        results.extend(tier3::run(options, kind));
    } else {
        for def in checks::catalogue(options.family)
            .iter()
            .filter(|c| c.tier == 3)
        {
            results.push(CheckResult {
                id: def.id.into(),
                tier: 3,
                title: def.title.into(),
                rule: def.rule.into(),
                required: false,
                status: CheckStatus::Skipped,
                detail: "tier 3 not asked".into(),
                deviation: options.product.deviation_for(def.id).map(str::to_string),
                duration_ms: 0,
            });
        }
    }
    // Catalogue order, whatever order the suites ran them in (restores run last).
    let order = |id: &str| {
        checks::catalogue(options.family)
            .iter()
            .position(|c| c.id == id)
            .unwrap_or(usize::MAX)
    };
    results.sort_by_key(|r| order(&r.id));
    let report = report::CertifyReport::build(options, started_at, results);
    Outcome {
        report,
        transcript,
        sim_truth_before: before,
        sim_truth_after: after,
    }
}

/// The runtime a certification runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, CertifyError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CertifyError::Setup(format!("cannot start the runtime: {e}")))
}

/// What the suites share while they run.
pub struct Ctx<'a> {
    /// The run's options.
    pub options: &'a Options,
    /// Builds the adapter under test.
    pub factory: AdapterFactory,
    /// The target.
    pub target: &'a Target,
    /// The proxy in front of the target.
    pub proxy: CertProxy,
    /// Every exchange.
    pub transcript: Transcript,
    /// Results so far, in catalogue order.
    pub results: Vec<CheckResult>,
}

impl Ctx<'_> {
    /// The target's endpoint through the proxy.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint_at(&self.proxy.url())
    }

    /// The target's credentials at another URL.
    pub fn endpoint_at(&self, url: &str) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            user: self.target.user.clone(),
            password: self.target.password.clone(),
            system: self.options.product.resources.system.clone(),
        }
    }

    /// The adapter under test at `endpoint`.
    pub fn adapter_at(&self, endpoint: &Endpoint) -> Result<Device, String> {
        (self.factory)(endpoint, self.options.call_timeout)
            .map_err(|e| format!("cannot build the adapter: {e}"))
    }

    /// Whether the target is a simulator.
    pub fn sim(&self) -> bool {
        self.target.sim.is_some()
    }

    fn def(&self, id: &str) -> &'static CheckDef {
        checks::find(self.options.family, id).unwrap_or_else(|| {
            // The suites name only catalogue ids; a test keeps them in step.
            panic!("check {id} is not in the catalogue")
        })
    }

    fn required(&self, def: &CheckDef) -> bool {
        def.tier <= self.options.tier && checks::required(def, &self.options.product, self.sim())
    }

    /// Whether check `id` should run; records it as skipped (with the reason) when not.
    pub fn should_run(&mut self, id: &str) -> bool {
        let def = self.def(id);
        if def.tier > self.options.tier {
            self.push(
                def,
                CheckStatus::Skipped,
                format!("tier {} not asked", def.tier),
                0,
            );
            return false;
        }
        if !checks::required(def, &self.options.product, self.sim()) {
            let why = def.requirement.as_str().to_string();
            self.push(def, CheckStatus::Skipped, format!("not required: {why}"), 0);
            return false;
        }
        self.transcript.set_check(id);
        true
    }

    /// Records the outcome of check `id`, begun at `started`.
    pub fn finish(&mut self, id: &str, started: Instant, outcome: Result<String, String>) {
        let def = self.def(id);
        let ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(detail) => self.push(def, CheckStatus::Passed, detail, ms),
            Err(detail) => self.push(def, CheckStatus::Failed, detail, ms),
        }
        self.transcript.set_check("");
    }

    fn push(&mut self, def: &CheckDef, status: CheckStatus, detail: String, ms: u64) {
        let required = self.required(def);
        self.results.push(CheckResult {
            id: def.id.to_string(),
            tier: def.tier,
            title: def.title.to_string(),
            rule: def.rule.to_string(),
            required,
            status,
            detail,
            deviation: self
                .options
                .product
                .deviation_for(def.id)
                .map(str::to_string),
            duration_ms: ms,
        });
    }
}

/// Runs check `id` of `ctx` when it should run ([`Ctx::should_run`]): evaluates `outcome`, an
/// expression that may `.await`, only then, and records it with its duration ([`Ctx::finish`]).
macro_rules! check {
    ($ctx:expr, $id:expr, $outcome:expr) => {{
        let id: &str = &$id;
        if $ctx.should_run(id) {
            let started = std::time::Instant::now();
            let outcome = $outcome;
            $ctx.finish(id, started, outcome);
        }
    }};
}
pub(crate) use check;

/// Fails every tier 1 and 2 check with `why` (the adapter could not even be built).
pub fn fail_all(ctx: &mut Ctx<'_>, why: &str) {
    for def in checks::catalogue(ctx.options.family) {
        if def.tier <= 2 && ctx.should_run(def.id) {
            ctx.finish(def.id, Instant::now(), Err(why.to_string()));
        }
    }
}

/// `Ok` when `result` failed with `class`, else why not.
pub fn expect_class<T: fmt::Debug>(
    result: &DeviceResult<T>,
    class: OutcomeClass,
) -> Result<String, String> {
    match result {
        Err(e) if e.class == class => Ok(format!("{}: {}", class.as_str(), e.detail)),
        Err(e) => Err(format!("expected {}, got {e}", class.as_str())),
        Ok(v) => Err(format!("expected {}, got ok ({v:?})", class.as_str())),
    }
}

/// `Ok(v)` or the error as text.
pub fn ok<T>(what: &str, result: DeviceResult<T>) -> Result<T, String> {
    result.map_err(|e: DeviceError| format!("{what}: {e}"))
}

/// A 127.0.0.1 URL nothing listens on: "connection refused" in front of the target.
pub async fn refused_url() -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    drop(listener);
    Ok(format!("http://{addr}"))
}

/// Whether a call that took `took` ended because its `timeout` ran out: from 90% of it (timer
/// granularity) to 2 s past it (a loaded machine).
pub fn ended_by_timeout(took: Duration, timeout: Duration) -> bool {
    timeout.mul_f64(0.9) <= took && took <= timeout + Duration::from_secs(2)
}

/// Checks a blackholed call: `unknown`, and only once the call timeout ran out.
pub fn blackhole_verdict<T: fmt::Debug>(
    result: &DeviceResult<T>,
    took: Duration,
    timeout: Duration,
) -> Result<String, String> {
    let class = expect_class(result, OutcomeClass::Unknown)?;
    if !ended_by_timeout(took, timeout) {
        return Err(format!(
            "unknown after {} ms; the call timeout is {} ms",
            took.as_millis(),
            timeout.as_millis()
        ));
    }
    Ok(format!("{class} after {} ms", took.as_millis()))
}

/// A fresh simulator of the target's protocol whose plan holds one fault (`effect` on the first
/// `call`), with its own proxy recording into the run's transcript, and the adapter on it.
pub struct Faulted {
    /// The simulator.
    pub target: Target,
    /// Its proxy.
    pub proxy: CertProxy,
    /// The adapter under test, through the proxy.
    pub device: Device,
}

impl Ctx<'_> {
    /// Starts a [`Faulted`] simulator; only on simulated targets.
    pub async fn faulted(
        &self,
        call: crate::sim::faults::CallKind,
        effect: crate::sim::faults::FaultEffect,
    ) -> Result<Faulted, String> {
        let kind = self
            .target
            .sim
            .as_ref()
            .map(|s| s.kind)
            .ok_or("not a simulated target")?;
        let fault = crate::sim::faults::FaultSpec {
            device: target::SIM_DEVICE.into(),
            call: Some(call),
            effect,
            times: Some(1),
            from: None,
            until: None,
            matcher: Default::default(),
            delay: None,
            probability: None,
            to_network: None,
        };
        let target = target::start_sim(&self.options.product, kind, vec![fault])
            .await
            .map_err(|e| e.to_string())?;
        let proxy = target
            .proxy(&format!("sim:{}", effect.as_str()), &self.transcript)
            .await?;
        let device = self.adapter_at(&self.endpoint_at(&proxy.url()))?;
        Ok(Faulted {
            target,
            proxy,
            device,
        })
    }
}
