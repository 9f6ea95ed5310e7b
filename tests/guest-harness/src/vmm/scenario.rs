//! What runs under ivc-vmm in one go: rendezvous servers, Linux guests with
//! their ivc devices, an optional command on the VMM host, and kill rules.
//!
//! A [`Scenario`] is built on the test host and executed by `ivc-scenario`
//! where ivc-vmm runs: inside the nested host (L1), or on the test host itself
//! when its `/dev/kvm` has hardware virtualization. It travels as JSON, so
//! every field here is plain data; paths that only exist where the scenario
//! runs (sockets) are named, not spelled out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::spec::GuestSpec;

/// A rendezvous server (`ivc-rendezvous`) the guests' devices join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// Name the devices refer to; its socket is `<workdir>/<name>.sock`.
    pub name: String,
    /// Shared memory size in bytes (a power of two).
    pub shm_size: u64,
    /// MSI-X vectors per peer (1..=64).
    pub vectors: u32,
}

/// An ivc device of an ivc-vmm guest (`ivc-vmm run --ivc`), joined to the
/// [`ServerSpec`] named `server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum IvcDevice {
    /// `ivc-pio`: port I/O relayed by the VMM.
    Pio {
        /// The server's name.
        server: String,
    },
    /// `ivc-shm` without interrupts.
    ShmPoll {
        /// The server's name.
        server: String,
    },
    /// `ivc-shm` with doorbells and MSI-X.
    ShmIrq {
        /// The server's name.
        server: String,
    },
}

impl IvcDevice {
    /// The `--ivc` kind.
    pub fn kind(&self) -> &'static str {
        match self {
            IvcDevice::Pio { .. } => "pio",
            IvcDevice::ShmPoll { .. } => "shm-poll",
            IvcDevice::ShmIrq { .. } => "shm-irq",
        }
    }

    /// The server the device joins.
    pub fn server(&self) -> &str {
        match self {
            IvcDevice::Pio { server }
            | IvcDevice::ShmPoll { server }
            | IvcDevice::ShmIrq { server } => server,
        }
    }

    /// The `--ivc` argument, given the server's socket path and vector count
    /// (which must equal the server's).
    pub fn vmm_arg(&self, socket: &str, vectors: u32) -> String {
        format!("{},socket={socket},vectors={vectors}", self.kind())
    }
}

/// One Linux guest in its own ivc-vmm process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmGuest {
    /// Name in output tags (`[name] line`).
    pub name: String,
    /// The full kernel command line (the command travels in `ivc_cmd=`).
    pub cmdline: String,
    /// vCPUs.
    pub cpus: u32,
    /// RAM in MiB.
    pub mem_mib: u32,
    /// ivc devices, in PCI slot order.
    pub devices: Vec<IvcDevice>,
    /// The ivc-vmm process is killed after this long (from its start).
    pub timeout_ms: u64,
    /// Start this long after the scenario starts (a peer that joins late)...
    pub start_after_ms: u64,
    /// ...and not before this guest's VMM has exited (a peer that replaces
    /// one that left).
    #[serde(default)]
    pub after_guest: Option<String>,
    /// Run the VMM (all its threads) on this CPU of the VMM host only.
    #[serde(default)]
    pub pin_cpu: Option<u32>,
}

/// A shell command on the machine that runs ivc-vmm (the L1 when nested):
/// the tier-2 test programs run this way under the nested SVM KVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCommand {
    /// Name in output tags (`[host name] line`).
    pub name: String,
    /// Run with `sh -c`; stdout and stderr are both forwarded.
    pub command: String,
    /// Killed after this long.
    pub timeout_ms: u64,
}

/// Kill a guest's VMM (SIGKILL, like a crashed host process) `after_ms`
/// after its serial output first shows a line containing `line`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRule {
    /// The guest to kill.
    pub guest: String,
    /// The line (substring) that arms the rule.
    pub line: String,
    /// Delay after the line.
    pub after_ms: u64,
}

/// Which image of the guest kernel ivc-vmm boots: the same kernel either
/// way, through its PVH entry (vmlinux) or the Linux boot protocol
/// (bzImage); ivc-vmm tells them apart by their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelImage {
    /// `vmlinux`, PVH entry.
    #[default]
    Vmlinux,
    /// `bzImage`, Linux 32-bit boot protocol.
    BzImage,
}

