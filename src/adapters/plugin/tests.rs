//! The plugin protocol client against fake plugins: in-process ones over `tokio::io::duplex`
//! for the protocol, and `sh` scripts for the process supervision (sh is on every Linux box).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::rpc::{read_line_capped, Connection, Limits, LineRead, Redactor};
use super::*;

const SECOND: Duration = Duration::from_secs(1);

/// A connection to an in-process fake plugin: the test drives the plugin's side of the pipes.
fn duplex(limits: Limits) -> (Arc<Connection>, FakePlugin) {
    let (engine_out, plugin_in) = tokio::io::duplex(64 * 1024);
    let (plugin_out, engine_in) = tokio::io::duplex(64 * 1024);
    let conn = Connection::new(engine_in, engine_out, "fake", limits, Redactor::new("pw"));
    let fake = FakePlugin {
        input: BufReader::new(plugin_in),
        output: plugin_out,
    };
    (conn, fake)
}

struct FakePlugin {
    input: BufReader<DuplexStream>,
    output: DuplexStream,
}

impl FakePlugin {
    async fn request(&mut self) -> Value {
        let mut line = String::new();
        self.input.read_line(&mut line).await.expect("read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    async fn send(&mut self, message: Value) {
        self.send_raw(&format!("{message}\n")).await;
    }

    async fn send_raw(&mut self, text: &str) {
        self.output.write_all(text.as_bytes()).await.expect("write");
    }
}

fn error_data(class: &str, detail: &str) -> Value {
    json!({"code": -32000, "message": "device call failed",
           "data": {"class": class, "detail": detail}})
}

#[tokio::test]
async fn plugin_concurrent_calls_get_distinct_ids_and_out_of_order_answers() {
    let (conn, mut fake) = duplex(Limits::default());
    let calls = (0..3u16).map(|n| {
        let conn = conn.clone();
        tokio::spawn(async move {
            let params = json!({"port": format!("Ethernet1/{n}")});
            conn.call("get_port", &params, 5 * SECOND).await
        })
    });
    let calls: Vec<_> = calls.collect();
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(fake.request().await);
    }
    let mut ids: Vec<u64> = requests.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert!(
        requests.iter().all(|r| r["jsonrpc"] == "2.0"),
        "{requests:?}"
    );
    // The last request is answered first: each caller still gets the answer to its own port.
    for request in requests.iter().rev() {
        let port = request["params"]["port"].as_str().unwrap();
        let vlan: u16 = port.trim_start_matches("Ethernet1/").parse().unwrap();
        fake.send(json!({"jsonrpc": "2.0", "id": request["id"], "result": {"vlan": 100 + vlan}}))
            .await;
    }
    for (n, call) in calls.into_iter().enumerate() {
        let answer = call.await.unwrap().expect("answered");
        assert_eq!(answer, json!({"vlan": 100 + n}));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids must be distinct");
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test]
async fn r8_error_classes_come_from_data_class_and_anything_else_is_unknown() {
    let (conn, mut fake) = duplex(Limits::default());
    let cases = [
        (
            error_data("rejected", "invalid VLAN"),
            OutcomeClass::Rejected,
        ),
        (
            error_data("unavailable", "refused"),
            OutcomeClass::Unavailable,
        ),
        (error_data("busy", "locked"), OutcomeClass::Busy),
        (error_data("auth", "session expired"), OutcomeClass::Auth),
        (error_data("unknown", "reset"), OutcomeClass::Unknown),
        // No class, a class the protocol does not name: unknown (maybe applied).
        (
            json!({"code": -32601, "message": "Method not found"}),
            OutcomeClass::Unknown,
        ),
        (error_data("ok", "hm"), OutcomeClass::Unknown),
    ];
    for (error, class) in cases {
        let call = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call("set_port", &json!({}), 5 * SECOND).await })
        };
        let request = fake.request().await;
        fake.send(json!({"jsonrpc": "2.0", "id": request["id"], "error": error}))
            .await;
        let got = call.await.unwrap().expect_err("fails");
        assert_eq!(got.class, class, "{error}: {got}");
    }
    // An answer with both result and error is no answer to trust.
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.call("set_port", &json!({}), 5 * SECOND).await })
    };
    let request = fake.request().await;
    let both = json!({"jsonrpc": "2.0", "id": request["id"], "result": {},
                      "error": error_data("rejected", "x")});
    fake.send(both).await;
    let got = call.await.unwrap().expect_err("fails");
    assert_eq!(got.class, OutcomeClass::Unknown, "{got}");
}

