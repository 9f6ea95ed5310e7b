//! `--ivc KIND,key=value,...`: which ivc devices a VM gets.
//!
//! ```text
//! pio,socket=PATH[,vectors=N]
//! shm-poll,socket=PATH[,vectors=N]
//! shm-poll,path=FILE,size=SIZE
//! shm-irq,socket=PATH[,vectors=N]
//! ```
//!
//! `vectors=` must equal the server's `--vectors` (the rendezvous protocol
//! sends every peer's eventfds, and our client checks the count); it
//! defaults to 1 like the server's. Parsing is strict: unknown kinds or
//! keys, repeated keys and missing values are errors naming the problem, so
//! a typo never silently produces a different device.

use std::fmt;
use std::path::PathBuf;

/// Most vectors a peer may have (the rendezvous protocol's limit).
pub const MAX_VECTORS: u32 = 64;
/// Smallest shared memory: one page (it is BAR2, mapped by a KVM memslot).
pub const MIN_SHM_SIZE: u64 = 4096;
/// Largest shared memory we map.
pub const MAX_SHM_SIZE: u64 = 64 << 30;

/// Where an ivc device's shared memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShmSource {
    /// A rendezvous server (`ivc-rendezvous`): the memory,
    /// a peer id and the eventfds.
    Server { socket: PathBuf, vectors: u32 },
    /// A plain file or memfd path (like QEMU's ivshmem-plain with a
    /// memory-backend-file): no server, no peers, no doorbells.
    File { path: PathBuf, size: u64 },
}

/// One `--ivc` device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvcSpec {
    /// `ivc-pio`: port-I/O front end of a channel endpoint in this VMM.
    Pio { socket: PathBuf, vectors: u32 },
    /// `ivc-shm` without interrupts (ivshmem-plain layout: BAR0 + BAR2).
    ShmPoll(ShmSource),
    /// `ivc-shm` with doorbells and MSI-X (ivshmem-doorbell layout).
    ShmIrq { socket: PathBuf, vectors: u32 },
}

impl IvcSpec {
    /// The variant name as written on the command line.
    pub fn kind(&self) -> &'static str {
        match self {
            IvcSpec::Pio { .. } => "pio",
            IvcSpec::ShmPoll(_) => "shm-poll",
            IvcSpec::ShmIrq { .. } => "shm-irq",
        }
    }
}

impl fmt::Display for IvcSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IvcSpec::Pio { socket, vectors } | IvcSpec::ShmIrq { socket, vectors } => write!(
                f,
                "{},socket={},vectors={vectors}",
                self.kind(),
                socket.display()
            ),
            IvcSpec::ShmPoll(ShmSource::Server { socket, vectors }) => {
                write!(f, "shm-poll,socket={},vectors={vectors}", socket.display())
            }
            IvcSpec::ShmPoll(ShmSource::File { path, size }) => {
                write!(f, "shm-poll,path={},size={size}", path.display())
            }
        }
    }
}

/// Parses one `--ivc` value (clap `value_parser`).
pub fn parse_ivc_spec(s: &str) -> Result<IvcSpec, String> {
    let mut parts = s.split(',');
    let kind = parts.next().unwrap_or("").trim();
    let mut socket = None;
    let mut path = None;
    let mut size = None;
    let mut vectors = None;
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' in '{s}' is not key=value"))?;
        if value.is_empty() {
            return Err(format!("{key}= needs a value"));
        }
        let dup = || format!("{key}= given twice in '{s}'");
        match key {
            "socket" => {
                if socket.replace(PathBuf::from(value)).is_some() {
                    return Err(dup());
                }
            }
            "path" => {
                if path.replace(PathBuf::from(value)).is_some() {
                    return Err(dup());
                }
            }
            "size" => {
                if size.replace(parse_shm_size(value)?).is_some() {
                    return Err(dup());
                }
            }
            "vectors" => {
                let n: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_VECTORS).contains(n))
                    .ok_or_else(|| format!("vectors={value}: expected 1..={MAX_VECTORS}"))?;
                if vectors.replace(n).is_some() {
                    return Err(dup());
                }
            }
            _ => {
                return Err(format!(
                    "unknown key '{key}' in '{s}' (known: socket, path, size, vectors)"
                ))
            }
        }
    }
    let need_socket = |what: &str| -> Result<PathBuf, String> {
        if path.is_some() || size.is_some() {
            return Err(format!("{what} takes socket=PATH, not path=/size="));
        }
        socket
            .clone()
            .ok_or_else(|| format!("{what} needs socket=PATH (a rendezvous server)"))
    };
    let vectors_or_default = vectors.unwrap_or(1);
    match kind {
        "pio" => Ok(IvcSpec::Pio {
            socket: need_socket("pio")?,
            vectors: vectors_or_default,
        }),
        "shm-irq" => Ok(IvcSpec::ShmIrq {
            socket: need_socket("shm-irq")?,
            vectors: vectors_or_default,
        }),
        "shm-poll" => match (socket, path, size) {
            (Some(socket), None, None) => Ok(IvcSpec::ShmPoll(ShmSource::Server {
                socket,
                vectors: vectors_or_default,
            })),
            (None, Some(path), Some(size)) if vectors.is_none() => {
                Ok(IvcSpec::ShmPoll(ShmSource::File { path, size }))
            }
            (None, Some(_), Some(_)) => {
                Err("vectors= needs socket= (no server, no vectors)".into())
            }
            (None, Some(_), None) => Err("shm-poll,path=FILE needs size=SIZE".into()),
            (None, None, Some(_)) => Err("size= needs path=FILE".into()),
            (None, None, None) => Err("shm-poll needs socket=PATH or path=FILE,size=SIZE".into()),
            (Some(_), _, _) => {
                Err("shm-poll takes socket=PATH or path=FILE,size=SIZE, not both".into())
            }
        },
        "" => Err("empty --ivc value; expected pio|shm-poll|shm-irq,...".into()),
        other => Err(format!(
            "unknown ivc device kind '{other}' (expected pio, shm-poll or shm-irq)"
        )),
    }
}

