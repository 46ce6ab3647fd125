//! The learned lead score: the probability that a visitor buys, fitted from the store's own
//! outcomes (which visitors ordered) by L2-regularized logistic regression over what is known of
//! a visitor before they buy. Deterministic (Newton's method from zero, a fixed number of
//! steps), milliseconds for thousands of visitors; refitted by the journey sweep. Until the
//! store holds `MIN_EACH` buyers and `MIN_EACH` others there is no model, and segments that ask
//! for a probability hold for nobody.

// Matrix code reads clearer by index than by iterator chains.
#![allow(clippy::needless_range_loop)]

use crate::domain::{Profile, Status};

/// Outcomes of each kind needed before a model is fitted.
pub const MIN_EACH: usize = 5;
const FEATURES: usize = 10;
const NAMES: [&str; FEATURES] = [
    "(bias)",
    "rule score / 10",
    "preferences told",
    "email known",
    "marketing consent",
    "ads consent",
    "offered the checkout link",
    "clicked the checkout link",
    "ln(1 + visits)",
    "asked for a person",
];
/// The L2 penalty: keeps weights finite when a feature separates buyers perfectly.
const RIDGE: f64 = 0.1;
const NEWTON_STEPS: usize = 25;

/// What the model knows of a visitor: nothing an order itself writes.
fn features(p: &Profile) -> [f64; FEATURES] {
    let yes = |b: bool| if b { 1.0 } else { 0.0 };
    let consent = |kind: fn(&crate::domain::ConsentRecord) -> bool| yes(p.consent.as_ref().is_some_and(kind));
    let told = p.preferences.keys().filter(|k| !matches!(k.as_str(), "email" | "name")).count();
    [
        1.0,
        p.score as f64 / 10.0,
        told as f64,
        yes(p.preference("email").is_some()),
        consent(|c| c.marketing),
        consent(|c| c.ads),
        yes(p.status_at.contains_key(&Status::Qualified)),
        yes(p.status_at.contains_key(&Status::CheckoutClicked)),
        (1.0 + f64::from(p.visits)).ln(),
        yes(p.handoff_at.is_some()),
    ]
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Model {
    pub weights: [f64; FEATURES],
    /// Visitors it was fitted on, and how many of them bought.
    pub visitors: usize,
    pub buyers: usize,
}

impl Model {
    /// Fits the model to every visitor's outcome; `None` with too few of either kind.
    pub fn fit<P: std::borrow::Borrow<Profile>>(profiles: impl Iterator<Item = P>) -> Option<Model> {
        let rows: Vec<([f64; FEATURES], f64)> = profiles
            .map(|p| {
                let p = p.borrow();
                (features(p), if p.orders.is_empty() { 0.0 } else { 1.0 })
            })
            .collect();
        let buyers = rows.iter().filter(|(_, y)| *y > 0.5).count();
        if buyers < MIN_EACH || rows.len() - buyers < MIN_EACH {
            return None;
        }
        let mut w = [0.0; FEATURES];
        for _ in 0..NEWTON_STEPS {
            // Gradient and Hessian of the penalized negative log-likelihood (the bias unpenalized).
            let mut gradient = [0.0; FEATURES];
            let mut hessian = [[0.0; FEATURES]; FEATURES];
            for (x, y) in &rows {
                let p = sigmoid(dot(&w, x));
                for i in 0..FEATURES {
                    gradient[i] += (p - y) * x[i];
                    for j in 0..FEATURES {
                        hessian[i][j] += p * (1.0 - p) * x[i] * x[j];
                    }
                }
            }
            for i in 1..FEATURES {
                gradient[i] += RIDGE * w[i];
                hessian[i][i] += RIDGE;
            }
            hessian[0][0] += 1e-6;
            let step = solve(hessian, gradient)?;
            for i in 0..FEATURES {
                w[i] -= step[i];
            }
            if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-9 {
                break;
            }
        }
        Some(Model { weights: w, visitors: rows.len(), buyers })
    }

    /// Fits the model to every visitor in `store`, holding one profile at a time.
    pub fn fit_store(store: &crate::store::Store) -> crate::store::Result<Option<Model>> {
        let mut failed = None;
        let profiles = store.visitors().map_while(|p| p.map_err(|e| failed = Some(e)).ok());
        let model = Model::fit(profiles);
        failed.map_or(Ok(model), Err)
    }

    /// The probability that `p` buys.
    pub fn probability(&self, p: &Profile) -> f64 {
        sigmoid(dot(&self.weights, &features(p)))
    }

    /// Each feature's name and weight, for the admin.
    pub fn explained(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        NAMES.iter().copied().zip(self.weights.iter().copied())
    }
}

fn dot(a: &[f64; FEATURES], b: &[f64; FEATURES]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `a x = b` by Gaussian elimination with partial pivoting; `None` when singular.
fn solve(mut a: [[f64; FEATURES]; FEATURES], mut b: [f64; FEATURES]) -> Option<[f64; FEATURES]> {
    for col in 0..FEATURES {
        let pivot = (col..FEATURES).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..FEATURES {
            let factor = a[row][col] / a[col][col];
            for k in col..FEATURES {
                a[row][k] -= factor * a[col][k];
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = [0.0; FEATURES];
    for row in (0..FEATURES).rev() {
        let rest: f64 = (row + 1..FEATURES).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - rest) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Change;
    use crate::ids::VisitorId;

    fn visitor(i: u64, clicked: bool, bought: bool) -> Profile {
        let mut p = Profile::new(VisitorId::mint(i), 0, "en");
        p.apply(&Change::Score(10));
        p.apply(&Change::Status { status: Status::Qualified, at: 1 });
        if clicked {
            p.apply(&Change::Status { status: Status::CheckoutClicked, at: 2 });
        }
        if bought {
            p.apply(&Change::Order { id: format!("o{i}"), at: 3 });
        }
        p
    }

    #[test]
    fn who_clicked_the_checkout_link_is_likelier_to_buy() {
        // 8 of 10 who clicked bought, 2 of 20 who did not.
        let mut profiles: Vec<Profile> = (0..10).map(|i| visitor(i, true, i < 8)).collect();
        profiles.extend((10..30).map(|i| visitor(i, false, i < 12)));
        let model = Model::fit(profiles.iter()).expect("enough outcomes");
        assert_eq!((model.visitors, model.buyers), (30, 10));
        let (clicked, not) =
            (model.probability(&visitor(99, true, false)), model.probability(&visitor(98, false, false)));
        assert!(clicked > 0.6 && not < 0.2, "clicked {clicked}, not {not}");
        // The fitted rates are near the observed ones (the ridge pulls them in a little).
        assert!((clicked - 0.8).abs() < 0.15 && (not - 0.1).abs() < 0.1, "clicked {clicked}, not {not}");
        assert_eq!(Model::fit(profiles.iter()), Some(model), "deterministic");
    }

    #[test]
    fn no_model_before_there_are_outcomes_of_both_kinds() {
        let few: Vec<Profile> = (0..20).map(|i| visitor(i, true, i < 4)).collect();
        assert_eq!(Model::fit(few.iter()), None, "4 buyers are too few");
        let none: Vec<Profile> = (0..20).map(|i| visitor(i, true, false)).collect();
        assert_eq!(Model::fit(none.iter()), None);
    }
}