/// Everything one run executes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    /// Servers, started first.
    pub servers: Vec<ServerSpec>,
    /// Guests, started once the servers listen.
    pub guests: Vec<VmmGuest>,
    /// Commands run on the VMM host, one after the other, concurrently with
    /// the guests.
    pub host_commands: Vec<HostCommand>,
    /// Kill rules.
    pub kills: Vec<KillRule>,
    /// When a guest's command fails (`IVC_EXIT=<n>` with n != 0), stop the
    /// other guests [`FAIL_FAST_GRACE_MS`] later instead of letting them run
    /// into their timeouts (a transfer whose peer failed never ends).
    #[serde(default)]
    pub fail_fast: bool,
    /// `IVC_VMM_LOG` for every ivc-vmm (servers and guests); `run_scenario`
    /// fills it from the test's own environment when unset, so
    /// `IVC_VMM_LOG=debug cargo test` reaches VMMs inside the nested host.
    #[serde(default)]
    pub vmm_log: Option<String>,
    /// The kernel image every guest boots from.
    #[serde(default)]
    pub kernel: KernelImage,
}

/// How long the other guests may go on after one failed under
/// [`Scenario::fail_fast`]: time to print their own view of the failure.
pub const FAIL_FAST_GRACE_MS: u64 = 3000;

/// Names become output tags and file names: keep them simple, and keep the
/// tag words (`[a vmm]`, `[server s0]`, `[host t]`) unambiguous.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !["vmm", "server", "host"].contains(&name)
        && !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(HarnessError::InvalidSpec {
            guest: name.to_string(),
            reason: format!(
                "{what} names must be 1-32 characters of A-Z, a-z, 0-9, '-' and '_', \
                 and not 'vmm', 'server' or 'host'"
            ),
        })
    }
}

impl Scenario {
    /// An empty scenario.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rendezvous server.
    pub fn server(mut self, name: impl Into<String>, shm_size: u64, vectors: u32) -> Self {
        self.servers.push(ServerSpec {
            name: name.into(),
            shm_size,
            vectors,
        });
        self
    }

    /// Adds a Linux guest: name, command, CPUs, memory, kernel arguments and
    /// timeout come from `spec`; its devices must be [`Device::Ivc`](crate::Device::Ivc).
    pub fn guest(mut self, spec: GuestSpec) -> Result<Self> {
        self.guests
            .push(VmmGuest::from_spec(&spec, Duration::ZERO)?);
        Ok(self)
    }

    /// Like [`Scenario::guest`], started `delay` after the others.
    pub fn guest_after(mut self, spec: GuestSpec, delay: Duration) -> Result<Self> {
        self.guests.push(VmmGuest::from_spec(&spec, delay)?);
        Ok(self)
    }

    /// Like [`Scenario::guest`], started once guest `previous` has ended.
    pub fn guest_after_exit(mut self, spec: GuestSpec, previous: &str) -> Result<Self> {
        let mut g = VmmGuest::from_spec(&spec, Duration::ZERO)?;
        g.after_guest = Some(previous.to_string());
        self.guests.push(g);
        Ok(self)
    }

    /// Adds a command run on the VMM host (`sh -c`).
    pub fn host_command(
        mut self,
        name: impl Into<String>,
        command: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        self.host_commands.push(HostCommand {
            name: name.into(),
            command: command.into(),
            timeout_ms: millis(timeout),
        });
        self
    }

    /// Stops every guest shortly after one of them fails (see
    /// [`Scenario::fail_fast`](Scenario#structfield.fail_fast)).
    pub fn fail_fast(mut self) -> Self {
        self.fail_fast = true;
        self
    }

    /// Boots every guest from `image` (default: vmlinux).
    pub fn kernel(mut self, image: KernelImage) -> Self {
        self.kernel = image;
        self
    }

    /// Kills `guest`'s VMM `after` its console first shows `line`.
    pub fn kill_when(
        mut self,
        guest: impl Into<String>,
        line: impl Into<String>,
        after: Duration,
    ) -> Self {
        self.kills.push(KillRule {
            guest: guest.into(),
            line: line.into(),
            after_ms: millis(after),
        });
        self
    }

    /// The longest any part may run: what the runner waits for at most,
    /// boot of the VMM host not included.
    pub fn longest(&self) -> Duration {
        let guests = self
            .guests
            .iter()
            .map(|g| self.latest_end_ms(g, 0))
            .max()
            .unwrap_or(0);
        let host: u64 = self.host_commands.iter().map(|c| c.timeout_ms).sum();
        Duration::from_millis(guests.max(host))
    }

