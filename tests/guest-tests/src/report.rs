//! Parsers for the `IVC_` lines the guest snippets print.

/// One `IVC_BOUND` line: a PCI function the driver could bind and who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// PCI address, e.g. `0000:00:02.0`.
    pub bdf: String,
    /// `0x1af4:0x1110` style id.
    pub id: String,
    /// Name of the bound driver, `none` if unbound.
    pub driver: String,
}

/// All `IVC_BOUND` lines in a guest's serial output, in order.
pub fn bindings(serial: &str) -> Vec<Binding> {
    serial
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("IVC_BOUND ")?;
            let mut f = rest.split_whitespace();
            let bdf = f.next()?.to_string();
            let id = f.next()?.to_string();
            let driver = f.next()?.strip_prefix("driver=")?.to_string();
            Some(Binding { bdf, id, driver })
        })
        .collect()
}

/// The value of the first `KEY=value` line for `key` (e.g. `IVC_RMMOD`).
pub fn value<'a>(serial: &'a str, key: &str) -> Option<&'a str> {
    serial.lines().find_map(|l| {
        let (k, v) = l.trim().split_once('=')?;
        (k == key).then_some(v)
    })
}

/// The sum of every `IVC_IRQS <count>` line ([`COUNT_IRQS`](crate::guest_sh::COUNT_IRQS)).
pub fn irqs(serial: &str) -> u64 {
    serial
        .lines()
        .filter_map(|l| l.trim().strip_prefix("IVC_IRQS ")?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bindings_and_values() {
        let serial = "noise\nIVC_BOUND 0000:00:02.0 0x1af4:0x1110 driver=ivc\r\n\
                      [ 1.0] ivc: x\nIVC_BOUND 0000:00:03.0 0x1234:0x1c1c driver=none\nIVC_RMMOD=ok\n";
        let b = bindings(serial);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].bdf, "0000:00:02.0");
        assert_eq!(b[0].driver, "ivc");
        assert_eq!(b[1].id, "0x1234:0x1c1c");
        assert_eq!(value(serial, "IVC_RMMOD"), Some("ok"));
        assert_eq!(value(serial, "IVC_INSMOD"), None);
        assert_eq!(irqs("IVC_IRQS 3\nx\n IVC_IRQS 4\r\nIVC_IRQS y"), 7);
    }
}
