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
        self.retried("deadline passed before saving", || async {
            // Saving twice is harmless, so `unknown` is simply retried.
            let last = self
                .call(
                    switch,
                    DeviceCall::SaveConfig,
                    None,
                    None,
                    self.save(switch, s, self.change_budget()),
                )
                .await?;
            let done = last.is_ok();
            Ok((last, done))
        })
        .await
    }

    /// Runs `attempt` up to the configured number of attempts, backing off between them, until
    /// it says its result is final or the deadline leaves no time (R8, R19). Answers the last
    /// attempt's result; when no attempt ran, an `unavailable` error saying `before_any`.
    async fn retried<F, Fut>(
        &self,
        before_any: &str,
        mut attempt: F,
    ) -> Result<Result<(), DeviceError>, Halted>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(Result<(), DeviceError>, bool), Halted>>,
    {
        let retry = self.shared.settings.retry;
        let mut last = Err(DeviceError::new(OutcomeClass::Unavailable, before_any));
        for n in 0..retry.attempts.max(1) {
            if n > 0 {
                self.back_off(n).await;
            }
            if self.remaining().is_zero() {
                break;
            }
            let done;
            (last, done) = attempt().await?;
            if done {
                break;
            }
        }
        Ok(last)
    }

    /// Resets the server (R13): the hypervisor for a virtual L-Server, the BMC for a physical
    /// one. An `unknown` outcome is not retried: a second reset could cut a reboot in progress.
    pub async fn reset(&self) -> Result<Result<(), DeviceError>, Halted> {
        self.retried("deadline passed before the reset", || async {
            let budget = self.change_budget();
            let last = match (&self.ls.vm, &self.ls.bmc) {
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
            let done = match &last {
                Ok(()) => true,
                Err(e) if e.class == OutcomeClass::Unknown => true,
                Err(e) if e.class == OutcomeClass::Auth => {
                    if let Some((hypervisor, _)) = &self.ls.vm {
                        self.login(hypervisor).await?;
                    }
                    false
                }
                Err(_) => false,
            };
            Ok((last, done))
        })
        .await
    }
}
