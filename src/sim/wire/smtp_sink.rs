//! A minimal SMTP sink on 127.0.0.1 for the engine's tenant emails in wire mode: it speaks
//! enough of RFC 5321 (HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) to accept messages and
//! keeps them for the lab. Bounded: message size, line length, connections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed.
    pub data: String,
}

/// Largest message kept.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest command or data line.
const MAX_LINE_BYTES: usize = 4096;
/// Most concurrent sessions.
const MAX_SESSIONS: usize = 64;
/// A silent client is dropped after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running sink.
pub struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    task: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Listens on 127.0.0.1, any free port.
    pub async fn start() -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        let sessions = Arc::new(Semaphore::new(MAX_SESSIONS));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(permit) = sessions.clone().try_acquire_owned() else {
                    continue;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(IDLE_TIMEOUT * 4, session(stream, store)).await;
                    drop(permit);
                });
            }
        });
        Ok(SmtpSink { port, mails, task })
    }

    /// The port it listens on (host 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Messages received so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.mails.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn session(stream: TcpStream, store: Arc<Mutex<Vec<ReceivedMail>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 qlab-smtp-sink ESMTP\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    loop {
        let Some(line) = read_line(&mut lines).await? else {
            return Ok(());
        };
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 qlab-smtp-sink\r\n"
        } else if let Some(rest) = upper.strip_prefix("MAIL FROM:") {
            from = address(&line[line.len() - rest.len()..]);
            to.clear();
            b"250 OK\r\n"
        } else if let Some(rest) = upper.strip_prefix("RCPT TO:") {
            to.push(address(&line[line.len() - rest.len()..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                let Some(l) = read_line(&mut lines).await? else {
                    return Ok(());
                };
                if l == "." {
                    break;
                }
                if data.len() + l.len() < MAX_MESSAGE_BYTES {
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push('\n');
                }
            }
            let mail = ReceivedMail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            };
            store.lock().unwrap_or_else(|e| e.into_inner()).push(mail);
            b"250 OK: queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 Command not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// One line without CRLF; `None` at end of stream or idle timeout. Over-long lines are cut.
async fn read_line(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(IDLE_TIMEOUT, async {
        let mut limited = lines.take(MAX_LINE_BYTES as u64);
        limited.read_until(b'\n', &mut buf).await
    })
    .await;
    match read {
        Ok(Ok(0)) | Err(_) => Ok(None),
        Ok(Ok(_)) => {
            let text = String::from_utf8_lossy(&buf);
            Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
        }
        Ok(Err(e)) => Err(e),
    }
}

fn address(text: &str) -> String {
    text.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}
