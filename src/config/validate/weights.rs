//! Exact weights: each group's shares are integers summing to exactly 100.
//!
//! Rules (docs/config.md, "Groups, agreement and weights"): weighted mappings get their percentage; unweighted ones share the
//! remainder equally; a weighted sum over 100 is an error; when every mapping is weighted
//! and the sum is under 100 the shares are scaled to 100; a lone mapping gets everything;
//! weight 0 gets nothing unless every weight is 0 (then all share equally).
//! Integer remainders go to the earliest mappings (config order), so the result is deterministic.

/// Shares for a group's weights (in config order); `Err` when the weighted sum exceeds 100.
pub(crate) fn shares(weights: &[Option<u8>]) -> Result<Vec<u8>, String> {
    let n = weights.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    if n == 1 {
        return Ok(vec![100]);
    }
    let sum: u32 = weights.iter().flatten().map(|w| u32::from(*w)).sum();
    if sum > 100 {
        return Err(format!(
            "the weights of this group add up to {sum}, over 100"
        ));
    }
    let unweighted = weights.iter().filter(|w| w.is_none()).count();
    if unweighted > 0 {
        let rest = spread(100 - sum, unweighted);
        let mut rest = rest.into_iter();
        return Ok(weights
            .iter()
            .map(|w| w.unwrap_or_else(|| rest.next().unwrap_or(0)))
            .collect());
    }
    if sum == 0 {
        return Ok(spread(100, n));
    }
    Ok(scale(
        weights.iter().map(|w| u32::from(w.unwrap_or(0))),
        sum,
    ))
}

/// `total` split over `k` parts as equally as possible, larger parts first.
fn spread(total: u32, k: usize) -> Vec<u8> {
    let k32 = u32::try_from(k).unwrap_or(u32::MAX).max(1);
    let (each, extra) = (total / k32, total % k32);
    (0..k32)
        .map(|i| u8::try_from(each + u32::from(i < extra)).unwrap_or(u8::MAX))
        .collect()
}

/// Scales weights summing to `sum` (1..100) to 100 by the largest-remainder method;
/// ties go to the earlier mapping. A zero weight stays zero.
fn scale(weights: impl Iterator<Item = u32>, sum: u32) -> Vec<u8> {
    let parts: Vec<(u32, u32)> = weights
        .map(|w| ((w * 100) / sum, (w * 100) % sum))
        .collect();
    let given: u32 = parts.iter().map(|p| p.0).sum();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|a, b| {
        let ra = parts.get(*a).map_or(0, |p| p.1);
        let rb = parts.get(*b).map_or(0, |p| p.1);
        rb.cmp(&ra).then(a.cmp(b))
    });
    let mut out: Vec<u32> = parts.iter().map(|p| p.0).collect();
    for i in order.into_iter().take((100 - given.min(100)) as usize) {
        if let Some(v) = out.get_mut(i) {
            *v += 1;
        }
    }
    out.into_iter()
        .map(|v| u8::try_from(v).unwrap_or(u8::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lone_mapping_gets_everything() {
        assert_eq!(shares(&[None]).unwrap(), [100]);
        assert_eq!(shares(&[Some(30)]).unwrap(), [100]);
        assert_eq!(shares(&[Some(0)]).unwrap(), [100]);
    }

    #[test]
    fn over_100_is_an_error() {
        let e = shares(&[Some(70), Some(40)]).unwrap_err();
        assert!(e.contains("110"), "{e}");
        assert!(shares(&[Some(70), Some(30)]).is_ok());
    }

    #[test]
    fn unweighted_share_the_remainder_exactly() {
        assert_eq!(shares(&[Some(70), None]).unwrap(), [70, 30]);
        assert_eq!(shares(&[None, None, None]).unwrap(), [34, 33, 33]);
        assert_eq!(
            shares(&[Some(10), None, Some(20), None, None]).unwrap(),
            [10, 24, 20, 23, 23]
        );
        assert_eq!(shares(&[Some(100), None]).unwrap(), [100, 0]);
    }

    #[test]
    fn all_weighted_under_100_are_scaled() {
        assert_eq!(shares(&[Some(20), Some(20)]).unwrap(), [50, 50]);
        assert_eq!(shares(&[Some(10), Some(30)]).unwrap(), [25, 75]);
        assert_eq!(shares(&[Some(1), Some(1), Some(1)]).unwrap(), [34, 33, 33]);
    }

    #[test]
    fn zero_weight_gets_nothing_unless_all_zero() {
        assert_eq!(shares(&[Some(0), Some(50)]).unwrap(), [0, 100]);
        assert_eq!(shares(&[Some(0), None]).unwrap(), [0, 100]);
        assert_eq!(shares(&[Some(0), Some(0)]).unwrap(), [50, 50]);
    }

    fn weights() -> impl Strategy<Value = Vec<Option<u8>>> {
        prop::collection::vec(prop::option::of(0u8..=100), 1..8)
    }

    proptest! {
        #[test]
        fn shares_follow_the_rules(w in weights()) {
            let sum: u32 = w.iter().flatten().map(|x| u32::from(*x)).sum();
            match shares(&w) {
                Err(_) => prop_assert!(sum > 100 && w.len() > 1),
                Ok(s) => {
                    prop_assert_eq!(s.len(), w.len());
                    prop_assert_eq!(s.iter().map(|x| u32::from(*x)).sum::<u32>(), 100);
                    let unweighted = w.iter().filter(|x| x.is_none()).count();
                    if w.len() > 1 && unweighted > 0 {
                        for (wi, si) in w.iter().zip(&s) {
                            if let Some(wi) = wi { prop_assert_eq!(wi, si); }
                        }
                        let un: Vec<u8> = w.iter().zip(&s).filter(|(x, _)| x.is_none()).map(|(_, s)| *s).collect();
                        let (lo, hi) = (un.iter().min().unwrap(), un.iter().max().unwrap());
                        prop_assert!(hi - lo <= 1);
                    }
                    if w.len() > 1 && unweighted == 0 && sum > 0 {
                        for (wi, si) in w.iter().zip(&s) {
                            let exact = f64::from(wi.unwrap()) * 100.0 / f64::from(sum);
                            prop_assert!((f64::from(*si) - exact).abs() < 1.0);
                            if *wi == Some(0) { prop_assert_eq!(*si, 0); }
                        }
                    }
                }
            }
        }

        #[test]
        fn deterministic(w in weights()) {
            prop_assert_eq!(shares(&w), shares(&w));
        }
    }
}
