//! The lines `ivc-scenario` (and the nested host's init) print, and their
//! parser: one text protocol for both backends.
//!
//! Output of the processes a scenario runs is forwarded one line at a time
//! with a tag saying whose it is; events are lines starting with `@`:
//!
//! ```text
//! [a] <a line of guest a's serial console>
//! [a vmm] <a line of guest a's ivc-vmm stderr>
//! [server s0] <a line of server s0's stderr>
//! [host t2] <a line of host command t2's stdout or stderr>
//! @ivc-agent ended guest a status=exit:0 timed_out=0 killed=0 elapsed_ms=14210
//! @ivc-agent ended host t2 status=exit:0 timed_out=0 killed=0 elapsed_ms=9000
//! @ivc-agent error <text>
//! @ivc-agent done
//! @ivc-l1 up 3.41 kernel=6.1.0-57-cloud-amd64 cpus=2
//! @ivc-l1 kvm 4.27 nested_npt=Y vgif=1
//! @ivc-l1 error <text>
//! @ivc-l1 exit 0
//! ```

use std::fmt;
use std::process::ExitStatus;
use std::time::Duration;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    /// Exited with this code.
    Exit(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl EndStatus {
    /// From a std status.
    pub fn of(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => EndStatus::Exit(c),
            (None, Some(s)) => EndStatus::Signal(s),
            // Stopped/continued are never reported by wait() without WUNTRACED.
            (None, None) => EndStatus::Exit(-1),
        }
    }

    /// As a std status (the raw wait status encoding).
    pub fn to_exit_status(self) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        match self {
            EndStatus::Exit(c) => ExitStatus::from_raw((c & 0xff) << 8),
            EndStatus::Signal(s) => ExitStatus::from_raw(s & 0x7f),
        }
    }

    fn parse(s: &str) -> Option<Self> {
        let (kind, n) = s.split_once(':')?;
        let n = n.parse().ok()?;
        match kind {
            "exit" => Some(EndStatus::Exit(n)),
            "signal" => Some(EndStatus::Signal(n)),
            _ => None,
        }
    }
}

impl fmt::Display for EndStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndStatus::Exit(c) => write!(f, "exit:{c}"),
            EndStatus::Signal(s) => write!(f, "signal:{s}"),
        }
    }
}

/// What kind of process a tag or an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A guest's serial console.
    Guest,
    /// A guest's ivc-vmm diagnostics (stderr).
    Vmm,
    /// A rendezvous server.
    Server,
    /// A host command.
    Host,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Vmm => "vmm",
            Role::Server => "server",
            Role::Host => "host",
        }
    }
}

/// The end of a guest or host command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// [`Role::Guest`] or [`Role::Host`].
    pub role: Role,
    /// Its name.
    pub name: String,
    /// How the process ended.
    pub status: EndStatus,
    /// Killed by the runner at its timeout.
    pub timed_out: bool,
    /// Killed by a kill rule.
    pub killed: bool,
    /// From its start to its end.
    pub elapsed: Duration,
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Forwarded output.
    Output {
        /// Whose.
        role: Role,
        /// Name of the guest, server or host command.
        name: String,
        /// The text.
        text: String,
    },
    /// A guest or host command ended.
    Ended(Ended),
    /// The runner failed (it carries on where it can).
    AgentError(String),
    /// The runner finished.
    Done,
    /// The nested host's init: a step reached (`up`, `kvm`) and its uptime.
    L1Step {
        /// `up` or `kvm`.
        step: String,
        /// L1 uptime in seconds when it was reached.
        uptime_s: f64,
        /// The rest of the line.
        detail: String,
    },
    /// The nested host's init failed.
    L1Error(String),
    /// The nested host's init is about to reboot with this status.
    L1Exit(i32),
    /// Anything else (kept for reports).
    Other(String),
}

/// `[name] text`, `[name vmm] text`, `[server name] text`, `[host name] text`.
pub fn output(role: Role, name: &str, text: &str) -> String {
    match role {
        Role::Guest => format!("[{name}] {text}"),
        Role::Vmm => format!("[{name} vmm] {text}"),
        Role::Server | Role::Host => format!("[{} {name}] {text}", role.word()),
    }
}

/// The `@ivc-agent ended ...` line.
pub fn ended(e: &Ended) -> String {
    format!(
        "@ivc-agent ended {} {} status={} timed_out={} killed={} elapsed_ms={}",
        e.role.word(),
        e.name,
        e.status,
        u8::from(e.timed_out),
        u8::from(e.killed),
        e.elapsed.as_millis()
    )
}

/// The `@ivc-agent error ...` line (one line: newlines become ` | `).
pub fn agent_error(text: &str) -> String {
    format!("@ivc-agent error {}", text.replace('\n', " | "))
}

/// The last line the runner prints.
pub const DONE: &str = "@ivc-agent done";

