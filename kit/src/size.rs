//! Sizes on command lines and in test-guest parameters: `4096`, `0x1000`,
//! `64K`, `4M`, `1GiB`, `2T`.
//!
//! One grammar everywhere: a decimal or `0x` hexadecimal number, then an
//! optional unit `K`, `M`, `G` or `T` (also written `KiB`, `KB`, ...; case
//! does not matter; always powers of 1024) or `B`. What a bare number means is
//! the caller's choice, stated in its `--help`: bytes for every size except
//! ivc-vmm's `--mem`, where it is MiB as in QEMU's `-m`. In hexadecimal a
//! trailing `b` is a digit (`0x1b` is 27), so a hex size takes K/M/G/T or
//! nothing.

use core::fmt;

/// Why a size did not parse. The caller shows the text it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeError {
    /// Nothing but white space.
    Empty,
    /// No number where one was expected.
    NotANumber,
    /// A unit other than B, K, M, G or T.
    UnknownUnit,
    /// More than 2^64 - 1 bytes.
    TooLarge,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SizeError::Empty => "empty size",
            SizeError::NotANumber => "not a size (examples: 4096, 0x1000, 64K, 4M, 1G)",
            SizeError::UnknownUnit => "unknown unit (use B, K, M, G or T: powers of 1024)",
            SizeError::TooLarge => "too large",
        })
    }
}

impl core::error::Error for SizeError {}

/// The unit a bare number is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    KiB,
    MiB,
    GiB,
}

impl Unit {
    const fn shift(self) -> u32 {
        match self {
            Unit::Bytes => 0,
            Unit::KiB => 10,
            Unit::MiB => 20,
            Unit::GiB => 30,
        }
    }
}

/// A size in bytes; a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    parse_size_in(text, Unit::Bytes)
}

/// A size in bytes; a bare number counts in `bare`.
pub fn parse_size_in(text: &str, bare: Unit) -> Result<u64, SizeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    let (number, unit) = split_number(text)?;
    let shift = match unit_shift(unit.trim())? {
        Some(shift) => shift,
        None => bare.shift(),
    };
    let bytes = number.checked_shl(shift).ok_or(SizeError::TooLarge)?;
    if bytes >> shift != number {
        return Err(SizeError::TooLarge);
    }
    Ok(bytes)
}

/// The leading number (decimal or `0x` hex) and the rest of the text.
fn split_number(text: &str) -> Result<(u64, &str), SizeError> {
    let (radix, body) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None => (10, text),
    };
    let end = body
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(body.len());
    let (digits, rest) = body.split_at(end);
    if digits.is_empty() {
        return Err(SizeError::NotANumber);
    }
    // Only digits of `radix` remain, so the one failure is overflow.
    let number = u64::from_str_radix(digits, radix).map_err(|_| SizeError::TooLarge)?;
    Ok((number, rest))
}

/// The shift of a unit; `None` for no unit at all.
fn unit_shift(unit: &str) -> Result<Option<u32>, SizeError> {
    let mut chars = unit.chars();
    let Some(first) = chars.next() else {
        return Ok(None);
    };
    let shift = match first.to_ascii_lowercase() {
        'b' if unit.len() == 1 => return Ok(Some(0)),
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        _ => return Err(SizeError::UnknownUnit),
    };
    // "K", "KB" and "KiB" (any case) are all 1024.
    let tail = chars.as_str();
    if tail.is_empty() || tail.eq_ignore_ascii_case("b") || tail.eq_ignore_ascii_case("ib") {
        Ok(Some(shift))
    } else {
        Err(SizeError::UnknownUnit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_count_in_the_callers_unit() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 1 "), Ok(1));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size_in("256", Unit::MiB), Ok(256 << 20));
        assert_eq!(parse_size_in("2", Unit::GiB), Ok(2 << 30));
        assert_eq!(parse_size_in("3", Unit::KiB), Ok(3 << 10));
        assert_eq!(parse_size_in("512B", Unit::MiB), Ok(512));
    }

    #[test]
    fn every_unit_spelling_is_a_power_of_1024() {
        for (text, bytes) in [
            ("4K", 4u64 << 10),
            ("4k", 4 << 10),
            ("4KB", 4 << 10),
            ("4KiB", 4 << 10),
            ("4 kib", 4 << 10),
            ("2m", 2 << 20),
            ("2MiB", 2 << 20),
            ("1G", 1 << 30),
            ("1gb", 1 << 30),
            ("3T", 3 << 40),
            ("7b", 7),
            ("0x10M", 16 << 20),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
            // A unit in the text wins over the caller's bare unit.
            assert_eq!(parse_size_in(text, Unit::MiB), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("   "), Err(SizeError::Empty));
        assert_eq!(parse_size("K"), Err(SizeError::NotANumber));
        assert_eq!(parse_size("-1"), Err(SizeError::NotANumber));
        assert_eq!(parse_size("0x"), Err(SizeError::NotANumber));
        assert_eq!(parse_size("4X"), Err(SizeError::UnknownUnit));
        assert_eq!(parse_size("4KX"), Err(SizeError::UnknownUnit));
        assert_eq!(parse_size("4bb"), Err(SizeError::UnknownUnit));
        assert_eq!(parse_size("1.5G"), Err(SizeError::UnknownUnit));
        assert_eq!(parse_size("99999999999G"), Err(SizeError::TooLarge));
        assert_eq!(parse_size("18446744073709551616"), Err(SizeError::TooLarge));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_size_in("18446744073709551615", Unit::MiB),
            Err(SizeError::TooLarge)
        );
        assert_eq!(parse_size("0x1_0000"), Err(SizeError::UnknownUnit));
        // In hex, B is a digit, not the byte unit.
        assert_eq!(parse_size("0x1b"), Ok(27));
        assert_eq!(parse_size_in("0x200M", Unit::MiB), Ok(512 << 20));
    }
}
