//! The bench's pure pieces: latency summaries from HDR histograms, the
//! verdict on one load step, the search for the highest passing rate, and
//! reading counters out of the gateway's `/metrics` text.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with
/// three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Fails only for bounds or precision out of range: these are constants.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The percentiles of a histogram of microseconds, in milliseconds.
pub fn summarize(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Summary {
        count: h.len(),
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

/// What one open-loop step at a fixed rate must show to pass: p99 under
/// the limit, no more than 0.1 % failures, and the completions keeping up
/// with the offered rate (at least 95 % of it).
pub fn step_passes(
    offered_per_s: f64,
    achieved_per_s: f64,
    sent: u64,
    failed: u64,
    p99_ms: f64,
    p99_limit_ms: f64,
) -> bool {
    let failures_ok = sent > 0 && (failed as f64) <= (sent as f64 * 0.001);
    failures_ok && p99_ms < p99_limit_ms && achieved_per_s >= offered_per_s * 0.95
}

/// The search for the highest rate that passes: doubling from a start
/// rate until a step fails (halving instead while the very first ones
/// fail), then bisecting (geometrically) between the best pass and the
/// lowest failure until they are within `precision` of each other, or the
/// step budget is spent.
#[derive(Debug, Clone)]
pub struct RateSearch {
    next: Option<f64>,
    best_pass: Option<f64>,
    lowest_fail: Option<f64>,
    steps_left: usize,
    /// Stop when `lowest_fail / best_pass` is below this (e.g. 1.15).
    precision: f64,
    /// Never offer less than this.
    floor: f64,
}

impl RateSearch {
    pub fn new(start: f64, floor: f64, precision: f64, max_steps: usize) -> Self {
        Self {
            next: (max_steps > 0 && start >= floor).then_some(start),
            best_pass: None,
            lowest_fail: None,
            steps_left: max_steps,
            precision,
            floor,
        }
    }

    /// The rate of the next step, or `None` when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        self.next
    }

    /// The highest rate that passed so far.
    pub fn best(&self) -> Option<f64> {
        self.best_pass
    }

    /// Records the verdict on a step at `rate` and decides the next one.
    pub fn record(&mut self, rate: f64, passed: bool) {
        self.steps_left = self.steps_left.saturating_sub(1);
        if passed {
            if self.best_pass.is_none_or(|b| rate > b) {
                self.best_pass = Some(rate);
            }
        } else if self.lowest_fail.is_none_or(|f| rate < f) {
            self.lowest_fail = Some(rate);
        }
        self.next = if self.steps_left == 0 {
            None
        } else {
            match (self.best_pass, self.lowest_fail) {
                (Some(pass), None) => Some(pass * 2.0),
                (None, Some(fail)) => Some(fail / 2.0).filter(|r| *r >= self.floor),
                (Some(pass), Some(fail)) => {
                    (fail / pass >= self.precision).then(|| round_rate((pass * fail).sqrt()))
                }
                (None, None) => None,
            }
        };
    }
}

/// A rate rounded to two significant-ish figures a reader can compare.
fn round_rate(rate: f64) -> f64 {
    if rate >= 100.0 {
        (rate / 10.0).round() * 10.0
    } else {
        rate.round().max(1.0)
    }
}

/// The sum of a metric's samples in Prometheus/OpenMetrics text whose
/// labels include every `name="value"` pair of `labels`. `name` is the
/// sample's full name (`gateway_inquiries_total`).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels.iter().all(|(k, v)| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            all.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// `a / b`, or `None` when `b` is not a positive number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_thousand_milliseconds() {
        let mut h = new_histogram();
        for ms in 1..=1000u64 {
            h.record(ms * 1000).expect("in range");
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.p999_ms - 999.0).abs() <= 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() <= 1.0, "{s:?}");
        assert!((s.mean_ms - 500.5).abs() <= 1.0, "{s:?}");
        assert_eq!(summarize(&new_histogram()), Summary::default());
    }

    #[test]
    fn a_step_passes_only_with_a_low_tail_few_failures_and_keeping_up() {
        assert!(step_passes(1000.0, 990.0, 10_000, 5, 20.0, 50.0));
        assert!(
            !step_passes(1000.0, 990.0, 10_000, 11, 20.0, 50.0),
            "too many failures"
        );
        assert!(
            !step_passes(1000.0, 990.0, 10_000, 0, 50.0, 50.0),
            "p99 at the limit"
        );
        assert!(
            !step_passes(1000.0, 900.0, 10_000, 0, 20.0, 50.0),
            "falling behind"
        );
        assert!(!step_passes(1000.0, 0.0, 0, 0, 0.0, 50.0), "nothing sent");
    }

    #[test]
    fn the_search_doubles_then_bisects_to_the_precision() {
        // Everything up to 700 per second passes.
        let mut search = RateSearch::new(100.0, 10.0, 1.15, 20);
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            tried.push(rate);
            search.record(rate, rate <= 700.0);
        }
        assert_eq!(&tried[..4], &[100.0, 200.0, 400.0, 800.0]);
        let best = search.best().expect("a pass");
        assert!(
            best <= 700.0 && best > 700.0 / 1.15,
            "{best} after {tried:?}"
        );
        assert!(tried.len() <= 8, "{tried:?}");
    }

    #[test]
    fn the_search_halves_when_the_start_fails_and_stops_at_the_floor() {
        let mut search = RateSearch::new(400.0, 10.0, 1.15, 20);
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            tried.push(rate);
            search.record(rate, rate <= 60.0);
        }
        assert_eq!(&tried[..4], &[400.0, 200.0, 100.0, 50.0]);
        assert!(search.best().is_some_and(|b| (50.0..=60.0).contains(&b)));

        let mut never = RateSearch::new(40.0, 10.0, 1.15, 20);
        let mut tried = Vec::new();
        while let Some(rate) = never.next_rate() {
            tried.push(rate);
            never.record(rate, false);
        }
        assert_eq!(tried, vec![40.0, 20.0, 10.0]);
        assert_eq!(never.best(), None);
    }

    #[test]
    fn the_search_respects_its_step_budget() {
        let mut search = RateSearch::new(100.0, 1.0, 1.01, 3);
        let mut steps = 0;
        while let Some(rate) = search.next_rate() {
            steps += 1;
            search.record(rate, true);
        }
        assert_eq!(steps, 3);
        assert_eq!(search.best(), Some(400.0));
    }

    #[test]
    fn counters_are_summed_by_name_and_labels() {
        let text = "# HELP gateway_inquiries Inquiries\n\
                    # TYPE gateway_inquiries counter\n\
                    gateway_inquiries_total{status=\"accepted\"} 12\n\
                    gateway_inquiries_total{status=\"completed\"} 10\n\
                    gateway_agency_outcomes_total{agency=\"a\",status=\"answered\"} 3\n\
                    gateway_agency_outcomes_total{agency=\"b\",status=\"no_record\"} 4\n\
                    gateway_audit_batch_failures_total 0\n\
                    # EOF\n";
        assert_eq!(
            metric_sum(text, "gateway_inquiries_total", &[("status", "completed")]),
            10.0
        );
        assert_eq!(metric_sum(text, "gateway_agency_outcomes_total", &[]), 7.0);
        assert_eq!(
            metric_sum(text, "gateway_agency_outcomes_total", &[("agency", "b")]),
            4.0
        );
        assert_eq!(
            metric_sum(text, "gateway_audit_batch_failures_total", &[]),
            0.0
        );
        assert_eq!(metric_sum(text, "gateway_orders_total", &[]), 0.0);
    }

    #[test]
    fn ratios_need_a_positive_denominator() {
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