    /// When `g` ends at the latest, counting the guests it waits for
    /// (`depth` stops a cycle, which [`Scenario::validate`] rejects).
    fn latest_end_ms(&self, g: &VmmGuest, depth: usize) -> u64 {
        let start = match &g.after_guest {
            Some(prev) if depth < self.guests.len() => self
                .guests
                .iter()
                .find(|p| &p.name == prev)
                .map_or(0, |p| self.latest_end_ms(p, depth + 1)),
            _ => 0,
        };
        start.max(g.start_after_ms).saturating_add(g.timeout_ms)
    }

    /// Checks names, references and sizes before anything starts.
    pub fn validate(&self) -> Result<()> {
        let invalid = |who: &str, reason: String| HarnessError::InvalidSpec {
            guest: who.to_string(),
            reason,
        };
        if self.guests.is_empty() && self.host_commands.is_empty() {
            return Err(invalid("scenario", "nothing to run".into()));
        }
        let mut names = Vec::new();
        for s in &self.servers {
            check_name("server", &s.name)?;
            if !s.shm_size.is_power_of_two() || s.shm_size < 4096 {
                return Err(invalid(
                    &s.name,
                    format!(
                        "shared memory size {} is not a power of two >= 4096",
                        s.shm_size
                    ),
                ));
            }
            if !(1..=64).contains(&s.vectors) {
                return Err(invalid(&s.name, format!("{} vectors (1..=64)", s.vectors)));
            }
            names.push(format!("server {}", s.name));
        }
        for g in &self.guests {
            check_name("guest", &g.name)?;
            for d in &g.devices {
                if !self.servers.iter().any(|s| s.name == d.server()) {
                    return Err(invalid(
                        &g.name,
                        format!(
                            "device {} names server '{}', which the scenario does not have",
                            d.kind(),
                            d.server()
                        ),
                    ));
                }
            }
            if let Some(prev) = &g.after_guest {
                if !self.guests.iter().any(|p| &p.name == prev) || prev == &g.name {
                    return Err(invalid(&g.name, format!("starts after guest '{prev}', which is not another guest of the scenario")));
                }
            }
            names.push(format!("guest {}", g.name));
        }
        // Waiting chains must end.
        for g in &self.guests {
            let mut cur = g;
            for _ in 0..=self.guests.len() {
                match cur
                    .after_guest
                    .as_ref()
                    .and_then(|p| self.guests.iter().find(|x| &x.name == p))
                {
                    Some(next) => cur = next,
                    None => break,
                }
                if cur.name == g.name {
                    return Err(invalid(
                        &g.name,
                        "guests wait for each other in a cycle".into(),
                    ));
                }
            }
        }
        for c in &self.host_commands {
            check_name("host command", &c.name)?;
            names.push(format!("host {}", c.name));
        }
        for k in &self.kills {
            if !self.guests.iter().any(|g| g.name == k.guest) {
                return Err(invalid(
                    &k.guest,
                    "a kill rule names a guest the scenario does not have".into(),
                ));
            }
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != names.len() {
            return Err(invalid(
                "scenario",
                format!("duplicate names among {names:?}"),
            ));
        }
        Ok(())
    }

    /// The scenario as JSON (what `ivc-scenario` reads).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| HarnessError::io("encoding the scenario", e.into()))
    }

    /// Parses [`Scenario::to_json`]'s output.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| HarnessError::io("decoding the scenario", e.into()))
    }
}

