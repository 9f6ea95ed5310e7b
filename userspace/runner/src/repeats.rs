//! Repeated runs of one measurement, of which the middle one is kept.
//!
//! The two vCPUs of the cloud hosts this runs on move between cores, and a
//! whole run can land on a slow placement (a 64 B ring round trip of 663 ns
//! where the runs around it gave 320-360 ns). The middle of three runs is
//! the figure a user sees most often; the notes keep every run's figure.

/// Runs of each repeated measurement.
pub const REPEATS: usize = 3;

/// The run with the middle `figure` (of two middles, the higher one), and a
/// note naming every run's figure in the order they ran; the note is empty
/// for a single run.
pub fn middle<T>(
    label: &str,
    mut runs: Vec<T>,
    figure: impl Fn(&T) -> f64,
    unit: &str,
) -> Option<(T, Option<String>)> {
    let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", figure(r))).collect();
    let n = runs.len();
    let note = (n > 1).then(|| {
        format!(
            "{label}: {n} runs, {} {unit}; the middle one is recorded",
            all.join(" / ")
        )
    });
    runs.sort_by(|a, b| figure(a).total_cmp(&figure(b)));
    runs.into_iter().nth(n / 2).map(|kept| (kept, note))
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
    fn one_run_is_kept_without_a_note_and_none_gives_nothing() {
        assert_eq!(middle("x", vec![400.0], |x| *x, "ns"), Some((400.0, None)));
        assert_eq!(middle("x", Vec::<f64>::new(), |x| *x, "ns"), None);
    }
}
