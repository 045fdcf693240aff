//! `[[devices]] plugin = [...]`: the daemon drives a switch through an out-of-process adapter (a
//! `sh` script speaking the plugin protocol, so nothing but Rust and a POSIX shell is needed),
//! and a plugin entry that cannot work stops the start with an error naming device and key.

mod daemon_support;

use std::path::Path;

use daemon_support::*;
use quarantine_lab::daemon::config::EngineConfig;
use quarantine_lab::daemon::Daemon;
use serde_json::Value;

/// A switch plugin keeping each port's VLAN in a file under its working folder (ports start on
/// VLAN 110), logging saves and `shutdown` to `calls.log`.
const SWITCH_PLUGIN: &str = r#"
reply() { printf '{"jsonrpc":"2.0","id":%s,"result":%s}\n' "$id" "$1"; }
field() { printf '%s\n' "$line" | sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/^{"jsonrpc":"2.0","id":\([0-9]*\),.*/\1/p')
  case "$line" in
    *'"method":"initialize"'*)
      echo "initialize $(field family) $(field url)" >> calls.log
      reply "{\"protocol_version\":1,\"family\":\"$FAMILY\",\"capabilities\":{\"batch\":false}}" ;;
    *'"method":"get_port"'*)
      file="port-$(field port | tr '/' '_')"
      if [ -e "$file" ]; then vlan=$(cat "$file"); else vlan=110; fi
      reply "{\"vlan\":$vlan}" ;;
    *'"method":"set_port"'*)
      field vlan > "port-$(field port | tr '/' '_')"
      reply '{}' ;;
    *'"method":"save_config"'*) echo save >> calls.log; reply '{}' ;;
    *'"method":"shutdown"'*) echo shutdown >> calls.log; reply '{}' ;;
    *) printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"no"}}\n' "$id" ;;
  esac
done
"#;

/// The lab with sw-1 driven by `plugin` (a TOML array) whose script claims `family`.
fn plugin_lab(plugin: &str, family: &str) -> Lab {
    let lab = lab();
    let script = SWITCH_PLUGIN.replace("$FAMILY", family);
    std::fs::write(lab.dir.path().join("switch-plugin.sh"), script).unwrap();
    let text = std::fs::read_to_string(&lab.config).unwrap();
    let (head, tail) = text.split_once("name = \"sw-1\"\n").expect("sw-1 entry");
    let text = format!("{head}name = \"sw-1\"\nplugin = {plugin}\n{tail}");
    std::fs::write(&lab.config, text).unwrap();
    lab
}

async fn start_error(lab: &Lab) -> String {
    let config = EngineConfig::load(&lab.config).expect("config parses");
    match Daemon::start(config, TOKEN.into()).await {
        Ok(daemon) => {
            daemon.shutdown().await;
            panic!("the daemon started")
        }
        Err(e) => {
            assert!(e.is_input_error(), "{e}");
            e.located(&lab.config)
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_the_daemon_quarantines_a_physical_lserver_through_a_switch_plugin() {
    // A relative script path: the plugin runs in the config file's folder.
    let lab = plugin_lab(r#"["sh", "switch-plugin.sh"]"#, "switch");
    let daemon = start(&lab).await;
    let calls = lab.dir.path().join("calls.log");
    assert!(read(&calls).starts_with("initialize switch http://127.0.0.1:"));
    let reply = post_with_token(format!(
        "{}/api/v1/lservers/tenant-a/sbc-01/quarantine",
        daemon.api_url()
    ))
    .await;
    assert_eq!(reply.status(), reqwest::StatusCode::ACCEPTED);
    let engine = daemon.engine().clone();
    let quarantined = eventually(|| {
        engine
            .lserver("/tenant-a/sbc-01")
            .is_some_and(|v| serde_json::to_value(v.state).ok() == Some(Value::from("quarantined")))
    })
    .await;
    let view = engine.lserver("/tenant-a/sbc-01");
    assert!(quarantined, "{view:?}");
    // The port is on qr-a (910) as the plugin recorded it, and sw-1 (persist) was saved.
    let port = read(&lab.dir.path().join("port-Ethernet1_5"));
    assert_eq!(port.trim(), "910");
    assert!(
        read(&calls).lines().any(|l| l == "save"),
        "{}",
        read(&calls)
    );
    daemon.shutdown().await;
    assert_eq!(read(&calls).lines().last(), Some("shutdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_plugin_entry_that_cannot_work_stops_the_start_naming_device_and_key() {
    let empty = plugin_lab("[]", "switch");
    let message = start_error(&empty).await;
    assert!(message.contains("devices[1].plugin"), "{message}");
    assert!(message.contains("empty"), "{message}");

    let missing = plugin_lab(r#"["./no-such-plugin"]"#, "switch");
    let message = start_error(&missing).await;
    assert!(message.contains("devices[1].plugin"), "{message}");
    assert!(message.contains("\"sw-1\""), "{message}");
    assert!(message.contains("no-such-plugin"), "{message}");

    // The plugin drives hypervisors; sw-1 is a switch of the topology.
    let family = plugin_lab(r#"["sh", "switch-plugin.sh"]"#, "hypervisor");
    let message = start_error(&family).await;
    assert!(message.contains("devices[1].plugin"), "{message}");
    assert!(
        message.contains("hypervisor") && message.contains("switch"),
        "{message}"
    );
    // The error names the line of the key in the config file.
    assert!(message.contains("engine.toml:"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_devices_keep_their_url_unchecked_but_the_password_rule() {
    // A plugin reads its url itself: any scheme goes.
    let lab = plugin_lab(r#"["sh", "switch-plugin.sh"]"#, "switch");
    let text = read(&lab.config);
    let (head, tail) = text.split_once("name = \"sw-1\"\n").unwrap();
    let (plugin, rest) = tail.split_once('\n').unwrap();
    let (_url, rest) = rest.split_once('\n').unwrap();
    std::fs::write(
        &lab.config,
        format!("{head}name = \"sw-1\"\n{plugin}\nurl = \"ssh://192.0.2.1\"\n{rest}"),
    )
    .unwrap();
    let daemon = start(&lab).await;
    assert!(read(&lab.dir.path().join("calls.log")).contains("ssh://192.0.2.1"));
    daemon.shutdown().await;
    // Without a password source the entry is refused like any other.
    let text = read(&lab.config);
    let (head, tail) = text.split_once("name = \"sw-1\"\n").unwrap();
    let tail = tail.replacen("password = \"qlab\"\n", "", 1);
    std::fs::write(&lab.config, format!("{head}name = \"sw-1\"\n{tail}")).unwrap();
    let message = start_error(&lab).await;
    assert!(message.contains("devices[1].password"), "{message}");
}
