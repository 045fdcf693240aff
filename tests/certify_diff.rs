//! `qlab certify diff`: the simulator against itself shows no shape difference (volatile fields
//! are ignored); against a simulator whose reply shape was changed it names the field.

use std::sync::Arc;
use std::time::Duration;

use quarantine_lab::certify::diff::run_diff;
use quarantine_lab::certify::product::load_product;
use quarantine_lab::certify::proxy::{CertProxy, Transcript};
use quarantine_lab::certify::target::{builtin_factory, start_sim, BuiltinKind};
use quarantine_lab::certify::RealTarget;

fn diff_against(
    rewrite: Option<(&'static str, &'static str)>,
) -> quarantine_lab::certify::diff::DiffReport {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/products/switch-restconf.toml");
    let (product, _) = load_product(&file).unwrap();
    let runtime = quarantine_lab::certify::runtime().unwrap();
    // The "device": another simulator, behind a proxy that may rename a reply field.
    let (_device, proxy) = runtime.block_on(async {
        let device = start_sim(&product, BuiltinKind::Restconf, Vec::new())
            .await
            .unwrap();
        let proxy = CertProxy::start(
            &device.url,
            device.ca_pem.as_deref(),
            "device",
            Transcript::default(),
        )
        .await
        .unwrap();
        if let Some((from, to)) = rewrite {
            proxy.set_reply_rewrite(Arc::new(move |body: &str| body.replace(from, to)));
        }
        (device, proxy)
    });
    let target = RealTarget {
        url: proxy.url(),
        user: "qlab".into(),
        password: "qlab".into(),
        ca_pem: None,
    };
    run_diff(
        &product,
        BuiltinKind::Restconf,
        builtin_factory(BuiltinKind::Restconf),
        target,
        Duration::from_secs(2),
    )
    .unwrap()
}

#[test]
fn r8_diff_of_the_simulator_against_itself_finds_no_shape_difference() {
    let report = diff_against(None);
    assert!(report.sim_exchanges >= 3, "{}", report.render());
    assert!(!report.shape_differs(), "{}", report.render());
}

#[test]
fn r8_diff_names_the_field_whose_shape_changed() {
    let report = diff_against(Some(("\"access-vlan\"", "\"accessVlan\"")));
    assert!(report.shape_differs(), "{}", report.render());
    let fields: Vec<&str> = report
        .differences
        .iter()
        .filter(|d| d.kind == "shape")
        .map(|d| d.field.as_str())
        .collect();
    assert!(
        fields.iter().any(|f| f.ends_with("/access-vlan"))
            && fields.iter().any(|f| f.ends_with("/accessVlan")),
        "{}",
        report.render()
    );
}