#[tokio::test(start_paused = true)]
async fn r8_no_answer_within_the_call_timeout_is_unknown_and_a_late_answer_is_ignored() {
    let (conn, mut fake) = duplex(Limits::default());
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.call("set_port", &json!({}), SECOND).await })
    };
    let first = fake.request().await;
    let got = call.await.unwrap().expect_err("cut");
    assert_eq!(got.class, OutcomeClass::Unknown, "{got}");
    assert!(got.detail.contains("call timeout"), "{got}");
    assert_eq!(conn.in_flight(), 0, "a cut call leaves the pending map");
    // The answer comes late, then the next call is answered: the late one goes to nobody.
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.call("get_port", &json!({}), SECOND).await })
    };
    let second = fake.request().await;
    fake.send(json!({"jsonrpc": "2.0", "id": first["id"], "result": {"vlan": 1}}))
        .await;
    fake.send(json!({"jsonrpc": "2.0", "id": second["id"], "result": {"vlan": 2}}))
        .await;
    assert_eq!(call.await.unwrap(), Ok(json!({"vlan": 2})));
}

#[tokio::test]
async fn r8_a_connection_closing_with_calls_in_flight_makes_them_unknown_and_later_calls_unsent() {
    let (conn, mut fake) = duplex(Limits::default());
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.call("set_port", &json!({}), 5 * SECOND).await })
    };
    fake.request().await;
    drop(fake);
    let got = call.await.unwrap().expect_err("lost");
    assert_eq!(got.class, OutcomeClass::Unknown, "{got}");
    conn.closed().await;
    let later = conn
        .call("set_port", &json!({}), SECOND)
        .await
        .expect_err("closed");
    assert_eq!(later.class, OutcomeClass::Unavailable, "{later}");
}

#[tokio::test(start_paused = true)]
async fn oversized_answer_line_is_dropped_unbuffered_and_the_connection_goes_on() {
    let limits = Limits {
        max_line_bytes: 1024,
        max_pending: 8,
    };
    let (conn, mut fake) = duplex(limits);
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.call("get_port", &json!({}), SECOND).await })
    };
    let first = fake.request().await;
    let padding = "x".repeat(50_000);
    let huge = json!({"jsonrpc": "2.0", "id": first["id"], "result": {"vlan": 1, "pad": padding}});
    fake.send(huge).await;
    let got = call.await.unwrap().expect_err("dropped");
    assert_eq!(got.class, OutcomeClass::Unknown, "{got}");
    let call = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.call("get_port", &json!({}), SECOND).await })
    };
    let second = fake.request().await;
    fake.send(json!({"jsonrpc": "2.0", "id": second["id"], "result": {"vlan": 7}}))
        .await;
    assert_eq!(call.await.unwrap(), Ok(json!({"vlan": 7})));
    // A request over the cap never leaves: it cannot have changed the device.
    let big = json!({"changes": "y".repeat(2000)});
    let refused = conn
        .call("set_ports", &big, SECOND)
        .await
        .expect_err("too big");
    assert_eq!(refused.class, OutcomeClass::Rejected, "{refused}");
}

