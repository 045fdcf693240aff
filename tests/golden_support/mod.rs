//! The vendors' samples in `fixtures/devices/<vendor>/`, the contract both the adapters and the
//! simulators meet, and the shape comparison the golden tests use.

#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;

/// The golden `name` of `vendor_dir`, parsed.
pub fn golden(vendor_dir: &str, name: &str) -> Value {
    let path = format!("fixtures/devices/{vendor_dir}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Asserts `actual` has the shape of the golden `name` of `vendor_dir`.
pub fn assert_shape(vendor_dir: &str, name: &str, actual: &Value) {
    same_shape(&golden(vendor_dir, name), actual, name).unwrap_or_else(|e| panic!("{e}"));
}

/// R8: asserts each documented error reply of `vendor_dir` (file, HTTP status, class) lands in
/// its class under the adapter's `classify`, the class that decides retry or rollback.
pub fn assert_classified(
    vendor_dir: &str,
    cases: &[(&str, u16, quarantine_lab::adapters::OutcomeClass)],
    classify: fn(reqwest::StatusCode, &str) -> quarantine_lab::adapters::DeviceError,
) {
    for (name, status, class) in cases {
        let body = golden(vendor_dir, name).to_string();
        let status = reqwest::StatusCode::from_u16(*status).unwrap();
        let error = classify(status, &body);
        assert_eq!(error.class, *class, "{name}: {error}");
    }
}

/// Whether `actual` has the shape of `golden`: the same JSON type everywhere, every key of a
/// golden object present, every element of an actual array shaped like the golden's first.
pub fn same_shape(golden: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (golden, actual) {
        (Value::Object(g), Value::Object(a)) => g.iter().try_for_each(|(key, gv)| {
            let av = a.get(key).ok_or_else(|| format!("{at}.{key} missing"))?;
            same_shape(gv, av, &format!("{at}.{key}"))
        }),
        (Value::Array(g), Value::Array(a)) => match g.first() {
            Some(first) if a.is_empty() => Err(format!("{at}: empty, golden has {first}")),
            Some(first) => a
                .iter()
                .enumerate()
                .try_for_each(|(i, av)| same_shape(first, av, &format!("{at}[{i}]"))),
            None => Ok(()),
        },
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => Ok(()),
        _ => Err(format!("{at}: golden {golden}, got {actual}")),
    }
}

/// Stops `server` and waits until its listener is closed, so the next call is refused.
pub async fn stop(server: quarantine_lab::sim::wire::WireServer) {
    drop(server);
    // The proxy's listener closes when its aborted task is dropped; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}
