//! Moving and reading one NIC (R8, R19): the hypervisor's or the switch's call, a write
//! retried with backoff within the operation's deadline and verified by a read, an `unknown`
//! outcome resolved by reading device truth.

use super::*;

impl OpCtx<'_> {
    /// Sets `port` to `vlan`, in one call with the switch's other pending changes (R15).
    async fn set_port(
        &self,
        switch: &str,
        adapter: &Arc<dyn Switch>,
        port: &str,
        vlan: u16,
        budget: Budget,
    ) -> DeviceResult<()> {
        let Some(queue) = self.shared.devices.get(switch) else {
            return bounded(budget.call_timeout_now(), adapter.set_port(port, vlan)).await;
        };
        let adapter = adapter.clone();
        let call = move |changes: Vec<(String, u16)>| {
            let adapter = adapter.clone();
            async move { adapter.set_ports(&changes).await }
        };
        let item = (port.to_string(), vlan);
        queue
            .batched(&queue.set_ports, Class::Write, item, budget, call)
            .await
    }

    /// Reads `port`, in one call with the switch's other pending reads (R15).
    async fn get_port(
        &self,
        switch: &str,
        adapter: &Arc<dyn Switch>,
        port: &str,
        budget: Budget,
    ) -> DeviceResult<u16> {
        let Some(queue) = self.shared.devices.get(switch) else {
            return bounded(budget.call_timeout_now(), adapter.get_port(port)).await;
        };
        let adapter = adapter.clone();
        let call = move |ports: Vec<String>| {
            let adapter = adapter.clone();
            async move { adapter.get_ports(&ports).await }
        };
        queue
            .batched(
                &queue.get_ports,
                Class::Read,
                port.to_string(),
                budget,
                call,
            )
            .await
    }

    /// Reads where `nic` is at the device; a failed read also says why.
    pub async fn read(&self, nic: &Nic) -> Result<(Truth, Option<String>), Halted> {
        let site = &self.shared.site;
        let result = match &nic.location {
            NicLocation::Virtual {
                hypervisor,
                vm,
                device,
            } => {
                let Some(h) = self.shared.adapters.hypervisors.get(hypervisor) else {
                    return Ok((Truth::Unknown, Some(missing(hypervisor).detail)));
                };
                let r = self
                    .call(
                        hypervisor,
                        DeviceCall::GetNic,
                        Some(nic.index),
                        None,
                        self.slot(
                            hypervisor,
                            Class::Read,
                            self.read_budget(),
                            h.get_nic(vm, device),
                        ),
                    )
                    .await?;
                match r {
                    Ok(pg) => (Truth::of_portgroup(site, hypervisor, pg), None),
                    // Log in for the next call, unless the deadline leaves none: a login then
                    // would only keep the operation running past its deadline (R19).
                    Err(e) if e.class == OutcomeClass::Auth && !self.remaining().is_zero() => {
                        self.login(hypervisor).await?;
                        (Truth::Unknown, Some(e.detail))
                    }
                    Err(e) => (Truth::Unknown, Some(e.detail)),
                }
            }
            NicLocation::Physical { switch, port } => {
                let Some(s) = self.shared.adapters.switches.get(switch) else {
                    return Ok((Truth::Unknown, Some(missing(switch).detail)));
                };
                let r = self
                    .call(
                        switch,
                        DeviceCall::GetPort,
                        Some(nic.index),
                        None,
                        self.get_port(switch, s, port, self.read_budget()),
                    )
                    .await?;
                match r {
                    Ok(vlan) => (Truth::of_vlan(site, vlan), None),
                    Err(e) => (Truth::Unknown, Some(e.detail)),
                }
            }
        };
        self.shared.note_truth(&self.ls.path, nic.index, &result.0);
        Ok(result)
    }

    pub(super) async fn login(&self, hypervisor: &str) -> Result<(), Halted> {
        if let Some(h) = self.shared.adapters.hypervisors.get(hypervisor) {
            // A failed login needs no handling here: the retried call fails with `auth` again
            // and counts against the attempts.
            let _login = self
                .call(
                    hypervisor,
                    DeviceCall::Login,
                    None,
                    None,
                    self.slot(hypervisor, Class::Write, self.read_budget(), h.login()),
                )
                .await?;
        }
        Ok(())
    }

    /// Writes `network` to the NIC at its device.
    async fn write(&self, nic: &Nic, network: &str) -> Result<DeviceResult<()>, Halted> {
        let site = &self.shared.site;
        let budget = self.change_budget();
        match &nic.location {
            NicLocation::Virtual {
                hypervisor,
                vm,
                device,
            } => {
                let (Some(h), Some(pg)) = (
                    self.shared.adapters.hypervisors.get(hypervisor),
                    site.portgroup(hypervisor, network),
                ) else {
                    return Ok(Err(missing(hypervisor)));
                };
                self.call(
                    hypervisor,
                    DeviceCall::SetNic,
                    Some(nic.index),
                    Some(pg.to_string()),
                    self.slot(hypervisor, Class::Write, budget, h.set_nic(vm, device, pg)),
                )
                .await
            }
            NicLocation::Physical { switch, port } => {
                let (Some(s), Some(net)) = (
                    self.shared.adapters.switches.get(switch),
                    site.network(network),
                ) else {
                    return Ok(Err(missing(switch)));
                };
                let vlan = net.vlan;
                self.call(
                    switch,
                    DeviceCall::SetPort,
                    Some(nic.index),
                    Some(vlan.to_string()),
                    self.set_port(switch, s, port, vlan, budget),
                )
                .await
            }
        }
    }

    /// Moves one NIC to `target` (R8). With `read_first` the device is read before any write,
    /// so a NIC already there is confirmed without a write (R12, INV-6).
    ///
    /// The move starts from the evidence the NIC's record carries (R8, "evidence across
    /// operations"): what a read last confirmed, and a write that may have landed since. While
    /// that evidence says the NIC is on `target`, a failed read leads to another read, never to
    /// a write (INV-6); a read that contradicts it is read again before the engine acts
    /// ([`OpCtx::observe`]).
    pub async fn move_nic(
        &self,
        nic: &Nic,
        target: &str,
        read_first: bool,
    ) -> Result<NicMove, Halted> {
        let max_attempts = self.shared.settings.retry.attempts.max(1);
        let target_truth = Truth::Network(target.to_string());
        let (expected, written) = self.evidence(nic, target);
        let mut p = Progress {
            expected,
            written,
            must_read: read_first,
            truth: Truth::Unknown,
            truth_fresh: false,
            why: None,
            seen: None,
            doubted: None,
        };
        let mut attempts = 0u32;
        let done = |truth: Truth, why: Option<String>, written: Option<String>, seen| {
            let confirmed = truth.network() == Some(target);
            NicMove {
                index: nic.index,
                confirmed,
                truth,
                why: why.filter(|_| !confirmed),
                written: written.filter(|_| !confirmed),
                seen,
            }
        };
        loop {
            if p.must_read {
                self.read_step(nic, &mut p).await?;
                if p.truth == target_truth {
                    return Ok(done(p.truth, None, None, p.seen));
                }
            }
            if attempts >= max_attempts || self.remaining().is_zero() {
                break;
            }
            if attempts > 0 {
                self.back_off(attempts).await;
                if self.remaining().is_zero() {
                    break;
                }
            }
            attempts += 1;
            if p.expected.as_ref() == Some(&target_truth)
                || p.written.is_some()
                || p.doubted.as_deref() == Some(target)
            {
                // The evidence says the NIC is on the target (a confirmed read), or a write
                // (of any network) may have landed since the last read, or the device's last
                // answer showed the target and could not be read again: no write until a read
                // says where the NIC is, never a blind one (R8, INV-6).
                p.must_read = true;
                continue;
            }
            if self.write_step(nic, target, &mut p).await? {
                return Ok(done(target_truth, None, None, p.seen));
            }
        }
        if !p.truth_fresh {
            // R19: past the deadline, one more read tells where the NIC really is.
            let observed = self.observe(nic, p.expected.as_ref()).await?;
            p.learn(observed);
        }
        // A doubted answer no read has settled goes to the record like a write that may have
        // landed: the next operation reads before it writes that NIC (INV-6).
        Ok(done(p.truth, p.why, p.written.or(p.doubted), p.seen))
    }

    /// Reads the NIC during a move, the answer weighed against the evidence
    /// ([`OpCtx::observe`]), and updates the move's evidence with it.
    async fn read_step(&self, nic: &Nic, p: &mut Progress) -> Result<(), Halted> {
        let observed = self.observe(nic, p.expected.as_ref()).await?;
        p.learn(observed);
        p.truth_fresh = true;
        p.must_read = false;
        Ok(())
    }

    /// Writes `target` to the NIC during a move and records what its answer leaves open (R8).
    /// `true` when the write counts as confirmed without a read (`verify_writes` off).
    async fn write_step(&self, nic: &Nic, target: &str, p: &mut Progress) -> Result<bool, Halted> {
        p.truth_fresh = false;
        match self.write(nic, target).await? {
            Ok(()) if !self.shared.settings.verify_writes => return Ok(true),
            Ok(()) => {
                p.written = Some(target.to_string());
                p.expected = Some(Truth::Network(target.to_string()));
                // The device acknowledged it: until a read confirms otherwise, this is what
                // a contradicting read is weighed against, in this operation and the next.
                p.seen = Some(target.to_string());
                // R8: a device that says ok without applying is caught by this read (a
                // stale answer is read again before anything acts on it).
                p.must_read = true;
            }
            Err(e) => {
                match e.class {
                    // May have been applied: only device truth can tell (R8). An error reply
                    // is read too: a device that applies and then errors must not be written
                    // twice (INV-6), and a read costs less than a wrong write.
                    // No answer, or the device said it did not apply: the write may still
                    // have landed (no blind write while reads fail), but the device never
                    // claimed it did, so a read that shows the old value is believed at
                    // once (R8: `unknown` is resolved by reading) and the retry is not
                    // held up by `confirm_read_after`.
                    OutcomeClass::Unknown | OutcomeClass::Rejected | OutcomeClass::Busy => {
                        p.written = Some(target.to_string());
                        // Either answer of the next read is plausible: nothing to weigh it
                        // against until it comes.
                        p.expected = None;
                        p.must_read = true
                    }
                    OutcomeClass::Auth => {
                        if let NicLocation::Virtual { hypervisor, .. } = &nic.location {
                            self.login(hypervisor).await?;
                        }
                    }
                    // Refused before processing: nothing changed, nothing to read.
                    OutcomeClass::Unavailable => {}
                }
                p.why = Some(e.detail);
            }
        }
        Ok(false)
    }

    /// Reads `nic` and weighs the answer against `expected`, what the engine's evidence says
    /// (R8): a read that contradicts it may be a stale answer, so the NIC is read again
    /// `confirm_read_after` later and the later read is the one returned. When the deadline
    /// leaves no room for that wait, or the later read fails, the contradicting answer is not
    /// acted on: the NIC's state is unknown, the detail says why, and the answer comes back as
    /// [`Observed::doubted`].
    pub(crate) async fn observe(
        &self,
        nic: &Nic,
        expected: Option<&Truth>,
    ) -> Result<Observed, Halted> {
        let (truth, failure) = self.read(nic).await?;
        let Some(expected) = expected.filter(|e| truth != Truth::Unknown && truth != **e) else {
            return Ok(Observed {
                truth,
                failure,
                doubted: None,
            });
        };
        let wait = self.shared.settings.confirm_read_after;
        let contradiction = format!(
            "a read showed {} where the engine's evidence says {}",
            truth.describe(),
            expected.describe()
        );
        if self.remaining() < wait {
            return Ok(Observed {
                truth: Truth::Unknown,
                failure: Some(format!(
                    "{contradiction}, and the deadline left no time to read it again after {}",
                    humantime::format_duration(wait)
                )),
                doubted: Some(truth),
            });
        }
        tokio::time::sleep(wait).await;
        let (later, later_failure) = self.read(nic).await?;
        if later != Truth::Unknown {
            return Ok(Observed {
                truth: later,
                failure: later_failure,
                doubted: None,
            });
        }
        Ok(Observed {
            truth: Truth::Unknown,
            failure: Some(format!(
                "{contradiction}, and the read again {} later failed: {}",
                humantime::format_duration(wait),
                later_failure.as_deref().unwrap_or("no answer")
            )),
            doubted: Some(truth),
        })
    }

    /// The evidence about `nic` when a move to `target` starts (R8, "evidence across
    /// operations"): what a read that contradicts is weighed against (the network its record
    /// last confirmed), and a write that may have landed since (no blind write of it). A
    /// restore weighs a NIC against the drift watch's latest read of it: the watch has just
    /// read the drift twice, and a NIC of the same L-Server that did not drift (or that the
    /// watch could not read) keeps what its record confirmed, so a failed read is no licence
    /// for a blind write.
    /// An operation resumed after a restart may have had a write of `target` in flight when the
    /// engine stopped: that write may have landed (no blind rewrite of it), but the engine never
    /// heard the device confirm it, so a first read that shows the NIC elsewhere is believed
    /// (R8 reads a contradicting answer again only against what the engine confirmed). A
    /// recovery of hundreds of operations then costs one read per NIC, not two.
    fn evidence(&self, nic: &Nic, target: &str) -> (Option<Truth>, Option<String>) {
        let mut state = self.shared.lock();
        let ls_state = state.ls(&self.ls.path);
        let record = ls_state.records.iter().find(|r| r.index == nic.index);
        let written = if self.resumed {
            Some(target.to_string())
        } else {
            record.and_then(|r| r.last_write.clone())
        };
        let watched = match ls_state.last_read.get(nic.index) {
            Some(Some((_, seen))) if self.kind == OperationKind::Restore => Some(seen.clone()),
            _ => None,
        };
        let confirmed = watched.unwrap_or_else(|| record.and_then(|r| r.device_network.clone()));
        (confirmed.map(Truth::Network), written)
    }
}