/// Parses one line (without its line end).
pub fn parse(line: &str) -> Line {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((tag, text)) = rest.split_once("] ") {
            if let Some(parsed) = parse_tag(tag, text) {
                return parsed;
            }
        } else if let Some(tag) = rest.strip_suffix(']') {
            // An empty line of output.
            if let Some(parsed) = parse_tag(tag, "") {
                return parsed;
            }
        }
    }
    if let Some(rest) = line.strip_prefix("@ivc-agent ") {
        if rest == "done" {
            return Line::Done;
        }
        if let Some(text) = rest.strip_prefix("error ") {
            return Line::AgentError(text.to_string());
        }
        if let Some(fields) = rest.strip_prefix("ended ") {
            if let Some(e) = parse_ended(fields) {
                return Line::Ended(e);
            }
        }
    }
    if let Some(rest) = line.strip_prefix("@ivc-l1 ") {
        let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        match word {
            "error" => return Line::L1Error(tail.to_string()),
            "exit" => {
                if let Ok(n) = tail.trim().parse() {
                    return Line::L1Exit(n);
                }
            }
            _ => {
                let (t, detail) = tail.split_once(' ').unwrap_or((tail, ""));
                if let Ok(uptime_s) = t.parse() {
                    return Line::L1Step {
                        step: word.to_string(),
                        uptime_s,
                        detail: detail.to_string(),
                    };
                }
            }
        }
    }
    Line::Other(line.to_string())
}

fn parse_tag(tag: &str, text: &str) -> Option<Line> {
    let mut words = tag.split(' ');
    let first = words.next()?;
    let second = words.next();
    if words.next().is_some() {
        return None;
    }
    let (role, name) = match (first, second) {
        (name, None) => (Role::Guest, name),
        (name, Some("vmm")) => (Role::Vmm, name),
        ("server", Some(name)) => (Role::Server, name),
        ("host", Some(name)) => (Role::Host, name),
        _ => return None,
    };
    Some(Line::Output {
        role,
        name: name.to_string(),
        text: text.to_string(),
    })
}

fn parse_ended(fields: &str) -> Option<Ended> {
    let mut words = fields.split(' ');
    let role = match words.next()? {
        "guest" => Role::Guest,
        "host" => Role::Host,
        _ => return None,
    };
    let name = words.next()?.to_string();
    let (mut status, mut timed_out, mut killed, mut elapsed) = (None, None, None, None);
    for w in words {
        let (k, v) = w.split_once('=')?;
        match k {
            "status" => status = EndStatus::parse(v),
            "timed_out" => timed_out = Some(v == "1"),
            "killed" => killed = Some(v == "1"),
            "elapsed_ms" => elapsed = v.parse().ok().map(Duration::from_millis),
            _ => {}
        }
    }
    Some(Ended {
        role,
        name,
        status: status?,
        timed_out: timed_out?,
        killed: killed?,
        elapsed: elapsed?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_round_trip() {
        for (role, name, text) in [
            (Role::Guest, "a", "IVC_EXIT=0"),
            (Role::Vmm, "b-2", "warning: x] y"),
            (Role::Server, "s0", "peer 1 joined"),
            (Role::Host, "t2", ""),
            (Role::Guest, "a", "[    1.2] kernel line"),
        ] {
            let l = output(role, name, text);
            assert_eq!(
                parse(&l),
                Line::Output {
                    role,
                    name: name.into(),
                    text: text.into()
                },
                "{l}"
            );
        }
    }

    #[test]
    fn events_round_trip() {
        let e = Ended {
            role: Role::Guest,
            name: "a".into(),
            status: EndStatus::Signal(9),
            timed_out: false,
            killed: true,
            elapsed: Duration::from_millis(1234),
        };
        assert_eq!(parse(&ended(&e)), Line::Ended(e));
        assert_eq!(
            parse(&agent_error("no\nsocket")),
            Line::AgentError("no | socket".into())
        );
        assert_eq!(parse(DONE), Line::Done);
        assert_eq!(
            parse("@ivc-l1 up 3.41 kernel=6.1 cpus=2\r"),
            Line::L1Step {
                step: "up".into(),
                uptime_s: 3.41,
                detail: "kernel=6.1 cpus=2".into()
            }
        );
        assert_eq!(
            parse("@ivc-l1 error no /dev/kvm"),
            Line::L1Error("no /dev/kvm".into())
        );
        assert_eq!(parse("@ivc-l1 exit 3"), Line::L1Exit(3));
    }

    #[test]
    fn anything_else_is_kept_as_is() {
        for l in [
            "",
            "[",
            "[a b c] x",
            "[nobody x] y",
            "@ivc-agent ended guest a status=bogus",
            "plain",
        ] {
            assert_eq!(parse(l), Line::Other(l.into()), "{l}");
        }
    }

    #[test]
    fn end_status_maps_to_exit_status() {
        assert_eq!(EndStatus::Exit(3).to_exit_status().code(), Some(3));
        assert_eq!(
            EndStatus::of(EndStatus::Signal(9).to_exit_status()),
            EndStatus::Signal(9)
        );
        assert_eq!(
            EndStatus::of(EndStatus::Exit(143).to_exit_status()),
            EndStatus::Exit(143)
        );
    }
}
