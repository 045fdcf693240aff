//! `qlab certify` on the command line: bad input exits 2 naming the file and key; a bundle that
//! is not one exits 1; `--plugin` is refused clearly in this build.

use std::process::Command;

fn qlab(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("qlab runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
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
    let (code, text) = qlab(&[
        "certify",
        "--family",
        "switch",
        "--product",
        file.to_str().unwrap(),
        "--target",
        "sim",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("PRODUCT.toml:8"), "{text}");
    assert!(text.contains("resources.vlans.quarantine"), "{text}");
}

#[test]
fn plugin_is_not_available_in_this_build() {
    let (code, text) = qlab(&[
        "certify",
        "--family",
        "switch",
        "--product",
        "fixtures/products/switch-restconf.toml",
        "--target",
        "sim",
        "--plugin",
        "python3",
        "my_switch.py",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not available in this build"), "{text}");
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
