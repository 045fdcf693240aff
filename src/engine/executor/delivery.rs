//! Alert delivery (R17): syslog and email, at least once, marked delivered in the journal.

use std::sync::Arc;

use super::super::alerts::Alert;
use super::super::device_queue::bounded;
use super::super::journal::Entry;
use super::super::state::{Shared, Waiting};

/// Sends alerts to syslog and email, then marks them delivered. Delivery is at least once: an
/// alert whose mark did not commit before a crash is sent again on start (R16, R17).
pub(crate) async fn deliver_alerts(shared: &Arc<Shared>, alerts: Vec<Alert>) {
    if alerts.is_empty() || shared.adapters.alerts_go_nowhere() {
        // With no output the journal holds them as delivered already (`Engine::open`).
        return;
    }
    let timeout = shared.settings.call_timeout;
    for alert in &alerts {
        if let Some(syslog) = &shared.adapters.syslog {
            let line = alert.syslog_line(&shared.hostname);
            if let Err(e) = bounded(timeout, syslog.send(&line)).await {
                tracing::warn!(seq = alert.seq, error = %e, "syslog delivery failed");
            }
        }
        if !alert.code.emails_tenant() {
            continue;
        }
        let (Some(mailer), Some(to)) = (&shared.adapters.mailer, tenant_email(shared, alert))
        else {
            continue;
        };
        let email = alert.email(&to, true);
        if let Err(e) = bounded(timeout, mailer.send(&email)).await {
            tracing::warn!(seq = alert.seq, error = %e, "email delivery failed");
        }
    }
    stage_delivery_marks(shared, &alerts);
}

/// Stages the marks that say `alerts` went out. Staged, not awaited: a mark lost to a crash only
/// means the alert is sent again after the restart (R16), so it need not hold up the operation;
/// it rides the next commit.
fn stage_delivery_marks(shared: &Shared, alerts: &[Alert]) {
    let marks: Vec<Entry> = alerts
        .iter()
        .map(|a| Entry::AlertDelivered { seq: a.seq })
        .collect();
    let mut state = shared.lock();
    let Ok(ticket) = shared.stage(&mut state, marks) else {
        return;
    };
    // The L-Servers' lanes make their marks durable before they go quiet.
    for path in alerts.iter().filter_map(|a| a.lserver.as_deref()) {
        if let Some(ls) = state.lservers.get_mut(path) {
            ls.marks = ticket;
        }
    }
}

/// Re-sends the alerts a restart found undelivered (R16, R17) in a task of its own, and makes
/// their marks durable. With no output configured now there is nowhere to send them: they are
/// marked delivered, as an alert journaled today would be.
pub(crate) fn redeliver_in_background(shared: &Arc<Shared>, alerts: Vec<Alert>) {
    if alerts.is_empty() {
        return;
    }
    let s = shared.clone();
    shared.spawn(async move {
        if s.adapters.alerts_go_nowhere() {
            stage_delivery_marks(&s, &alerts);
        } else {
            deliver_alerts(&s, alerts).await;
        }
        let staged = s.lock().staged;
        let _ = s.durable(staged, Waiting::Closing).await;
    });
}

/// Delivers new `alerts` outside any lane (detections' alerts) in a task of their own, and
/// makes their marks durable.
pub(crate) fn deliver_alerts_in_background(shared: &Arc<Shared>, alerts: Vec<Alert>) {
    if shared.adapters.alerts_go_nowhere() {
        // Journaled as delivered already (`Engine::open`).
        return;
    }
    redeliver_in_background(shared, alerts);
}

fn tenant_email(shared: &Shared, alert: &Alert) -> Option<String> {
    let ls = shared.site.lserver(alert.lserver.as_deref()?)?;
    shared
        .site
        .tenant_email(ls.tenant.as_deref()?)
        .map(str::to_string)
}
