//! Summaries of repeated measurements as a benchmark reports them: the median (robust to the
//! one slow trial a loaded machine produces), the spread as min–max, and how many trials.

use std::fmt;
use std::time::Duration;

/// Median, min and max of a set of trials; `None` for an empty set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub trials: usize,
}

impl Spread {
    /// Summarises `values`; NaNs are ignored (a trial that produced no number).
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        let middle = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Some(Self {
            median,
            min: first,
            max: last,
            trials: sorted.len(),
        })
    }

    /// Summarises durations, in seconds.
    pub fn of_durations(values: &[Duration]) -> Option<Self> {
        let seconds: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
        Self::of(&seconds)
    }

    /// Shows the spread with `unit` after each number, e.g. `5.36 s (4.45–9.97, n=3)`.
    pub fn display(&self, unit: Unit) -> impl fmt::Display + '_ {
        Shown(self, unit)
    }
}

/// How the numbers of a [`Spread`] are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Seconds with three significant decimals for sub-second values.
    Seconds,
    /// A plain count (pods above `count`, requests).
    Count,
    /// Mebibytes, from a value in bytes.
    Mebibytes,
    /// Percent of one core, from a value in cores.
    PercentOfCore,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Self::Seconds if value < 1.0 => format!("{:.0} ms", value * 1000.0),
            Self::Seconds => format!("{value:.2} s"),
            Self::Count => format!("{value:.0}"),
            Self::Mebibytes => format!("{:.1} MiB", value / (1024.0 * 1024.0)),
            Self::PercentOfCore => format!("{:.2} %", value * 100.0),
        }
    }
}

struct Shown<'a>(&'a Spread, Unit);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(spread, unit) = self;
        if spread.trials == 1 {
            return write!(f, "{} (n=1)", unit.format(spread.median));
        }
        write!(
            f,
            "{} ({}–{}, n={})",
            unit.format(spread.median),
            unit.format(spread.min),
            unit.format(spread.max),
            spread.trials
        )
    }
}

/// `ours / theirs` of two medians as `0.87×`; `–` when either is missing or `theirs` is zero
/// (a ratio to nothing says nothing).
pub fn ratio(ours: Option<Spread>, theirs: Option<Spread>) -> String {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if theirs.median > 0.0 => {
            format!("{:.2}×", ours.median / theirs.median)
        }
        _ => "–".to_owned(),
    }
}

/// The `fraction` quantile (0.5 = p50, 0.99 = p99) by nearest rank: the smallest value at
/// least `fraction` of the values are not above. `None` for an empty set.
pub fn quantile(sorted: &[Duration], fraction: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value() {
        let spread = Spread::of(&[9.97, 4.45, 5.36]).expect("three values");
        assert_eq!(
            spread,
            Spread {
                median: 5.36,
                min: 4.45,
                max: 9.97,
                trials: 3
            }
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let spread = Spread::of(&[4.0, 1.0, 3.0, 2.0]).expect("four values");
        assert_eq!(spread.median, 2.5);
    }

    #[test]
    fn nothing_measured_is_no_spread_and_nans_are_skipped() {
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
        assert_eq!(Spread::of(&[f64::NAN, 2.0]).map(|s| s.trials), Some(1));
    }

    #[test]
    fn spreads_show_median_range_and_trials() {
        let seconds = Spread::of(&[5.36, 4.45, 9.97]).expect("values");
        assert_eq!(
            seconds.display(Unit::Seconds).to_string(),
            "5.36 s (4.45 s–9.97 s, n=3)"
        );
        let fast = Spread::of(&[0.027]).expect("a value");
        assert_eq!(fast.display(Unit::Seconds).to_string(), "27 ms (n=1)");
        let memory = Spread::of(&[25.0 * 1024.0 * 1024.0]).expect("a value");
        assert_eq!(
            memory.display(Unit::Mebibytes).to_string(),
            "25.0 MiB (n=1)"
        );
        let cpu = Spread::of(&[0.0123]).expect("a value");
        assert_eq!(cpu.display(Unit::PercentOfCore).to_string(), "1.23 % (n=1)");
    }

    #[test]
    fn the_ratio_divides_medians_and_refuses_a_zero_denominator() {
        let ps = Spread::of(&[5.36]);
        let rs = Spread::of(&[3.89]);
        assert_eq!(ratio(ps, rs), "1.38×");
        assert_eq!(ratio(ps, Spread::of(&[0.0])), "–");
        assert_eq!(ratio(None, rs), "–");
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&sorted, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&sorted, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&sorted[..1], 0.99), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
