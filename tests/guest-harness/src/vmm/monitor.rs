//! A look inside a stuck nested host through its QEMU monitor.
//!
//! The nested QEMU listens on a human-monitor (HMP) socket. When an L1 misses
//! its deadline the runner asks it for the vCPU's registers and local APIC
//! before killing it, so that a hang of the emulator itself (docs/testing.md,
//! "an L1 that stops taking interrupts") leaves evidence behind. Best effort:
//! whatever goes wrong is reported in the text, never as an error.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// What the runner asks a stuck L1's monitor.
pub(crate) const STUCK_L1: &[&str] = &["info registers", "info lapic"];

/// HMP's prompt, which ends every answer.
const PROMPT: &[u8] = b"(qemu) ";
/// An answer longer than this is cut (a monitor gone wrong must not fill
/// the test's memory).
const MAX_ANSWER: usize = 1 << 20;

/// The answers of the monitor at `socket` to `commands`, each after a
/// `(qemu) command` line; or why there are none.
pub(crate) fn ask(socket: &Path, commands: &[&str]) -> String {
    let talk = || -> std::io::Result<String> {
        let mut s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let _banner = until_prompt(&mut s)?;
        let mut out = String::new();
        for c in commands {
            s.write_all(format!("{c}\n").as_bytes())?;
            let answer = until_prompt(&mut s)?;
            out.push_str(&format!("(qemu) {c}\n{}", printable(&answer, c)));
        }
        Ok(out)
    };
    talk().unwrap_or_else(|e| format!("(QEMU monitor at {}: {e})\n", socket.display()))
}

/// Bytes up to the next prompt (without it).
fn until_prompt(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(PROMPT) && buf.len() < MAX_ANSWER {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    if buf.ends_with(PROMPT) {
        buf.truncate(buf.len() - PROMPT.len());
    }
    Ok(buf)
}

/// The answer as text: the monitor's echo of `command` (with its terminal
/// escapes) dropped, other control characters too.
fn printable(answer: &[u8], command: &str) -> String {
    let text = String::from_utf8_lossy(answer);
    let mut out = String::new();
    for line in text.lines() {
        let clean: String = line
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        if clean.contains(command) && out.is_empty() {
            continue;
        }
        out.push_str(clean.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::{qemu_available, qemu_binary, report_skip};
    use std::process::{Command, Stdio};

    /// A paused QEMU answers both questions the runner asks a stuck L1.
    #[test]
    fn a_paused_qemu_shows_its_registers_and_lapic() {
        if let Err(why) = qemu_available() {
            report_skip(&format!(
                "a_paused_qemu_shows_its_registers_and_lapic: {why}"
            ));
            return;
        }
        let dir = crate::ScratchDir::new().expect("scratch dir");
        let sock = dir.join("monitor.sock");
        let mut child = Command::new(qemu_binary())
            .args([
                "-M",
                "pc",
                "-nodefaults",
                "-display",
                "none",
                "-S",
                "-monitor",
            ])
            .arg(format!("unix:{},server,nowait", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn qemu");
        let mut waited = 0;
        while !sock.exists() && waited < 100 {
            std::thread::sleep(Duration::from_millis(50));
            waited += 1;
        }
        let text = ask(&sock, STUCK_L1);
        let _ = child.kill();
        let _ = child.wait();
        assert!(text.contains("(qemu) info registers\n"), "{text}");
        // EIP in real mode, RIP in long mode; HLT= says whether it halted.
        assert!(text.contains("IP=") && text.contains("HLT="), "{text}");
        assert!(text.to_lowercase().contains("lvt"), "{text}");
        // A socket nobody listens on: said in the text, not a panic.
        let gone = ask(&dir.join("nobody.sock"), STUCK_L1);
        assert!(gone.starts_with("(QEMU monitor at"), "{gone}");
    }
}
