//! Repeated runs of one measurement, of which one is kept.
//!
//! The two vCPUs of the cloud hosts this runs on move between cores, and a
//! whole run can land on a slow placement (a 64 B ring round trip of 663 ns
//! where the runs around it gave 320-360 ns; a cache-line floor of 233 ns
//! where it is usually 115-135 ns). So:
//!
//! - a channel's figure is the **middle** of three runs: what a user sees
//!   most often ([`middle`]);
//! - a floor is the **best** of three runs: what the hardware can do
//!   ([`best`]). A floor measured on a slow placement would flatter every
//!   ratio; the best run can only make the ratios stricter.
//!
//! The notes keep every run's figure.

/// Runs of each repeated measurement.
pub const REPEATS: usize = 3;

/// [`REPEATS`] runs of `measure` (given the run's number, from 0), or its
/// first error.
pub fn run<T, E>(measure: impl FnMut(usize) -> Result<T, E>) -> Result<Vec<T>, E> {
    (0..REPEATS).map(measure).collect()
}

/// The run with the middle `figure` (of two middles, the higher one), and a
/// note naming every run's figure in the order they ran; the note is empty
/// for a single run.
pub fn middle<T>(
    label: &str,
    runs: Vec<T>,
    figure: impl Fn(&T) -> f64,
    unit: &str,
) -> Option<(T, Option<String>)> {
    let n = runs.len();
    keep(label, runs, figure, unit, n / 2, "the middle one")
}

/// Which way a floor is better.
#[derive(Clone, Copy)]
pub enum Best {
    /// Times: the lowest.
    Lowest,
    /// Rates: the highest.
    Highest,
}

/// The run with the best `figure`, and a note as for [`middle`].
pub fn best<T>(
    label: &str,
    runs: Vec<T>,
    figure: impl Fn(&T) -> f64,
    unit: &str,
    best: Best,
) -> Option<(T, Option<String>)> {
    let n = runs.len();
    match best {
        Best::Lowest => keep(label, runs, figure, unit, 0, "the lowest"),
        Best::Highest => keep(
            label,
            runs,
            figure,
            unit,
            n.saturating_sub(1),
            "the highest",
        ),
    }
}

/// The run at rank `rank` (ascending by `figure`), and the note.
fn keep<T>(
    label: &str,
    mut runs: Vec<T>,
    figure: impl Fn(&T) -> f64,
    unit: &str,
    rank: usize,
    which: &str,
) -> Option<(T, Option<String>)> {
    let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", figure(r))).collect();
    let n = runs.len();
    let note = (n > 1).then(|| {
        format!(
            "{label}: {n} runs, {} {unit}; {which} is recorded",
            all.join(" / ")
        )
    });
    runs.sort_by(|a, b| figure(a).total_cmp(&figure(b)));
    runs.into_iter().nth(rank).map(|kept| (kept, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_middle_run_is_kept_and_every_run_named() {
        let (kept, note) =
            middle("ring 64", vec![663.0, 345.0, 356.0], |x| *x, "ns").expect("a run");
        assert_eq!(kept, 356.0);
        assert_eq!(
            note.as_deref(),
            Some("ring 64: 3 runs, 663 / 345 / 356 ns; the middle one is recorded")
        );
    }

    #[test]
    fn the_best_run_is_kept_for_floors() {
        let runs = vec![233.0, 118.0, 125.0];
        let (low, note) =
            best("cache line", runs.clone(), |x| *x, "ns", Best::Lowest).expect("a run");
        assert_eq!(low, 118.0);
        assert_eq!(
            note.as_deref(),
            Some("cache line: 3 runs, 233 / 118 / 125 ns; the lowest is recorded")
        );
        let (high, _) = best("memcpy", runs, |x| *x, "MiB/s", Best::Highest).expect("a run");
        assert_eq!(high, 233.0);
    }

    #[test]
    fn one_run_is_kept_without_a_note_and_none_gives_nothing() {
        assert_eq!(middle("x", vec![400.0], |x| *x, "ns"), Some((400.0, None)));
        assert_eq!(middle("x", Vec::<f64>::new(), |x| *x, "ns"), None);
    }
}