#[tokio::test]
async fn r15_in_flight_calls_are_bounded_and_the_one_over_is_busy_unsent() {
    let limits = Limits {
        max_line_bytes: 4096,
        max_pending: 2,
    };
    let (conn, mut fake) = duplex(limits);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call("get_port", &json!({}), 5 * SECOND).await })
        })
        .collect();
    let a = fake.request().await;
    let b = fake.request().await;
    let over = conn
        .call("set_port", &json!({}), SECOND)
        .await
        .expect_err("bounded");
    assert_eq!(over.class, OutcomeClass::Busy, "{over}");
    for r in [a, b] {
        fake.send(json!({"jsonrpc": "2.0", "id": r["id"], "result": {}}))
            .await;
    }
    for call in held {
        assert_eq!(call.await.unwrap(), Ok(json!({})));
    }
}

#[tokio::test]
async fn capped_line_reader_keeps_the_cap_and_reports_the_length() {
    let input = format!("short\n{}\nlast", "z".repeat(100));
    let mut reader = BufReader::with_capacity(8, input.as_bytes());
    let mut buf = Vec::new();
    assert_eq!(
        read_line_capped(&mut reader, &mut buf, 10).await.unwrap(),
        LineRead::Line
    );
    assert_eq!(buf, b"short");
    assert_eq!(
        read_line_capped(&mut reader, &mut buf, 10).await.unwrap(),
        LineRead::TooLong(100)
    );
    assert_eq!(buf.len(), 10);
    assert_eq!(
        read_line_capped(&mut reader, &mut buf, 10).await.unwrap(),
        LineRead::Line
    );
    assert_eq!(buf, b"last");
    assert_eq!(
        read_line_capped(&mut reader, &mut buf, 10).await.unwrap(),
        LineRead::Eof
    );
}

// ---- Plugins as processes: sh scripts ----

/// The `initialize` answer of a switch plugin with batches of at most 2.
const SWITCH_INIT: &str =
    r#"{"protocol_version":1,"family":"switch","capabilities":{"batch":true,"max_batch":2}}"#;

/// Writes a fake plugin: `sh` reading requests line by line, `cases` being extra `case` arms
/// (with `$id` and `$line` set, `reply JSON` and `fail CLASS DETAIL` defined).
fn script(dir: &Path, init: &str, cases: &str) -> Vec<String> {
    let text = format!(
        r#"DIR="{dir}"
echo started >> "$DIR/starts"
reply() {{ printf '{{"jsonrpc":"2.0","id":%s,"result":%s}}\n' "$id" "$1"; }}
fail() {{ printf '{{"jsonrpc":"2.0","id":%s,"error":{{"code":-32000,"message":"failed","data":{{"class":"%s","detail":"%s"}}}}}}\n' "$id" "$1" "$2"; }}
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/^{{"jsonrpc":"2.0","id":\([0-9]*\),.*/\1/p')
  case "$line" in
    *'"method":"initialize"'*) reply '{init}' ;;
    *'"method":"shutdown"'*) echo shutdown >> "$DIR/log"; reply '{{}}' ;;
{cases}
    *) printf '{{"jsonrpc":"2.0","id":%s,"error":{{"code":-32601,"message":"Method not found"}}}}\n' "$id" ;;
  esac
done
echo eof >> "$DIR/log"
"#,
        dir = dir.display()
    );
    let path = dir.join("plugin.sh");
    std::fs::write(&path, text).expect("write script");
    vec!["sh".to_string(), path.display().to_string()]
}

fn switch() -> PluginDevice {
    PluginDevice::new(
        "sw-9",
        Family::Switch,
        "http://192.0.2.9",
        "qlab",
        "s3cr3t-pw",
    )
}

fn fast() -> Supervision {
    Supervision {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..Supervision::default()
    }
}

/// The plugin `cmd` for `device`, started with a 5 s call timeout and [`fast`] supervision.
async fn started(cmd: &[String], device: PluginDevice) -> Arc<PluginAdapter> {
    PluginAdapter::spawn_with(cmd, device, 5 * SECOND, fast())
        .await
        .expect("starts")
}

