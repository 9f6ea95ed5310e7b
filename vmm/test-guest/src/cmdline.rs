//! Kernel command line: space-separated `key=value` words (or bare `key`).
//!
//! `test=NAME` picks the test program; the other keys are that test's
//! parameters. When a key is repeated, the last one wins, like Linux.

use core::fmt;
use core::ops::RangeInclusive;

#[derive(Clone, Copy)]
pub struct Cmdline<'a> {
    raw: &'a str,
}

/// A parameter that is present but malformed.
#[derive(Debug, Clone, Copy)]
pub struct ParamError<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub expected: &'static str,
}

impl fmt::Display for ParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad parameter {}={:?}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

impl<'a> Cmdline<'a> {
    pub fn new(raw: &'a str) -> Self {
        Self { raw }
    }

    /// Every `(key, value)` pair in order; a bare word has an empty value.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.raw
            .split_ascii_whitespace()
            .map(|word| word.split_once('=').unwrap_or((word, "")))
    }

    /// The value of the last `key=...`, if any.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// A number: decimal or `0x` hex, with an optional `k`/`m`/`g` suffix
    /// (binary multiples) so sizes read naturally (`bytes=4m`).
    pub fn u64_or(&self, key: &'a str, default: u64) -> Result<u64, ParamError<'a>> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => parse_u64(value).ok_or(ParamError {
                key,
                value,
                expected: "a number (decimal or 0x hex, optional k/m/g suffix)",
            }),
        }
    }

    /// A number as for [`u64_or`](Self::u64_or) that must lie in `range`;
    /// `expected` describes the range for the error message.
    pub fn u64_in(
        &self,
        key: &'a str,
        default: u64,
        range: RangeInclusive<u64>,
        expected: &'static str,
    ) -> Result<u64, ParamError<'a>> {
        let value = self.u64_or(key, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ParamError {
                key,
                value: self.get(key).unwrap_or(""),
                expected,
            })
        }
    }

    /// One of a fixed set of words, mapped to values: `options` pairs each
    /// accepted word with its value; `expected` lists the words for the
    /// error message (no allocation to build it from `options`).
    pub fn choice<T: Copy>(
        &self,
        key: &'a str,
        default: T,
        options: &[(&str, T)],
        expected: &'static str,
    ) -> Result<T, ParamError<'a>> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.required_choice(key, options, expected),
        }
    }

    /// As [`choice`](Self::choice), for a key without a default: a missing
    /// key is an error too.
    pub fn required_choice<T: Copy>(
        &self,
        key: &'a str,
        options: &[(&str, T)],
        expected: &'static str,
    ) -> Result<T, ParamError<'a>> {
        let value = self.get(key).unwrap_or("");
        options
            .iter()
            .find(|(word, _)| self.get(key) == Some(*word))
            .map(|&(_, v)| v)
            .ok_or(ParamError {
                key,
                value,
                expected,
            })
    }

    /// A PCI `VVVV:DDDD` vendor:device pair in hex.
    pub fn pci_id_or(
        &self,
        key: &'a str,
        default: (u16, u16),
    ) -> Result<(u16, u16), ParamError<'a>> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => parse_pci_id(value).ok_or(ParamError {
                key,
                value,
                expected: "VVVV:DDDD in hex",
            }),
        }
    }

    /// A boolean: `1/0`, `yes/no`, `on/off`, `true/false`; a bare key means true.
    pub fn bool_or(&self, key: &'a str, default: bool) -> Result<bool, ParamError<'a>> {
        match self.get(key) {
            None => Ok(default),
            Some("" | "1" | "yes" | "on" | "true") => Ok(true),
            Some("0" | "no" | "off" | "false") => Ok(false),
            Some(value) => Err(ParamError {
                key,
                value,
                expected: "1/0, yes/no, on/off or true/false",
            }),
        }
    }
}

/// Parses a number: `ivc_kit::size`'s grammar (decimal or `0x` hex, an
/// optional binary unit such as `k` or `4m`), a bare number as is.
pub fn parse_u64(text: &str) -> Option<u64> {
    ivc_kit::size::parse_size(text).ok()
}

/// Parses `VVVV:DDDD` (hex vendor and device IDs).
pub fn parse_pci_id(text: &str) -> Option<(u16, u16)> {
    let (vendor, device) = text.split_once(':')?;
    Some((
        u16::from_str_radix(vendor, 16).ok()?,
        u16::from_str_radix(device, 16).ok()?,
    ))
}
