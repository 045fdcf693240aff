//! The `qlab certify` command line: parse, call the library, print, map to exit codes
//! (0 certified at the asked tier / bundle accepted / no shape difference; 1 not; 2 bad input).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::product::load_product;
use super::target::{factory, AdapterSource, BuiltinKind};
use super::{CertifyError, Family, Options, RealTarget};

/// `qlab certify`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CertifyArgs {
    /// `verify` or `diff`; without one, certifies.
    #[command(subcommand)]
    pub command: Option<CertifyCommand>,
    /// Certification options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `qlab certify verify|diff`.
#[derive(Debug, clap::Subcommand)]
pub enum CertifyCommand {
    /// Checks an evidence bundle: digests, required checks of the claimed tier, declared
    /// deviations, tool version; prints labels; exit 0 accepted, 1 refused.
    Verify {
        /// The bundle (.tar.gz).
        bundle: PathBuf,
    },
    /// Runs the same probes against the family's simulator and a target; prints where the
    /// replies differ, field by field; exit 1 when a reply's shape differs.
    Diff(DiffArgs),
}

/// Where the target is and who the adapter is.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The device's base URL (a real target).
    #[arg(long)]
    pub url: Option<String>,
    /// User on the device.
    #[arg(long)]
    pub user: Option<String>,
    /// Environment variable holding the password.
    #[arg(long)]
    pub password_env: Option<String>,
    /// CA bundle (PEM) that signed the device's certificate (default: the web roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The adapter under test: builtin:KIND (default: builtin:<PRODUCT.toml protocol>).
    #[arg(long)]
    pub adapter: Option<String>,
    /// An out-of-process adapter: the command and its arguments (last on the line).
    #[arg(long, num_args = 1.., allow_hyphen_values = true, conflicts_with = "adapter")]
    pub plugin: Option<Vec<String>>,
    /// Every device call is cut after this long.
    #[arg(long, default_value = "2s")]
    pub call_timeout: String,
}

/// `qlab certify --family F --product FILE ...`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// hypervisor, switch, bmc or av.
    #[arg(long, value_enum)]
    pub family: Option<Family>,
    /// The product's PRODUCT.toml.
    #[arg(long)]
    pub product: Option<PathBuf>,
    /// `sim`: the family's built-in simulator (instead of --url).
    #[arg(long)]
    pub target: Option<String>,
    /// Target and adapter.
    #[command(flatten)]
    pub endpoint: TargetArgs,
    /// Highest tier to run (1 function, 2 failure classification, 3 the engine).
    #[arg(long, default_value_t = 3)]
    pub tier: u8,
    /// Also write an evidence bundle here (.tar.gz).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Where report.json, junit.xml, summary.md and transcript.jsonl go.
    #[arg(long, default_value = "reports/certify")]
    pub report_dir: PathBuf,
    /// Tier 3: the scenario library.
    #[arg(long, default_value = "scenarios")]
    pub library: PathBuf,
    /// Tier 3: NICs in the outbreak.
    #[arg(long, default_value_t = 40)]
    pub outbreak: usize,
    /// Tier 3: wire mode's time scale.
    #[arg(long, default_value_t = 0.25)]
    pub time_scale: f64,
}

/// `qlab certify diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// hypervisor, switch or bmc (AV feeds have no device replies to compare).
    #[arg(long, value_enum)]
    pub family: Family,
    /// The product's PRODUCT.toml (what may be probed).
    #[arg(long)]
    pub product: PathBuf,
    /// Target and adapter (--url is required).
    #[command(flatten)]
    pub endpoint: TargetArgs,
}