fn lines(path: PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

#[tokio::test]
async fn plugin_switch_calls_and_batches_go_through_a_process_and_stop_sends_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let cases = r#"
    *'"method":"get_port"'*) reply '{"vlan":910}' ;;
    *'"method":"set_port"'*) reply '{}' ;;
    *'"method":"save_config"'*) fail busy 'config locked' ;;
    *'"method":"set_ports"'*) echo "$line" >> "$DIR/batches"; reply '{"results":[null,{"code":-32000,"message":"no","data":{"class":"rejected","detail":"no such port"}}]}' ;;
    *'"method":"get_ports"'*) reply '{"results":[{"vlan":110},{"code":1,"message":"x","data":{"class":"auth","detail":"expired"}}]}' ;;
"#;
    let cmd = script(dir.path(), SWITCH_INIT, cases);
    let adapter = started(&cmd, switch()).await;
    assert!(Switch::batches(&*adapter));
    assert_eq!(adapter.get_port("Ethernet1/1").await, Ok(910));
    assert_eq!(adapter.set_port("Ethernet1/1", 910).await, Ok(()));
    let save = adapter.save_config().await.expect_err("busy");
    assert_eq!(save.class, OutcomeClass::Busy, "{save}");
    // Four changes with max_batch 2: two calls, each answered [ok, rejected].
    let changes: Vec<(String, u16)> = (1..=4).map(|n| (format!("Ethernet1/{n}"), 910)).collect();
    let results = adapter.set_ports(&changes).await;
    let classes: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.class))
        .collect();
    let rejected = Some(OutcomeClass::Rejected);
    assert_eq!(classes, vec![None, rejected, None, rejected], "{results:?}");
    let batches = lines(dir.path().join("batches"));
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert!(
        batches[0].contains(
            r#""changes":[{"port":"Ethernet1/1","vlan":910},{"port":"Ethernet1/2","vlan":910}]"#
        ),
        "{batches:?}"
    );
    let reads = adapter.get_ports(&["a".into(), "b".into()]).await;
    assert_eq!(reads[0], Ok(110));
    assert_eq!(reads[1].as_ref().unwrap_err().class, OutcomeClass::Auth);
    // A BMC call on a switch plugin never leaves.
    let wrong = Bmc::reset(&*adapter).await.expect_err("not a BMC");
    assert_eq!(wrong.class, OutcomeClass::Rejected, "{wrong}");

    adapter.stop().await;
    assert_eq!(lines(dir.path().join("log")), vec!["shutdown", "eof"]);
    let after = adapter.get_port("Ethernet1/1").await.expect_err("stopped");
    assert_eq!(after.class, OutcomeClass::Unavailable, "{after}");
}

#[tokio::test]
async fn plugin_hypervisor_and_bmc_families_map_their_methods() {
    let dir = tempfile::tempdir().unwrap();
    let init = r#"{"protocol_version":1,"family":"hypervisor","capabilities":{"batch":false}}"#;
    let cases = r#"
    *'"method":"login"'*) reply '{}' ;;
    *'"method":"get_nic","params":{"nic":"4000","vm":"vm-1"}'*) reply '{"portgroup":"dvportgroup-910"}' ;;
    *'"method":"set_nic"'*) fail rejected 'no such port group' ;;
    *'"method":"power_reset"'*) reply '{}' ;;
