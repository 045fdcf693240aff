//! Outbound email over plain SMTP (`[smtp]` of the engine config), for R9/R13/R17 emails.
//!
//! This speaks **unencrypted** SMTP without authentication (lettre's `builder_dangerous`): it
//! is meant for a loopback sink (the lab's wire mode) or an internal relay on a trusted network
//! that forwards mail onwards. Pointing it across an untrusted network would expose alert
//! contents; put a local relay (Postfix, an MTA sidecar) in between for that.
//!
//! Every message carries a `Message-ID` (RFC 5322 3.6.4): `<` [`Email::id`] `@` the domain of
//! the sender address `>`, deterministic so a resent alert keeps its id (a random one when the
//! email has no id). The sender's domain is one the operator controls, which keeps the id
//! unique across sites.
//!
//! Failures map onto the outcome classes the engine understands (R8): a refused or unreachable
//! connection is `unavailable` (nothing was sent), a 5xx reply `rejected`, a 4xx reply `busy`
//! (the server asks to retry later), and anything cut off once the session is up, including a
//! timeout, is `unknown` because the server may already have taken the message.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{DeviceError, DeviceResult, Email, Mailer, OutcomeClass};

/// Sends each email over one fresh plain-SMTP session to `host:port`.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
    target: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("target", &self.target)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SmtpMailer {
    /// A mailer for the SMTP server at `host:port` sending as `from`. `timeout` bounds each
    /// network step and the whole exchange (R19). Fails when `from` is not a mail address.
    pub fn new(
        host: &str,
        port: u16,
        from: &str,
        timeout: Duration,
    ) -> Result<SmtpMailer, DeviceError> {
        let from: Mailbox = from.parse().map_err(|e| {
            DeviceError::new(
                OutcomeClass::Rejected,
                format!("sender address {from:?} is not valid: {e}"),
            )
        })?;
        // Plain SMTP on purpose (see the module comment); no pooling so a half-dead connection
        // never turns the next email into an `unknown`.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(timeout))
            .build();
        Ok(SmtpMailer {
            transport,
            from,
            timeout,
            target: format!("{host}:{port}"),
        })
    }

    fn message(&self, email: &Email) -> Result<Message, DeviceError> {
        let to: Mailbox = email.to.parse().map_err(|e| {
            DeviceError::new(
                OutcomeClass::Rejected,
                format!("recipient {:?} is not valid: {e}", email.to),
            )
        })?;
        let message_id =
            (!email.id.is_empty()).then(|| format!("<{}@{}>", email.id, self.from.email.domain()));
        Message::builder()
            .message_id(message_id)
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|e| {
                DeviceError::new(
                    OutcomeClass::Rejected,
                    format!("cannot build the email: {e}"),
                )
            })
    }
}

/// Maps a lettre error onto an outcome class (see the module comment).
fn classify(error: &lettre::transport::smtp::Error) -> OutcomeClass {
    if error.is_permanent() {
        OutcomeClass::Rejected
    } else if error.is_transient() {
        OutcomeClass::Busy
    } else if error.to_string().starts_with("Connection error") {
        // lettre raises its `Connection` kind only while opening the TCP connection (refused,
        // unreachable, connect timeout): no SMTP command has been sent yet. It offers no
        // accessor for that kind, so its stable Display prefix is what tells it apart.
        OutcomeClass::Unavailable
    } else if error.is_client() {
        // Rejected locally before anything went out (e.g. an envelope lettre refuses).
        OutcomeClass::Rejected
    } else {
        OutcomeClass::Unknown
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> DeviceResult<()> {
        let message = self.message(email)?;
        // lettre's timeout applies per step; this one bounds the whole session (R19). When it
        // fires the DATA may already have been accepted, so the result is `unknown`.
        let budget = self.timeout.saturating_mul(2);
        match tokio::time::timeout(budget, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(DeviceError::new(
                classify(&e),
                format!("smtp {}: {e}", self.target),
            )),
            Err(_) => Err(DeviceError::new(
                OutcomeClass::Unknown,
                format!("smtp {}: no answer within {budget:?}", self.target),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_sender_is_refused_at_construction() {
        let e =
            SmtpMailer::new("127.0.0.1", 25, "not an address", Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.class, OutcomeClass::Rejected);
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mailer = SmtpMailer::new(
            "127.0.0.1",
            port,
            "qlab@example.com",
            Duration::from_secs(2),
        )
        .unwrap();
        let email = Email {
            id: String::new(),
            to: "admin@example.com".into(),
            subject: "s".into(),
            body: "b".into(),
        };
        let e = mailer.send(&email).await.unwrap_err();
        assert_eq!(e.class, OutcomeClass::Unavailable, "{e}");
    }
}
