//! Whole-device steps: saving a switch's running configuration (R10) and resetting a
//! server through its BMC (R13).

use super::*;

impl OpCtx<'_> {
    /// Saves the switch's config; saves pending together share one call, which persists every
    /// change made before it started.
    async fn save(
        &self,
        switch: &str,
        adapter: &Arc<dyn Switch>,
        budget: Budget,
    ) -> DeviceResult<()> {
        let Some(queue) = self.shared.devices.get(switch) else {
            return bounded(budget.call_timeout_now(), adapter.save_config()).await;
        };
        let adapter = adapter.clone();
        let call = move |waiting: Vec<()>| {
            let adapter = adapter.clone();
            async move { vec![adapter.save_config().await; waiting.len()] }
        };
        queue
            .batched(&queue.saves, Class::Save, (), budget, call)
            .await
    }

    /// Saves a switch's running config (R8 with `persist`), retried like a write.
    pub async fn save_config(&self, switch: &str) -> Result<Result<(), DeviceError>, Halted> {
        let Some(s) = self.shared.adapters.switches.get(switch) else {
            return Ok(Err(missing(switch)));
        };
        let retry = self.shared.settings.retry;
        let mut last = Err(DeviceError::new(
            OutcomeClass::Unavailable,
            "deadline passed before saving",
        ));
        for attempt in 0..retry.attempts.max(1) {
            if attempt > 0 {
                self.back_off(attempt).await;
            }
            if self.remaining().is_zero() {
                break;
            }
            // Saving twice is harmless, so `unknown` is simply retried.
            last = self
                .call(
                    switch,
                    DeviceCall::SaveConfig,
                    None,
                    None,
                    self.save(switch, s, self.change_budget()),
                )
                .await?;
            if last.is_ok() {
                break;
            }
        }
        Ok(last)
    }

    /// Resets the server (R13): the hypervisor for a virtual L-Server, the BMC for a physical
    /// one. An `unknown` outcome is not retried: a second reset could cut a reboot in progress.
    pub async fn reset(&self) -> Result<Result<(), DeviceError>, Halted> {
        let retry = self.shared.settings.retry;
        let mut last = Err(DeviceError::new(
            OutcomeClass::Unavailable,
            "deadline passed before the reset",
        ));
        for attempt in 0..retry.attempts.max(1) {
            if attempt > 0 {
                self.back_off(attempt).await;
            }
            if self.remaining().is_zero() {
                break;
            }
            let budget = self.change_budget();
            last = match (&self.ls.vm, &self.ls.bmc) {
                (Some((hypervisor, vm)), _) => {
                    match self.shared.adapters.hypervisors.get(hypervisor) {
                        Some(h) => {
                            self.call(
                                hypervisor,
                                DeviceCall::PowerReset,
                                None,
                                None,
                                self.slot(hypervisor, Class::Write, budget, h.power_reset(vm)),
                            )
                            .await?
                        }
                        None => Err(missing(hypervisor)),
                    }
                }
                (None, Some(bmc)) => match self.shared.adapters.bmcs.get(bmc) {
                    Some(b) => {
                        self.call(
                            bmc,
                            DeviceCall::Reset,
                            None,
                            None,
                            self.slot(bmc, Class::Write, budget, b.reset()),
                        )
                        .await?
                    }
                    None => Err(missing(bmc)),
                },
                (None, None) => Err(DeviceError::new(
                    OutcomeClass::Rejected,
                    "no hypervisor VM or BMC is configured for this L-Server",
                )),
            };
            match &last {
                Ok(()) => break,
                Err(e) if e.class == OutcomeClass::Unknown => break,
                Err(e) if e.class == OutcomeClass::Auth => {
                    if let Some((hypervisor, _)) = &self.ls.vm {
                        self.login(hypervisor).await?;
                    }
                }
                Err(_) => {}
            }
        }
        Ok(last)
    }
}