/// A shared-memory size: bytes or with K/M/G suffix (powers of 1024), a
/// power of two (it is a BAR) between 4K and 64G.
pub fn parse_shm_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&s[..i], 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&s[..i], 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&s[..i], 30),
        Some(_) => (s, 0),
        None => return Err("empty size".into()),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("size '{s}' is not a number with optional K/M/G"))?;
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(|| format!("size '{s}' is too large"))?;
    if !bytes.is_power_of_two() || !(MIN_SHM_SIZE..=MAX_SHM_SIZE).contains(&bytes) {
        return Err(format!(
            "size '{s}' must be a power of two between 4K and 64G (it becomes a PCI BAR)"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> IvcSpec {
        match parse_ivc_spec(s) {
            Ok(v) => v,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn valid_specs() {
        assert_eq!(
            ok("pio,socket=/s"),
            IvcSpec::Pio {
                socket: "/s".into(),
                vectors: 1
            }
        );
        assert_eq!(
            ok("shm-irq,socket=/s,vectors=4"),
            IvcSpec::ShmIrq {
                socket: "/s".into(),
                vectors: 4
            }
        );
        assert_eq!(
            ok("shm-poll,socket=/s"),
            IvcSpec::ShmPoll(ShmSource::Server {
                socket: "/s".into(),
                vectors: 1
            })
        );
        assert_eq!(
            ok("shm-poll,path=/dev/shm/x,size=1M"),
            IvcSpec::ShmPoll(ShmSource::File {
                path: "/dev/shm/x".into(),
                size: 1 << 20
            })
        );
        // Round trip through Display.
        for s in ["pio,socket=/a,vectors=2", "shm-poll,path=/f,size=4096"] {
            assert_eq!(ok(&ok(s).to_string()), ok(s));
        }
    }

    #[test]
    fn bad_specs_name_the_problem() {
        for (spec, needle) in [
            ("", "empty"),
            ("virtio,socket=/s", "unknown ivc device kind"),
            ("pio", "needs socket"),
            ("pio,socket", "not key=value"),
            ("pio,socket=", "needs a value"),
            ("pio,socket=/a,socket=/b", "twice"),
            ("pio,sock=/a", "unknown key"),
            ("pio,path=/f,size=4K", "takes socket"),
            ("shm-irq,socket=/s,vectors=0", "vectors=0"),
            ("shm-irq,socket=/s,vectors=65", "vectors=65"),
            ("shm-irq,socket=/s,vectors=x", "vectors=x"),
            ("shm-poll", "needs socket=PATH or path"),
            ("shm-poll,path=/f", "needs size"),
            ("shm-poll,size=4K", "needs path"),
            ("shm-poll,socket=/s,path=/f,size=4K", "not both"),
            ("shm-poll,path=/f,size=3K", "power of two"),
            ("shm-poll,path=/f,size=2K", "power of two"),
            ("shm-poll,path=/f,size=lots", "not a number"),
            (
                "shm-poll,path=/f,size=4K,vectors=2",
                "vectors= needs socket",
            ),
        ] {
            match parse_ivc_spec(spec) {
                Ok(v) => panic!("{spec:?} parsed as {v:?}"),
                Err(e) => assert!(e.contains(needle), "{spec:?}: {e:?} lacks {needle:?}"),
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_shm_size("4096"), Ok(4096));
        assert_eq!(parse_shm_size("4k"), Ok(4096));
        assert_eq!(parse_shm_size("64G"), Ok(64 << 30));
        assert!(parse_shm_size("128G").is_err());
        assert!(parse_shm_size("18446744073709551615G").is_err());
        assert!(parse_shm_size("").is_err());
    }
}
