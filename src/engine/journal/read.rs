//! Reading the journal: the R4 lookups, the API's views of operations and alerts, and the
//! snapshot the engine rebuilds its memory from at open (R16).

use std::net::IpAddr;

use rusqlite::{params, OptionalExtension};

use super::*;

/// An `operations` row as the API shows it: L-Server, kind, status, outcome, detail and who
/// requested it.
type OperationRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A `nic_records` row: L-Server, NIC index, network, IP, device network and last write.
type NicRecordRow = (String, i64, String, String, Option<String>, Option<String>);

/// An unfinished `operations` row: id, L-Server, kind, status, phase and detection.
type OpenOperationRow = (i64, String, String, String, Option<String>, Option<i64>);

impl Journal {
    /// The id of an already received `(source, event_id)` (R4).
    pub fn find_detection(
        &self,
        source: &str,
        event_id: &str,
    ) -> Result<Option<DetectionId>, JournalError> {
        if let Some(behind) = &self.behind {
            behind.failed()?;
            let key = (source.to_string(), event_id.to_string());
            return Ok(behind.ids.get(&key).copied());
        }
        // Cached: the daemon asks once per detection it receives.
        Ok(self
            .conn()?
            .prepare_cached(FIND_DETECTION)?
            .query_row(params![source, event_id], |r| r.get(0))
            .optional()?)
    }