"#;
    let cmd = script(dir.path(), init, cases);
    let device = PluginDevice::new("vc-9", Family::Hypervisor, "https://vc", "u", "p");
    let hv = started(&cmd, device).await;
    assert_eq!(hv.login().await, Ok(()));
    assert_eq!(
        hv.get_nic("vm-1", "4000").await.as_deref(),
        Ok("dvportgroup-910")
    );
    let set = hv.set_nic("vm-1", "4000", "x").await.expect_err("rejected");
    assert_eq!(set.class, OutcomeClass::Rejected);
    assert_eq!(hv.power_reset("vm-1").await, Ok(()));
    // A read the plugin answers without the value: it said ok, but the engine learned nothing.
    let other = hv.get_nic("vm-2", "4000").await.expect_err("unanswered");
    assert_eq!(other.class, OutcomeClass::Unknown, "{other}");
    assert!(!Switch::batches(&*hv));
    hv.stop().await;

    let init = r#"{"protocol_version":1,"family":"bmc","capabilities":{}}"#;
    let cmd = script(
        dir.path(),
        init,
        "    *'\"method\":\"reset\"'*) fail unavailable 'BMC down' ;;\n",
    );
    let device = PluginDevice::new("irmc-9", Family::Bmc, "https://bmc", "u", "p");
    let bmc = started(&cmd, device).await;
    let reset = bmc.reset().await.expect_err("down");
    assert_eq!(reset.class, OutcomeClass::Unavailable, "{reset}");
    bmc.stop().await;
}

#[tokio::test]
async fn plugin_that_claims_another_family_or_version_or_cannot_start_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let init = r#"{"protocol_version":1,"family":"bmc","capabilities":{}}"#;
    let cmd = script(dir.path(), init, "");
    let err = PluginAdapter::spawn_with(&cmd, switch(), SECOND, fast())
        .await
        .expect_err("family");
    assert!(
        matches!(&err, PluginError::Family { expected: Family::Switch, claimed } if claimed == "bmc"),
        "{err}"
    );
    let init = r#"{"protocol_version":2,"family":"switch","capabilities":{}}"#;
    let cmd = script(dir.path(), init, "");
    let err = PluginAdapter::spawn_with(&cmd, switch(), SECOND, fast())
        .await
        .expect_err("version");
    assert!(err.to_string().contains("protocol_version 2"), "{err}");
    let missing = vec![dir.path().join("no-such-plugin").display().to_string()];
    let err = PluginAdapter::spawn_with(&missing, switch(), SECOND, fast())
        .await
        .expect_err("missing");
    assert!(matches!(err, PluginError::Command(_)), "{err}");
    assert!(err.to_string().contains("no-such-plugin"), "{err}");
    let err = PluginAdapter::spawn_with(&[], switch(), SECOND, fast())
        .await
        .expect_err("empty");
    assert!(matches!(err, PluginError::Command(_)), "{err}");
    // A plugin that never answers initialize is refused at the timeout.
    let silent = vec!["sh".into(), "-c".into(), "sleep 30".into()];
    let err = PluginAdapter::spawn_with(
        &silent,
        switch(),
        Duration::from_millis(300),
        Supervision {
            init_timeout: Duration::from_millis(300),
            ..fast()
        },
    )
    .await
    .expect_err("silent");
    assert!(matches!(err, PluginError::Initialize(_)), "{err}");
}

#[tokio::test]
async fn r8_plugin_crash_with_calls_in_flight_makes_them_unknown_and_it_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    // The first run holds get_port unanswered and dies on set_port; later runs answer.
    let cases = r#"
    *'"method":"get_port"'*) if [ -e "$DIR/crashed" ]; then reply '{"vlan":910}'; fi ;;
    *'"method":"set_port"'*) if [ -e "$DIR/crashed" ]; then reply '{}'; else touch "$DIR/crashed"; exit 3; fi ;;