/// A read weighed against the engine's evidence ([`OpCtx::observe`]).
pub(crate) struct Observed {
    /// Device truth as far as the engine may act on it: `Unknown` when the read failed or its
    /// answer contradicted the evidence and could not be read again.
    pub truth: Truth,
    /// Why `truth` is unknown.
    pub failure: Option<String>,
    /// An answer that contradicted the evidence and could not be confirmed by a later read. It
    /// may be stale, so the evidence is not replaced by it; but it is the last answer the device
    /// gave, so its network is not written until a read answers again (R8, INV-6).
    pub doubted: Option<Truth>,
}

/// Where one NIC's move stands (R8): the engine's evidence about the NIC and what it last saw.
struct Progress {
    /// What a read that contradicts is weighed against ([`OpCtx::observe`]).
    expected: Option<Truth>,
    /// A network written after the last read that showed a value, whose write may have landed.
    written: Option<String>,
    /// No write until a read says where the NIC is.
    must_read: bool,
    /// Last known device truth.
    truth: Truth,
    /// `truth` comes from a read made after the last write.
    truth_fresh: bool,
    /// The last device error met: what the alert says when the NIC is not confirmed.
    why: Option<String>,
    /// The network the last read that answered showed, or a write the device acknowledged
    /// since ([`NicMove::seen`]).
    seen: Option<String>,
    /// The network of an answer that contradicted the evidence and could not be read again
    /// ([`Observed::doubted`]), until a read answers: not written, since the device last
    /// showed the NIC there (INV-6).
    doubted: Option<String>,
}

impl Progress {
    /// Takes what a read during the move learned (R8).
    fn learn(&mut self, observed: Observed) {
        self.why = observed.failure.or(self.why.take());
        if observed.truth != Truth::Unknown {
            // A read that shows a value supersedes every earlier write (R8).
            self.expected = Some(observed.truth.clone());
            self.written = None;
            self.seen = observed.truth.network().map(str::to_string);
            self.doubted = None;
        } else if let Some(doubted) = observed.doubted {
            // The device's last answer contradicted the evidence and could not be read again.
            // The evidence stays what the answer is weighed against (it may be the stale one),
            // but writing the answer's network would write what the device last showed.
            self.doubted = doubted.network().map(str::to_string);
        }
        self.truth = observed.truth;
    }
}