    /// Calls `each` with the `(source, event_id)` of every journaled detection, in no
    /// particular order (the engine's R4 filter, built at open).
    pub fn each_detection_key(&self, mut each: impl FnMut(&str, &str)) -> Result<(), JournalError> {
        if let Some(behind) = &self.behind {
            behind.failed()?;
            for (source, event_id) in behind.ids.keys() {
                each(source, event_id);
            }
            return Ok(());
        }
        let conn = self.conn()?;
        let mut statement = conn.prepare("SELECT source, event_id FROM detections")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let text = |i: usize| {
                row.get_ref(i)?
                    .as_str()
                    .map_err(|e| JournalError::Corrupt(format!("a detection's key: {e}")))
            };
            each(text(0)?, text(1)?);
        }
        Ok(())
    }

    /// The disposition, L-Server and operation of a journaled detection.
    pub fn detection_receipt(
        &self,
        id: DetectionId,
    ) -> Result<Option<DetectionReceipt>, JournalError> {
        if let Some(behind) = &self.behind {
            behind.failed()?;
            return Ok(behind.receipts.get(&id).cloned());
        }
        Ok(self
            .conn()?
            .prepare_cached(DETECTION_RECEIPT)?
            .query_row([id], |r| {
                let disposition: String = r.get(0)?;
                Ok(DetectionReceipt {
                    id,
                    disposition: parse_disposition(&disposition),
                    lserver: r.get(1)?,
                    operation: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Whether operation `operation` journaled an `ok` outcome of any of `calls` (R16: a reset
    /// that succeeded before a restart is not sent again).
    pub fn has_successful_call(
        &self,
        operation: OperationId,
        calls: &[&str],
    ) -> Result<bool, JournalError> {
        for call in calls {
            let found: Option<i64> = self
                .conn()?
                .query_row(
                    "SELECT id FROM device_calls WHERE operation_id = ?1 AND call = ?2 AND outcome = 'ok' LIMIT 1",
                    params![operation, call],
                    |r| r.get(0),
                )
                .optional()?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Number of journaled detections.
    pub fn detection_count(&self) -> Result<u64, JournalError> {
        Ok(self
            .conn()?
            .query_row("SELECT COUNT(*) FROM detections", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// One operation.
    pub fn operation(&self, id: OperationId) -> Result<Option<OperationView>, JournalError> {
        let row = self
            .conn()?
            .query_row(
                "SELECT lserver, kind, status, outcome, detail, requested_by FROM operations WHERE id = ?1",
                [id],
                |r| <OperationRow>::try_from(r),
            )
            .optional()?;
        row.map(|(lserver, kind, status, outcome, detail, requested_by)| {
            Ok(OperationView {
                id,
                lserver,
                kind: parse_kind(&kind)?,
                status: parse_status(&status)?,
                outcome: outcome.as_deref().map(parse_outcome).transpose()?,
                detail,
                requested_by,
            })
        })
        .transpose()
    }

    /// Operations in id order (for reports and the API).
    pub fn operations(&self) -> Result<Vec<OperationView>, JournalError> {
        let ids: Vec<(i64,)> = self.rows("SELECT id FROM operations ORDER BY id", [])?;
        ids.into_iter()
            .filter_map(|(id,)| self.operation(id).transpose())
            .collect()
    }

    /// Alerts with `seq > since`, in order, at most `limit`.
    pub fn alerts_since(&self, since: i64, limit: usize) -> Result<Vec<Alert>, JournalError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT seq, at_ms, code, lserver, ip, operation_id, detail FROM alerts
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since, limit as i64], read_alert)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// Reads what the engine keeps in memory.
    pub fn snapshot(&self) -> Result<Snapshot, JournalError> {
        let mut snap = Snapshot::default();
        self.read_lservers(&mut snap)?;
        self.read_nic_records(&mut snap)?;
        self.read_allocations(&mut snap)?;
        self.read_open_operations(&mut snap)?;
        self.read_undelivered_alerts(&mut snap)?;
        let max = |sql: &str| -> Result<i64, JournalError> {
            Ok(self
                .conn()?
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))?
                .unwrap_or(0))
        };
        snap.next_detection_id = max("SELECT MAX(id) FROM detections")? + 1;
        snap.next_operation_id = max("SELECT MAX(id) FROM operations")? + 1;
        snap.next_alert_seq = max("SELECT MAX(seq) FROM alerts")? + 1;
        Ok(snap)
    }

    /// The L-Servers' states, statuses and outcomes.
    fn read_lservers(&self, snap: &mut Snapshot) -> Result<(), JournalError> {
        let rows: Vec<(String, String, String, Option<String>)> =
            self.rows("SELECT path, state, status, outcome FROM lservers", [])?;
        for (path, state, status, outcome) in rows {
            snap.lservers.push(LServerRow {
                path,
                state: parse_as("unknown state", &state)?,
                status,
                outcome: outcome.as_deref().map(parse_outcome).transpose()?,
            });
        }
        Ok(())
    }

    /// The NICs' records.
    fn read_nic_records(&self, snap: &mut Snapshot) -> Result<(), JournalError> {
        let rows: Vec<NicRecordRow> = self.rows(
            "SELECT lserver, nic_index, network, ip, device_network, last_write FROM nic_records ORDER BY lserver, nic_index",
            [],
        )?;
        for (lserver, index, network, ip, device_network, last_write) in rows {
            snap.nic_records.push((
                lserver,
                NicRecord {
                    index: index as usize,
                    network,
                    ip: parse_ip(&ip)?,
                    device_network,
                    last_write,
                },
            ));
        }
        Ok(())
    }

    /// The quarantine IPs allocated (R6).
    fn read_allocations(&self, snap: &mut Snapshot) -> Result<(), JournalError> {
        let rows: Vec<(String, String, String, i64)> = self.rows(
            "SELECT network, ip, lserver, nic_index FROM ip_allocations ORDER BY network, ip",
            [],
        )?;
        for (network, ip, lserver, nic) in rows {
            snap.allocations
                .push((network, parse_ip(&ip)?, lserver, nic as usize));
        }
        Ok(())
    }

    /// The operations not done, with their plans (R16).
    fn read_open_operations(&self, snap: &mut Snapshot) -> Result<(), JournalError> {
        let rows: Vec<OpenOperationRow> = self.rows(
            "SELECT id, lserver, kind, status, phase, detection_id FROM operations
             WHERE status <> 'done' ORDER BY id",
            [],
        )?;
        for (id, lserver, kind, status, phase, detection) in rows {
            snap.open_operations.push(OpenOperation {
                id,
                lserver,
                kind: parse_kind(&kind)?,
                status: parse_status(&status)?,
                phase,
                detection,
                plan: Vec::new(),
            });
        }
        for op in &mut snap.open_operations {
            op.plan = self.plan(op.id)?;
        }
        Ok(())
    }

    /// The alerts not yet delivered (R17).
    fn read_undelivered_alerts(&self, snap: &mut Snapshot) -> Result<(), JournalError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT seq, at_ms, code, lserver, ip, operation_id, detail FROM alerts
             WHERE delivered = 0 ORDER BY seq",
        )?;
        for row in stmt.query_map([], read_alert)? {
            snap.undelivered_alerts.push(row??);
        }
        Ok(())
    }

    /// Every row `sql` answers for `params`, each as the tuple `T` of its columns.
    fn rows<T>(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<T>, JournalError>
    where
        T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
    {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map(params, |r| T::try_from(r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn plan(&self, operation: OperationId) -> Result<Vec<PlanNic>, JournalError> {
        let rows: Vec<(i64, String, String, String, String)> = self.rows(
            "SELECT nic_index, from_network, from_ip, to_network, to_ip FROM plan_nics
             WHERE operation_id = ?1 ORDER BY nic_index",
            [operation],
        )?;
        let mut plan = Vec::new();
        for (nic, from_network, from_ip, to_network, to_ip) in rows {
            plan.push(PlanNic {
                nic_index: nic as usize,
                from_network,
                from_ip: parse_ip(&from_ip)?,
                to_network,
                to_ip: parse_ip(&to_ip)?,
            });
        }
        Ok(plan)
    }
}

fn read_alert(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    let seq: i64 = r.get(0)?;
    let at_ms: i64 = r.get(1)?;
    let code: String = r.get(2)?;
    let lserver: Option<String> = r.get(3)?;
    let ip: Option<String> = r.get(4)?;
    let operation: Option<i64> = r.get(5)?;
    let detail: String = r.get(6)?;
    Ok((|| {
        Ok(Alert {
            seq,
            at_ms: at_ms as u64,
            code: parse_as::<AlertCode>("unknown alert code", &code)?,
            lserver,
            ip: ip.as_deref().map(parse_ip).transpose()?,
            operation,
            detail,
        })
    })())
}

/// Parses a journaled spelling, or names what `text` should have been (`what`) and what it is.
fn parse_as<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, JournalError> {
    text.parse()
        .map_err(|_| JournalError::Corrupt(format!("{what} {text:?}")))
}

fn parse_ip(text: &str) -> Result<IpAddr, JournalError> {
    parse_as("bad IP address", text)
}

fn parse_kind(text: &str) -> Result<OperationKind, JournalError> {
    parse_as("unknown operation kind", text)
}

fn parse_status(text: &str) -> Result<OperationStatus, JournalError> {
    parse_as("unknown operation status", text)
}

fn parse_outcome(text: &str) -> Result<Outcome, JournalError> {
    parse_as("unknown outcome", text)
}

/// A disposition as journaled; any other spelling is a repeated event's (R4).
fn parse_disposition(text: &str) -> Disposition {
    text.parse().unwrap_or(Disposition::Duplicate)
}