impl VmmGuest {
    fn from_spec(spec: &GuestSpec, delay: Duration) -> Result<Self> {
        spec.validate()?;
        let devices = spec
            .devices
            .iter()
            .map(|d| match d {
                crate::Device::Ivc(dev) => Ok(dev.clone()),
                other => Err(spec.invalid(format!(
                    "{other:?} is a QEMU device; guests in ivc-vmm take Device::Ivc"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(VmmGuest {
            name: spec.name.clone(),
            cmdline: spec.kernel_cmdline()?,
            cpus: spec.cpus,
            mem_mib: spec.memory_mib,
            devices,
            timeout_ms: millis(spec.timeout),
            start_after_ms: millis(delay),
            after_guest: None,
            pin_cpu: None,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn pio(server: &str) -> Device {
        Device::Ivc(IvcDevice::Pio {
            server: server.into(),
        })
    }

    #[test]
    fn round_trips_through_json() {
        let s = Scenario::new()
            .server("s0", 1 << 20, 1)
            .guest(GuestSpec::new("a", "echo hi").device(pio("s0")).cpus(2))
            .expect("valid")
            .host_command("t2", "true", Duration::from_secs(5))
            .kill_when("a", "ready", Duration::from_millis(300))
            .kernel(KernelImage::BzImage);
        s.validate().expect("valid");
        let back = Scenario::from_json(&s.to_json().expect("json")).expect("parse");
        assert_eq!(back, s);
        assert_eq!(back.kernel, KernelImage::BzImage);
        // A scenario written before the field boots vmlinux.
        let old = s
            .to_json()
            .expect("json")
            .replace("\"kernel\": \"bz-image\"", "\"x\": 0");
        assert_ne!(old, s.to_json().expect("json"), "the field was renamed");
        assert_eq!(
            Scenario::from_json(&old).expect("parse").kernel,
            KernelImage::Vmlinux
        );
        assert_eq!(
            back.guests[0].devices[0].vmm_arg("/r/s0.sock", 1),
            "pio,socket=/r/s0.sock,vectors=1"
        );
        assert!(back.guests[0].cmdline.contains("ivc_cmd=ZWNobyBoaQ=="));
        assert_eq!(back.guests[0].cpus, 2);
    }

    #[test]
    fn rejects_what_cannot_run() {
        let g = |name: &str| GuestSpec::new(name, "true").device(pio("s0"));
        // A device naming a server that is not there.
        let s = Scenario::new().guest(g("a")).expect("spec ok");
        assert!(s
            .validate()
            .expect_err("no server")
            .to_string()
            .contains("'s0'"));
        // Duplicate guest names.
        let s = Scenario::new()
            .server("s0", 1 << 20, 1)
            .guest(g("a"))
            .and_then(|s| s.guest(g("a")))
            .expect("spec ok");
        assert!(s.validate().is_err());
        // Names that would break output tags.
        for bad in ["a b", "vmm", "server", "a]"] {
            let s = Scenario::new()
                .server("s0", 1 << 20, 1)
                .guest(g(bad))
                .expect("spec ok");
            assert!(s.validate().is_err(), "{bad}");
        }
        // Sizes and vectors.
        assert!(Scenario::new()
            .server("s", 1000, 1)
            .guest(g("a"))
            .expect("ok")
            .validate()
            .is_err());
        assert!(Scenario::new()
            .server("s0", 1 << 20, 0)
            .guest(g("a"))
            .expect("ok")
            .validate()
            .is_err());
        // A QEMU device.
        let plain = GuestSpec::new("a", "true").device(Device::IvshmemPlain {
            mem_path: "/dev/shm/x".into(),
            size: 4096,
        });
        assert!(Scenario::new().guest(plain).is_err());
        // Nothing to run; a kill rule for nobody.
        assert!(Scenario::new().validate().is_err());
        let s = Scenario::new()
            .host_command("h", "true", Duration::from_secs(1))
            .kill_when("ghost", "x", Duration::ZERO);
        assert!(s.validate().is_err());
    }

    #[test]
    fn longest_covers_late_starts_and_host_commands() {
        let s = Scenario::new()
            .server("s0", 1 << 20, 1)
            .guest(GuestSpec::new("a", "true").timeout(Duration::from_secs(10)))
            .expect("ok")
            .guest_after(
                GuestSpec::new("b", "true").timeout(Duration::from_secs(10)),
                Duration::from_secs(5),
            )
            .expect("ok");
        assert_eq!(s.longest(), Duration::from_secs(15));
        let s = s
            .host_command("h1", "true", Duration::from_secs(20))
            .host_command("h2", "true", Duration::from_secs(20));
        assert_eq!(s.longest(), Duration::from_secs(40));
        let s = Scenario::new()
            .guest(GuestSpec::new("a", "true").timeout(Duration::from_secs(10)))
            .and_then(|s| {
                s.guest_after_exit(
                    GuestSpec::new("b", "true").timeout(Duration::from_secs(7)),
                    "a",
                )
            })
            .and_then(|s| {
                s.guest_after_exit(
                    GuestSpec::new("c", "true").timeout(Duration::from_secs(5)),
                    "b",
                )
            })
            .expect("ok");
        s.validate().expect("a chain is fine");
        assert_eq!(s.longest(), Duration::from_secs(22));
    }

    #[test]
    fn waiting_for_nobody_or_in_a_cycle_is_refused() {
        let s = Scenario::new()
            .guest_after_exit(GuestSpec::new("a", "true"), "ghost")
            .expect("spec ok");
        assert!(s.validate().is_err());
        let mut s = Scenario::new()
            .guest_after_exit(GuestSpec::new("a", "true"), "b")
            .and_then(|s| s.guest_after_exit(GuestSpec::new("b", "true"), "a"))
            .expect("spec ok");
        assert!(s
            .validate()
            .expect_err("cycle")
            .to_string()
            .contains("cycle"));
        s.guests[1].after_guest = Some("b".into());
        assert!(s.validate().is_err(), "waiting for itself");
    }
}