/// Runs `qlab certify ...`; returns the exit status.
pub fn main(args: CertifyArgs) -> u8 {
    let result = match args.command {
        Some(CertifyCommand::Verify { bundle }) => Ok(verify(&bundle)),
        Some(CertifyCommand::Diff(d)) => diff(d),
        None => certify(args.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn verify(bundle: &Path) -> u8 {
    let v = super::verify::verify(bundle);
    for r in &v.rejections {
        println!("rejected: {r}");
    }
    println!("labels: {}", v.labels.join(" "));
    if v.accepted() {
        println!("accepted: {}", bundle.display());
        0
    } else {
        1
    }
}

fn input(message: impl Into<String>) -> CertifyError {
    CertifyError::Input(message.into())
}

fn real_target(e: &TargetArgs) -> Result<Option<RealTarget>, CertifyError> {
    let Some(url) = &e.url else {
        return Ok(None);
    };
    let user = e.user.clone().ok_or_else(|| input("--url needs --user"))?;
    let password = match &e.password_env {
        Some(var) => std::env::var(var)
            .map_err(|_| input(format!("--password-env {var}: the variable is not set")))?,
        None => String::new(),
    };
    let ca_pem = match &e.ca_file {
        Some(f) => Some(std::fs::read(f).map_err(|err| input(format!("{}: {err}", f.display())))?),
        None => None,
    };
    Ok(Some(RealTarget {
        url: url.clone(),
        user,
        password,
        ca_pem,
    }))
}

fn adapter_source(e: &TargetArgs, protocol: &str) -> Result<AdapterSource, CertifyError> {
    if let Some(cmd) = &e.plugin {
        return Ok(AdapterSource::Plugin(cmd.clone()));
    }
    match &e.adapter {
        Some(text) => AdapterSource::parse_builtin(text).map_err(CertifyError::Input),
        None if super::product::AV_PROTOCOLS.contains(&protocol) => Ok(AdapterSource::Intake),
        None => BuiltinKind::parse(protocol)
            .map(AdapterSource::Builtin)
            .ok_or_else(|| {
                input(format!(
                    "protocol {protocol:?} is not built in: give --adapter builtin:KIND or --plugin CMD..."
                ))
            }),
    }
}

fn call_timeout(text: &str) -> Result<Duration, CertifyError> {
    let d = humantime::parse_duration(text)
        .map_err(|e| input(format!("--call-timeout {text:?}: {e}")))?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(300) {
        return Err(input(format!("--call-timeout {text:?}: use 100ms to 300s")));
    }
    Ok(d)
}

fn certify(a: RunArgs) -> Result<u8, CertifyError> {
    let family = a
        .family
        .ok_or_else(|| input("give --family (or `verify` / `diff`)"))?;
    let product_file = a
        .product
        .ok_or_else(|| input("give --product PRODUCT.toml"))?;
    let (product, source) = load_product(&product_file).map_err(|e| input(e.to_string()))?;
    let real = real_target(&a.endpoint)?;
    match (&a.target, &real) {
        (Some(t), None) if t == "sim" => {}
        (Some(t), _) if t != "sim" => {
            return Err(input(format!(
                "--target {t:?}: only `sim`; a real target is --url"
            )))
        }
        (Some(_), Some(_)) => return Err(input("--target sim and --url exclude each other")),
        (None, None) => return Err(input("give --target sim or --url URL")),
        _ => {}
    }
    if !(a.time_scale > 0.0 && a.time_scale <= 1.0) {
        return Err(input(format!(
            "--time-scale {}: must be in (0, 1]",
            a.time_scale
        )));
    }
    if a.outbreak == 0 || a.outbreak > 2000 {
        return Err(input(format!("--outbreak {}: use 1 to 2000", a.outbreak)));
    }
    let adapter = adapter_source(&a.endpoint, &product.protocol)?;
    let options = Options {
        family,
        product_file: product_file.clone(),
        product,
        product_source: source,
        real,
        adapter,
        tier: a.tier,
        call_timeout: call_timeout(&a.endpoint.call_timeout)?,
        library: a.library,
        outbreak_nics: a.outbreak,
        time_scale: a.time_scale,
    };
    let outcome = super::run(&options)?;
    let report = &outcome.report;
    let dir = &a.report_dir;
    let write = |e: std::io::Error| CertifyError::Setup(format!("{}: {e}", dir.display()));
    super::report::write_reports(dir, report).map_err(write)?;
    let transcript = outcome.transcript.to_jsonl();
    std::fs::write(dir.join("transcript.jsonl"), &transcript).map_err(write)?;
    if let Some(bundle) = &a.bundle {
        let files = bundle_files(&options, report, &transcript).map_err(write)?;
        super::bundle::write_bundle(bundle, &files).map_err(CertifyError::Setup)?;
    }
    print!("{}", super::report::render_summary(report));
    println!(
        "\n{}: {} (reports in {}{})",
        if report.passed() {
            "certified"
        } else {
            "NOT certified"
        },
        report.certified.label,
        dir.display(),
        a.bundle
            .as_ref()
            .map(|b| format!(", bundle {}", b.display()))
            .unwrap_or_default()
    );
    Ok(if report.passed() { 0 } else { 1 })
}

/// The files of a bundle: PRODUCT.toml as written, the three reports and the transcript.
pub fn bundle_files(
    options: &Options,
    report: &super::report::CertifyReport,
    transcript: &str,
) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    use super::report::{render_json, render_junit, render_summary};
    let mut files = BTreeMap::new();
    files.insert(
        "PRODUCT.toml".to_string(),
        options.product_source.clone().into_bytes(),
    );
    files.insert("report.json".into(), render_json(report)?.into_bytes());
    files.insert("junit.xml".into(), render_junit(report)?.into_bytes());
    files.insert("summary.md".into(), render_summary(report).into_bytes());
    files.insert("transcript.jsonl".into(), transcript.as_bytes().to_vec());
    Ok(files)
}

fn diff(d: DiffArgs) -> Result<u8, CertifyError> {
    let (product, _) = load_product(&d.product).map_err(|e| input(e.to_string()))?;
    if product.family != d.family {
        return Err(input(format!(
            "{}: family {} but --family {}",
            d.product.display(),
            product.family.as_str(),
            d.family.as_str()
        )));
    }
    let target = real_target(&d.endpoint)?.ok_or_else(|| input("diff needs --url"))?;
    let kind = BuiltinKind::parse(&product.protocol)
        .filter(|k| k.family() == d.family)
        .ok_or_else(|| {
            input(format!(
                "protocol {:?} has no built-in simulator to compare with",
                product.protocol
            ))
        })?;
    let source = adapter_source(&d.endpoint, &product.protocol)?;
    let report = super::diff::run_diff(
        &product,
        kind,
        factory(&source, d.family)?,
        target,
        call_timeout(&d.endpoint.call_timeout)?,
    )?;
    print!("{}", report.render());
    Ok(if report.shape_differs() { 1 } else { 0 })
}
