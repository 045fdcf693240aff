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
        match &nic.location {
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
                let result = match r {
                    Ok(pg) => (Truth::of_portgroup(site, hypervisor, pg), None),
                    Err(e) if e.class == OutcomeClass::Auth => {
                        self.login(hypervisor).await?;
                        (Truth::Unknown, Some(e.detail))
                    }
                    Err(e) => (Truth::Unknown, Some(e.detail)),
                };
                self.shared.note_truth(&self.ls.path, nic.index, &result.0);
                Ok(result)
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
                let result = match r {
                    Ok(vlan) => (Truth::of_vlan(site, vlan), None),
                    Err(e) => (Truth::Unknown, Some(e.detail)),
                };
                self.shared.note_truth(&self.ls.path, nic.index, &result.0);
                Ok(result)
            }
        }
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
    pub async fn move_nic(
        &self,
        nic: &Nic,
        target: &str,
        read_first: bool,
    ) -> Result<NicMove, Halted> {
        let settings = self.shared.settings;
        let max_attempts = settings.retry.attempts.max(1);
        let mut must_read = read_first;
        let mut truth = Truth::Unknown;
        let mut truth_fresh = false;
        // The last device error met: what the alert says when the NIC is not confirmed.
        let mut why: Option<String> = None;
        // A write since the last read that showed the NIC elsewhere: it may have landed. It
        // starts from the evidence an earlier operation left (R8, "evidence across
        // operations"): a record whose last known device network is the target means a failed
        // read-first read leads to another read, never to a blind write (INV-6).
        let mut may_have_applied = self.last_known(nic).as_deref() == Some(target);
        let mut attempts = 0u32;
        let done = |truth: Truth, why: Option<String>| {
            let confirmed = truth.network() == Some(target);
            NicMove {
                index: nic.index,
                confirmed,
                truth,
                why: why.filter(|_| !confirmed),
            }
        };
        loop {
            if must_read {
                let (read, failure) = self.read(nic).await?;
                truth = read;
                why = failure.or(why);
                truth_fresh = true;
                must_read = false;
                match &truth {
                    Truth::Network(n) if n == target => return Ok(done(truth, None)),
                    Truth::Network(_) | Truth::Foreign(_) => may_have_applied = false,
                    Truth::Unknown => {}
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
            if may_have_applied && truth == Truth::Unknown {
                // An earlier write may have landed and no read has said otherwise: read again
                // rather than write blind (INV-6).
                must_read = true;
                continue;
            }
            truth_fresh = false;
            match self.write(nic, target).await? {
                Ok(()) if !settings.verify_writes => {
                    return Ok(done(Truth::Network(target.to_string()), None));
                }
                Ok(()) => {
                    may_have_applied = true;
                    // R8: a device that says ok without applying is caught by this read.
                    let (read, failure) = self.read(nic).await?;
                    truth = read;
                    why = failure.or(why);
                    truth_fresh = true;
                    if truth.network() == Some(target) {
                        return Ok(done(truth, None));
                    }
                    // A stale read or an unapplied write: read again before writing again.
                    must_read = true;
                }
                Err(e) => {
                    match e.class {
                        // May have been applied: only device truth can tell (R8). An error reply
                        // is read too: a device that applies and then errors must not be written
                        // twice (INV-6), and a read costs less than a wrong write.
                        OutcomeClass::Unknown | OutcomeClass::Rejected | OutcomeClass::Busy => {
                            may_have_applied = true;
                            must_read = true
                        }
                        OutcomeClass::Auth => {
                            if let NicLocation::Virtual { hypervisor, .. } = &nic.location {
                                self.login(hypervisor).await?;
                            }
                        }
                        // Refused before processing: nothing changed, nothing to read.
                        OutcomeClass::Unavailable => {}
                    }
                    why = Some(e.detail);
                }
            }
        }
        if !truth_fresh {
            // R19: past the deadline, one more read tells where the NIC really is.
            let (read, failure) = self.read(nic).await?;
            truth = read;
            why = failure.or(why);
        }
        Ok(done(truth, why))
    }

    /// Where the engine's records last saw `nic` at its device, if they know.
    fn last_known(&self, nic: &Nic) -> Option<String> {
        let mut state = self.shared.lock();
        state
            .ls(&self.ls.path)
            .records
            .iter()
            .find(|r| r.index == nic.index)
            .and_then(|r| r.device_network.clone())
    }
}
