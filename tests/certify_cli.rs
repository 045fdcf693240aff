//! `qlab certify` on the command line: bad input exits 2 naming the file and key; a bundle that
//! is not one exits 1; a plugin that cannot start fails its checks, naming the program.

mod common;

use common::run::{qlab_command, qlab_text as qlab};

/// `qlab certify --family <family> --product <product> --target sim <extra>`.
fn certify_sim(family: &str, product: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["certify", "--family", family, "--product", product];
    args.extend(["--target", "sim"]);
    args.extend(extra);
    qlab(&args)
}

#[test]
fn bad_product_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PRODUCT.toml");
    std::fs::write(
        &file,
        "vendor = \"v\"\nproduct = \"p\"\nversion = \"1\"\nfamily = \"switch\"\nprotocol = \"restconf\"\n\
         [resources]\nports = [\"e1\"]\nvlans = { operation = 110, quarantine = 110 }\n",
    )
    .unwrap();
    let (code, text) = certify_sim("switch", file.to_str().unwrap(), &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("PRODUCT.toml:8"), "{text}");
    assert!(text.contains("resources.vlans.quarantine"), "{text}");
}

#[test]
fn r18_a_plugin_that_cannot_start_fails_every_check_naming_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = certify_sim(
        "switch",
        "fixtures/products/switch-restconf.toml",
        &[
            "--tier",
            "1",
            "--report-dir",
            dir.path().to_str().unwrap(),
            "--plugin",
            "/nonexistent/qlab-plugin",
        ],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("NOT certified"), "{text}");
    assert!(
        text.contains("cannot start \"/nonexistent/qlab-plugin\""),
        "{text}"
    );
}

#[test]
fn verify_refuses_what_is_not_a_bundle_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tar.gz");
    std::fs::write(&file, b"not a bundle").unwrap();
    let (code, text) = qlab(&["certify", "verify", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("rejected:"), "{text}");
}

#[test]
fn r18_a_real_target_is_reached_over_https_with_its_ca_and_the_bundle_says_so() {
    use quarantine_lab::certify::product::load_product;
    use quarantine_lab::certify::target::{start_sim, BuiltinKind};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let product = root.join("fixtures/products/switch-restconf.toml");
    let (p, _) = load_product(&product).unwrap();
    let runtime = quarantine_lab::certify::runtime().unwrap();
    // The "device": a simulator over HTTPS, reached like any real target.
    let device = runtime
        .block_on(start_sim(&p, BuiltinKind::Restconf, Vec::new()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, device.ca_pem.as_ref().unwrap()).unwrap();
    let bundle = dir.path().join("b.tar.gz");
    // `qlab certify` of the switch product against the device as user `qlab`.
    let certify_real = || {
        let mut command = qlab_command();
        command
            .args(["certify", "--family", "switch", "--product"])
            .arg(&product)
            .args(["--url", &device.url, "--user", "qlab"]);
        command
    };
    let out = certify_real()
        .args(["--password-env", "CERT_TEST_PW"])
        .arg("--ca-file")
        .arg(&ca)
        .args(["--tier", "2", "--report-dir"])
        .arg(dir.path().join("reports"))
        .arg("--bundle")
        .arg(&bundle)
        .env("CERT_TEST_PW", "qlab")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // On a real target the simulator-only checks are not required, and skipped.
    assert!(text.contains("| SW-2.8 |"), "{text}");
    assert!(
        text.contains("not required: simulated targets only"),
        "{text}"
    );
    let (code, verdict) = qlab(&["certify", "verify", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{verdict}");
    assert!(
        verdict.contains("tier-2") && verdict.contains("target-real"),
        "{verdict}"
    );
    // Without the CA the device's certificate is refused: nothing certified.
    let out = certify_real()
        .args(["--tier", "1", "--report-dir"])
        .arg(dir.path().join("reports2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    drop(device);
}

#[test]
fn r18_an_av_feed_certifies_on_the_command_line_and_its_bundle_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("av.tar.gz");
    let (code, text) = certify_sim(
        "av",
        "fixtures/products/av-officescan-syslog.toml",
        &[
            "--tier",
            "2",
            "--report-dir",
            dir.path().join("reports").to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("certified: tier-2"), "{text}");
    assert!(text.contains("builtin:intake"), "{text}");
    let (code, verdict) = qlab(&["certify", "verify", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{verdict}");
    assert!(verdict.contains("family-av"), "{verdict}");
}

#[test]
fn an_av_product_without_its_format_or_with_a_device_protocol_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PRODUCT.toml");
    let head = "vendor = \"v\"\nproduct = \"p\"\nversion = \"1\"\nfamily = \"av\"\n";
    for (body, key) in [
        ("protocol = \"syslog_udp\"\n", "resources.av_kind"),
        (
            "protocol = \"restconf\"\n[resources]\nav_kind = \"sepm\"\n",
            "protocol",
        ),
        (
            "protocol = \"epo_api\"\n[resources]\nav_kind = \"sepm\"\n",
            "resources.av_kind",
        ),
    ] {
        std::fs::write(&file, format!("{head}{body}")).unwrap();
        let (code, text) = certify_sim("av", file.to_str().unwrap(), &[]);
        assert_eq!(code, 2, "{text}");
        assert!(text.contains(key), "{body}: {text}");
    }
    // A real AV target is refused with a reason, not half-certified.
    std::fs::write(
        &file,
        format!("{head}protocol = \"epo_api\"\n[resources]\nav_kind = \"epo\"\n"),
    )
    .unwrap();
    let (code, text) = qlab(&[
        "certify",
        "--family",
        "av",
        "--product",
        file.to_str().unwrap(),
        "--url",
        "https://epo.example.com:8443",
        "--user",
        "admin",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--target sim only"), "{text}");
}