"#;
    let cmd = script(dir.path(), SWITCH_INIT, cases);
    let adapter = started(&cmd, switch()).await;
    let held = {
        let adapter = adapter.clone();
        tokio::spawn(async move { adapter.get_port("Ethernet1/1").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let crashed = adapter
        .set_port("Ethernet1/1", 910)
        .await
        .expect_err("crash");
    assert_eq!(crashed.class, OutcomeClass::Unknown, "{crashed}");
    let held = held.await.unwrap().expect_err("lost");
    assert_eq!(held.class, OutcomeClass::Unknown, "{held}");
    assert!(
        started.elapsed() < 3 * SECOND,
        "resolved at the exit, not the timeout"
    );
    // Started again after the backoff; the next calls are served by the new process.
    assert!(eventually(|| adapter.starts() == 2).await, "not restarted");
    assert_eq!(adapter.set_port("Ethernet1/1", 910).await, Ok(()));
    assert_eq!(adapter.get_port("Ethernet1/1").await, Ok(910));
    assert_eq!(lines(dir.path().join("starts")).len(), 2);
    adapter.stop().await;
}

#[tokio::test]
async fn plugin_calls_while_it_restarts_wait_for_it_within_the_call_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Each run dies on its first set_port; the restart comes after 300 ms.
    let cases = r#"
    *'"method":"set_port"'*) exit 3 ;;
    *'"method":"get_port"'*) reply '{"vlan":911}' ;;
"#;
    let cmd = script(dir.path(), SWITCH_INIT, cases);
    let supervision = Supervision {
        backoff_initial: Duration::from_millis(300),
        ..fast()
    };
    let adapter = PluginAdapter::spawn_with(&cmd, switch(), 5 * SECOND, supervision)
        .await
        .expect("starts");
    let crashed = adapter.set_port("p", 911).await.expect_err("crash");
    assert_eq!(crashed.class, OutcomeClass::Unknown);
    // Sent while the plugin is down: waits for the new process rather than failing at once.
    assert_eq!(adapter.get_port("p").await, Ok(911));
    assert_eq!(adapter.starts(), 2);
    adapter.stop().await;
}

/// Log lines captured from the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn r18_the_password_never_reaches_the_logs_even_when_the_plugin_echoes_it() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    // The plugin logs every request it reads (initialize included) and quotes the password
    // in an error detail.
    let cases = r#"
    *'"method":"set_port"'*) fail rejected 'login s3cr3t-pw refused' ;;
"#;
    let mut cmd = script(dir.path(), SWITCH_INIT, cases);
    let text = std::fs::read_to_string(&cmd[1]).unwrap();
    let text = text.replace(
        "while IFS= read -r line; do\n",
        "while IFS= read -r line; do\n  printf 'got %s\\n' \"$line\" >&2\n",
    );
    let path = dir.path().join("echo.sh");
    std::fs::write(&path, text).unwrap();
    cmd[1] = path.display().to_string();
    let adapter = started(&cmd, switch()).await;
    let err = adapter.set_port("p", 910).await.expect_err("rejected");
    assert!(!err.detail.contains("s3cr3t-pw"), "{err}");
    assert!(err.detail.contains("login *** refused"), "{err}");
    adapter.stop().await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("plugin started"), "{logs}");
    // The stderr echo of initialize was logged, with the password replaced.
    assert!(
        logs.contains(r#""method":"initialize""#) && logs.contains(r#""password":"***""#),
        "{logs}"
    );
    assert!(!logs.contains("s3cr3t-pw"), "{logs}");
    assert!(!format!("{:?}", switch()).contains("s3cr3t-pw"));
}

#[tokio::test]
async fn plugin_stderr_lines_are_cut_at_the_cap() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = script(dir.path(), SWITCH_INIT, "");
    let text = std::fs::read_to_string(&cmd[1]).unwrap();
    let long = "L".repeat(process::MAX_STDERR_LINE_BYTES * 3);
    let text = format!("echo '{long}' >&2\necho 'after' >&2\n{text}");
    let path = dir.path().join("long.sh");
    std::fs::write(&path, text).unwrap();
    cmd[1] = path.display().to_string();
    let adapter = started(&cmd, switch()).await;
    assert!(
        eventually(|| String::from_utf8_lossy(&captured.0.lock().unwrap()).contains("after")).await
    );
    adapter.stop().await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < process::MAX_STDERR_LINE_BYTES + 300, "{longest}");
    assert!(
        logs.contains(&"L".repeat(process::MAX_STDERR_LINE_BYTES)),
        "prefix kept"
    );
}
