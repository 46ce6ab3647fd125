//! A/B tests of replies and emails. Which variant is best: each variant's conversion rate has a Beta posterior
//! (a uniform prior, updated by its conversions and non-conversions), and the probability that
//! a variant is best is the chance its rate beats every other's, integrated numerically on a
//! grid over where the posteriors have their mass. Deterministic, no sampling.

/// A winner is declared only when every variant has been shown this often ...
pub const MIN_SAMPLE: u64 = 100;
/// ... and one is best with at least this probability.
pub const WINNER: f64 = 0.95;

const GRID: usize = 4000;

/// For each (conversions, trials), the probability that its rate is the highest.
pub fn probability_best(arms: &[(u64, u64)]) -> Vec<f64> {
    if arms.is_empty() {
        return Vec::new();
    }
    // Beta(1 + s, 1 + n - s): mean and spread, to put the grid where the mass is.
    let moments: Vec<(f64, f64)> = arms
        .iter()
        .map(|&(s, n)| {
            let (a, b) = (1.0 + s as f64, 1.0 + n.saturating_sub(s) as f64);
            let mean = a / (a + b);
            (mean, (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt())
        })
        .collect();
    let low = moments.iter().map(|(m, sd)| m - 10.0 * sd).fold(1.0, f64::min).max(0.0);
    let high = moments.iter().map(|(m, sd)| m + 10.0 * sd).fold(0.0, f64::max).min(1.0);
    let step = (high - low) / GRID as f64;
    let xs: Vec<f64> = (0..GRID).map(|k| low + (k as f64 + 0.5) * step).collect();
    // Each posterior's density on the grid, normalized there (no Beta function needed), and its
    // distribution function at the same points.
    let densities: Vec<Vec<f64>> = arms
        .iter()
        .map(|&(s, n)| {
            let (s, f) = (s as f64, n.saturating_sub(s) as f64);
            let logs: Vec<f64> = xs.iter().map(|x| s * x.ln() + f * (1.0 - x).ln()).collect();
            let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let raw: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
            let total: f64 = raw.iter().sum();
            raw.into_iter().map(|d| d / total).collect()
        })
        .collect();
    let cdfs: Vec<Vec<f64>> = densities
        .iter()
        .map(|d| {
            let mut below = 0.0;
            d.iter()
                .map(|p| {
                    let at = below + p / 2.0;
                    below += p;
                    at
                })
                .collect()
        })
        .collect();
    (0..arms.len())
        .map(|i| {
            (0..GRID)
                .map(|k| densities[i][k] * (0..arms.len()).filter(|&j| j != i).map(|j| cdfs[j][k]).product::<f64>())
                .sum()
        })
        .collect()
}

/// The 95 % credible interval of a conversion rate after `successes` in `trials` (equal tails
/// of its Beta posterior, on the same kind of grid).
pub fn interval(successes: u64, trials: u64) -> (f64, f64) {
    let (s, f) = (successes as f64, trials.saturating_sub(successes) as f64);
    let (a, b) = (1.0 + s, 1.0 + f);
    let (mean, sd) = (a / (a + b), (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt());
    let (low, high) = ((mean - 10.0 * sd).max(0.0), (mean + 10.0 * sd).min(1.0));
    let step = (high - low) / GRID as f64;
    let logs: Vec<f64> =
        (0..GRID).map(|k| low + (k as f64 + 0.5) * step).map(|x| s * x.ln() + f * (1.0 - x).ln()).collect();
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let raw: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
    let total: f64 = raw.iter().sum();
    // Where the distribution function crosses `p`, interpolated within the cell.
    let quantile = |p: f64| {
        let mut below = 0.0;
        for (k, d) in raw.iter().map(|d| d / total).enumerate() {
            if below + d >= p {
                return low + (k as f64 + (p - below) / d) * step;
            }
            below += d;
        }
        high
    };
    (quantile(0.025), quantile(0.975))
}

/// The index of the winner, when one has been shown often enough and is best at 95 %.
pub fn winner(arms: &[(u64, u64)], probabilities: &[f64]) -> Option<usize> {
    if arms.len() < 2 || arms.iter().any(|&(_, n)| n < MIN_SAMPLE) {
        return None;
    }
    probabilities.iter().position(|&p| p >= WINNER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_agree_with_scipy() {
        // scipy.stats.beta.ppf([0.025, 0.975], 1 + s, 1 + n - s)
        for ((s, n), (low, high)) in [
            ((10, 100), (0.05563722, 0.17455283)),
            ((0, 0), (0.025, 0.975)),
            ((120, 1000), (0.10132342, 0.141627)),
            ((0, 5), (0.00421074, 0.45925813)),
        ] {
            let (l, h) = interval(s, n);
            assert!((l - low).abs() < 1e-3 && (h - high).abs() < 1e-3, "{s}/{n}: ({l}, {h}) against ({low}, {high})");
        }
    }

    #[test]
    fn agrees_with_known_values() {
        // Computed with scipy (quad over Beta pdf × the others' cdfs).
        for (arms, expected) in [
            (vec![(10, 100), (20, 100)], vec![0.0248, 0.9752]),
            (vec![(50, 1000), (50, 1000)], vec![0.5, 0.5]),
            (vec![(3, 30), (5, 30), (9, 30)], vec![0.0212, 0.1129, 0.8658]),
            (vec![(0, 0), (0, 0)], vec![0.5, 0.5]),
            (vec![(120, 1000), (100, 1000)], vec![0.9232, 0.0768]),
        ] {
            let got = probability_best(&arms);
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 0.003, "{arms:?}: {got:?} against {expected:?}");
            }
        }
    }

    #[test]
    fn a_winner_needs_the_sample_and_the_certainty() {
        let clear = [(10, 100), (20, 100)];
        assert_eq!(winner(&clear, &probability_best(&clear)), Some(1));
        let small = [(1, 10), (9, 10)];
        assert_eq!(winner(&small, &probability_best(&small)), None, "too few shown");
        let close = [(120, 1000), (100, 1000)];
        assert_eq!(winner(&close, &probability_best(&close)), None, "92 % is not enough");
    }
}
