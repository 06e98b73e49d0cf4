//! How big each bucket of a published snapshot is: the revocations it holds, plus room for
//! those the publisher expects there before its next full snapshot.
//!
//! A bucket that fills up grows, and growth changes the layout: verifiers then need a full
//! snapshot instead of a delta. Room costs bits in every snapshot shipped. The publisher
//! therefore measures where revocations arrive — at which distance from now their `exp`
//! lies — and, whenever it publishes a full snapshot anyway (start, rotation, growth), sizes
//! each bucket for its entries plus the arrivals expected there until the next rotation. An
//! idle publisher ships nearly empty buckets; a bucket near expiry that receives few new
//! revocations gets little room, the newest bucket that receives many gets much.

use std::time::Duration;

use revbloom::{BucketId, Window};

/// How fast the arrival rates follow the inflow: they are exponentially weighted moving
/// averages with this time constant.
pub const RATE_TIME_CONSTANT: Duration = Duration::from_secs(600);

/// How long the shape of the inflow (where `exp` lies relative to arrival) is remembered. A
/// 24 h horizon spreads the arrivals over 288 bins: at 1k revocations an hour a bin sees under
/// one arrival in ten minutes, too few for a rate of its own to size room from, so a bucket is
/// also given its share of the whole rate by the shape of the last hours.
pub const SHAPE_TIME_CONSTANT: Duration = Duration::from_secs(2 * 3600);

/// Room is sized for the expected arrivals times this, plus [`ROOM_SIGMAS`] standard
/// deviations of a Poisson count: arrivals come in bursts, and room that runs out costs every
/// verifier a full snapshot.
pub const ROOM_FACTOR: f64 = 1.1;

/// Standard deviations of a Poisson count added to the expected arrivals.
pub const ROOM_SIGMAS: f64 = 3.0;

/// Bins of the `exp − now` distribution per bucket width.
const BINS_PER_BUCKET: u64 = 12;

/// Steps of the integration over the period room must last.
const STEPS: u64 = 12;

/// The least age the warm-up correction assumes: a handful of arrivals in the first seconds
/// is not extrapolated to a rate.
const MIN_WARM_UP_SECS: u64 = 60;

/// Where revocations arrive, learnt from those the publisher applies: the rate of arrivals by
/// how far ahead of their arrival their `exp` lies, in bins of a twelfth of a bucket, over the
/// last [`RATE_TIME_CONSTANT`]; and the same distribution (its shape) over the last
/// [`SHAPE_TIME_CONSTANT`].
///
/// A bucket's expected arrivals over a period follow from it: as time passes, the bucket's
/// `exp` range slides towards "now" through that distribution (a bucket close to expiry
/// receives ever fewer revocations, the newest bucket ever more), and the expectation is the
/// rate integrated over the part of the distribution the range covers at each moment. It is
/// taken both ways, from the recent rates by bin (which see a change of shape within minutes)
/// and from the whole recent rate shared out by the longer shape (steady where a bin sees few
/// arrivals), and the larger is used.
#[derive(Debug, Clone)]
pub struct Inflow {
    width: u64,
    leeway: u64,
    /// Buckets in the ring: an `exp` past its far end goes to the overflow bucket.
    ring: u64,
    bin: u64,
    /// Arrivals per second with `exp − now` in `[i·bin, (i+1)·bin)`; the last entry takes
    /// everything further ahead and revocations without `exp`.
    rates: Vec<f64>,
    /// Arrivals per second, all bins together (the sum of `rates`).
    rate: f64,
    /// Weighted arrival counts with `exp − now` in `[i·bin, (i+1)·bin)`; the last entry takes
    /// everything further ahead and revocations without `exp`. Only their proportions are
    /// used.
    shape: Vec<f64>,
    /// The sum of `shape`.
    shape_total: f64,
    /// Unix time the averages were last decayed to.
    at: u64,
    /// Unix time counting began: a young rate has seen less than a time constant of
    /// arrivals, and is scaled up for it.
    since: u64,
    tau: f64,
    shape_tau: f64,
    /// The last refit, if any.
    last_refit: Option<LastRefit>,
}

/// When buckets were last refit, and each one's entries and the capacity it was given.
#[derive(Debug, Clone)]
struct LastRefit {
    at: u64,
    buckets: Vec<(BucketId, u64, u64)>,
}

impl Inflow {
    /// No arrivals yet, for a window of `window`'s geometry, at unix time `now`.
    pub fn new(window: &Window, now: u64) -> Self {
        let geo = window.geometry();
        let width = geo.width.max(1);
        let bin = (width / BINS_PER_BUCKET).max(1);
        // Offsets up to the ring's far end seen from its oldest bucket, plus one bucket.
        let span = (u64::from(geo.buckets) + 2).saturating_mul(width);
        let bins = usize::try_from(span / bin + 1)
            .unwrap_or(usize::MAX)
            .min(1 << 20);
        Self {
            width,
            leeway: geo.leeway,
            ring: u64::from(geo.buckets),
            bin,
            rates: vec![0.0; bins + 1],
            rate: 0.0,
            shape: vec![0.0; bins + 1],
            shape_total: 0.0,
            at: now,
            since: now,
            tau: RATE_TIME_CONSTANT.as_secs_f64(),
            shape_tau: SHAPE_TIME_CONSTANT.as_secs_f64(),
            last_refit: None,
        }
    }

    fn decay_to(&mut self, now: u64) {
        if now <= self.at {
            return;
        }
        let dt = (now - self.at) as f64;
        let k = (-dt / self.tau).exp();
        for r in &mut self.rates {
            *r *= k;
        }
        self.rate *= k;
        let k = (-dt / self.shape_tau).exp();
        for r in &mut self.shape {
            *r *= k;
        }
        // Summed afresh rather than scaled, so rounding never drifts it from the bins'.
        self.shape_total = self.shape.iter().sum();
        self.at = now;
    }

    /// Count `n` revocations applied at unix time `now` with this `exp` (`None`: without one).
    pub fn record(&mut self, now: u64, exp: Option<u64>, n: u64) {
        self.decay_to(now);
        let last = self.shape.len() - 1;
        let i = exp.map_or(last, |exp| {
            let b = exp.saturating_sub(now) / self.bin;
            usize::try_from(b).map_or(last, |b| b.min(last))
        });
        if let (Some(r), Some(w)) = (self.rates.get_mut(i), self.shape.get_mut(i)) {
            // An arrival adds 1/τ: a steady rate r settles at r.
            *r += n as f64 / self.tau;
            self.rate += n as f64 / self.tau;
            *w += n as f64;
            self.shape_total += n as f64;
        }
    }

    /// The factor that turns the stored rates into rates at `now`: their decay since the
    /// last arrival, and the warm-up correction (an average started `age` ago holds
    /// 1 − e^(−age/τ) of a steady rate).
    fn scale(&self, now: u64) -> f64 {
        let decay = (-(now.saturating_sub(self.at) as f64) / self.tau).exp();
        let age = now.saturating_sub(self.since).max(MIN_WARM_UP_SECS);
        decay / (1.0 - (-(age as f64) / self.tau).exp())
    }

    /// The sum of `bins` over `exp − now` in `[lo, hi)` seconds, bins taken in proportion to
    /// their overlap.
    fn between(&self, bins: &[f64], lo: u64, hi: u64) -> f64 {
        let last = bins.len().saturating_sub(1);
        let bin = self.bin;
        let mut sum = 0.0;
        let first = lo / bin;
        let mut b = first;
        while b.saturating_mul(bin) < hi {
            let Ok(i) = usize::try_from(b) else { break };
            if i >= last {
                break;
            }
            let (start, end) = (b * bin, (b + 1) * bin);
            let overlap = end.min(hi).saturating_sub(start.max(lo));
            sum += bins.get(i).copied().unwrap_or(0.0) * overlap as f64 / bin as f64;
            b += 1;
        }
        sum
    }

    /// Arrivals expected into bucket `id` during the `period` seconds after `now`, during
    /// which the ring does not rotate.
    pub fn expected(&self, now: u64, id: BucketId, period: u64) -> f64 {
        let by_bin = self.integrate(&self.rates, now, id, period);
        let by_shape = if self.shape_total > 0.0 {
            self.integrate(&self.shape, now, id, period) * self.rate / self.shape_total
        } else {
            0.0
        };
        by_bin.max(by_shape) * self.scale(now)
    }

    /// `bins` (rates, or weights) integrated over the part of the distribution bucket `id`
    /// covers during the `period` seconds after `now`.
    fn integrate(&self, bins: &[f64], now: u64, id: BucketId, period: u64) -> f64 {
        let oldest = now.saturating_sub(self.leeway) / self.width;
        let far_end = oldest.saturating_add(self.ring).saturating_mul(self.width);
        let beyond = bins.last().copied().unwrap_or(0.0);
        let step = (period / STEPS).max(1);
        let mut total = 0.0;
        let mut t = 0;
        while t < period {
            let dt = step.min(period - t);
            // The middle of the step.
            let u = now + t + dt / 2;
            let rate = match id {
                BucketId::Expiry(b) if b.saturating_sub(oldest) < self.ring => {
                    let start = b.saturating_mul(self.width);
                    let end = start.saturating_add(self.width);
                    self.between(bins, start.saturating_sub(u), end.saturating_sub(u))
                }
                // Past the far end at this moment, or without `exp`.
                BucketId::Overflow => {
                    self.between(bins, far_end.saturating_sub(u), u64::MAX) + beyond
                }
                BucketId::Expiry(_) => 0.0,
            };
            total += rate * dt as f64;
            t += dt;
        }
        total
    }

    /// Capacity for a bucket holding `entries` at unix time `now`: the entries, plus room for
    /// the arrivals expected during `period` ([`ROOM_FACTOR`] times the mean, plus
    /// [`ROOM_SIGMAS`] Poisson deviations).
    pub fn capacity(&self, now: u64, id: BucketId, entries: u64, period: u64) -> u64 {
        entries.saturating_add(room_for(self.expected(now, id, period)))
    }

    /// Arrivals into bucket `id` over `period` seconds at the rate it has received them since
    /// the last refit, if it received more than the room that refit gave it (so the averages
    /// fell short: a burst, or a change of shape they have not caught up with yet).
    fn outgrown(&self, now: u64, id: BucketId, entries: u64, period: u64) -> Option<f64> {
        let last = self.last_refit.as_ref()?;
        let &(_, before, capacity) = last.buckets.iter().find(|(b, _, _)| *b == id)?;
        let elapsed = now.checked_sub(last.at).filter(|&e| e > 0)?;
        (entries > capacity)
            .then(|| entries.saturating_sub(before) as f64 * period as f64 / elapsed as f64)
    }

    /// Seconds from `now` until the window next rotates (the next bucket boundary, shifted by
    /// the leeway as the window's oldest bucket is): the period room must last, since a
    /// rotation brings a full snapshot anyway.
    pub fn until_rotation(&self, now: u64) -> u64 {
        let t = now.saturating_sub(self.leeway);
        self.width - t % self.width
    }
}

/// Resize `window`'s buckets for the arrivals `inflow` expects before the next rotation, none
/// for fewer than `floor` revocations nor smaller than one block (64 bytes: a quiet
/// publisher's first revocations in a bucket travel as deltas, for under 2 KB in all).
///
/// A bucket that received more than the room the previous refit gave it is also given room
/// for its own arrivals since then, extrapolated to the period: the averages lag a sudden
/// burst or a change of shape by minutes, and sized from them alone the bucket would outgrow
/// its room again seconds later, each time costing verifiers a full snapshot.
pub fn refit(window: &mut Window, inflow: &mut Inflow, now: u64, floor: u64) {
    let period = inflow.until_rotation(now);
    let one_block = window.geometry().max_load.floor().max(1.0) as u64;
    let floor = floor.max(one_block);
    let mut buckets = Vec::new();
    let seen: &Inflow = inflow;
    window.refit_with(|id, entries| {
        let mut capacity = seen.capacity(now, id, entries, period);
        if let Some(arrivals) = seen.outgrown(now, id, entries, period) {
            capacity = capacity.max(entries.saturating_add(room_for(arrivals)));
        }
        let capacity = capacity.max(floor);
        buckets.push((id, entries, capacity));
        capacity
    });
    inflow.last_refit = Some(LastRefit { at: now, buckets });
}

/// Room for a mean of `mean` arrivals: [`ROOM_FACTOR`] times it, plus [`ROOM_SIGMAS`]
/// Poisson deviations.
fn room_for(mean: f64) -> u64 {
    if mean > 0.0 {
        (mean * ROOM_FACTOR + ROOM_SIGMAS * mean.sqrt()).ceil() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revbloom::WindowConfig;

    const HOUR: u64 = 3600;

    fn window(now: u64) -> Window {
        Window::with_seed(WindowConfig::default(), now, 7).unwrap()
    }

    /// A bucket boundary plus the leeway: the moment the window rotates.
    fn rotation() -> u64 {
        1_800_000_000 + 60 // 1_800_000_000 is a multiple of 3600
    }

    /// The expiry bucket `ahead` seconds after `t`.
    fn bucket_at(t: u64, ahead: u64) -> BucketId {
        BucketId::Expiry((t + ahead) / HOUR)
    }

    #[test]
    fn a_steady_rate_is_learnt_and_forgotten() {
        let now = rotation();
        let w = window(now);
        let mut inflow = Inflow::new(&w, now);
        // 10 per second, every one expiring 5 h 20 min after it arrives.
        let ahead = 5 * HOUR + 1200;
        for t in 0..120 {
            inflow.record(now + t, Some(now + t + ahead), 10);
        }
        // After two minutes (warm-up corrected): about 10 per second into that bucket.
        let t = now + 120;
        let e = inflow.expected(t, bucket_at(t, ahead), 60);
        assert!((e - 600.0).abs() < 60.0, "{e}");
        for t in 120..3000 {
            inflow.record(now + t, Some(now + t + ahead), 10);
        }
        let t = now + 3000;
        let e = inflow.expected(t, bucket_at(t, ahead), 60);
        assert!((e - 600.0).abs() < 30.0, "{e}");
        // Other buckets and the overflow bucket expect nothing.
        assert_eq!(inflow.expected(t, bucket_at(t, 2 * HOUR), 60), 0.0);
        assert_eq!(inflow.expected(t, BucketId::Overflow, 60), 0.0);
        // Twenty silent minutes (two time constants): e^-2 of the rate is left.
        let later = t + 1200;
        let e = inflow.expected(later, bucket_at(later, ahead), 60);
        assert!((e - 600.0 * (-2.0f64).exp()).abs() < 10.0, "{e}");
    }

    #[test]
    fn a_burst_and_a_change_of_shape_are_seen_within_minutes() {
        let now = rotation();
        let w = window(now);
        let mut inflow = Inflow::new(&w, now);
        // Two hours of 1 per second: three quarters 5 h ahead, a quarter 9 h ahead.
        let (near, far) = (5 * HOUR + 1200, 9 * HOUR + 1200);
        for t in 0..2 * HOUR {
            let ahead = if t % 4 == 0 { far } else { near };
            inflow.record(now + t, Some(now + t + ahead), 1);
        }
        let t = now + 2 * HOUR;
        let e = inflow.expected(t, bucket_at(t, near), 60);
        assert!((e - 45.0).abs() < 3.0, "{e}");
        // Ten minutes at five times the rate, same shape: the rate follows within minutes,
        // 1 + 4 × (1 − 1/e) ≈ 3.5 per second.
        for s in 0..600 {
            let ahead = if s % 4 == 0 { far } else { near };
            inflow.record(t + s, Some(t + s + ahead), 5);
        }
        let t = t + 600;
        let e = inflow.expected(t, bucket_at(t, near), 60);
        assert!((e - 0.75 * 60.0 * 3.53).abs() < 10.0, "{e}");
        // Then ten minutes of 1 per second, all 9 h ahead.
        for s in 0..600 {
            inflow.record(t + s, Some(t + s + far), 1);
        }
        let t = t + 600;
        let (n, f) = (
            inflow.expected(t, bucket_at(t, near), 60),
            inflow.expected(t, bucket_at(t, far), 60),
        );
        // The far bucket is sized from the last minutes' rates by bin (57 in the next 60 s);
        // its share of the two-hour shape alone would give it 36.
        assert!(f > 50.0, "{f}");
        // The near bucket keeps its share of the two-hour shape (80): its own rate of the last
        // minutes, with no arrival for ten of them, would give it 58 and keep falling. Arrivals
        // that pause for minutes in one bin do not take its room away.
        assert!(n > 70.0, "{n}");
    }

    #[test]
    fn a_bucket_that_outgrew_its_room_is_refit_for_its_own_arrivals() {
        let start = rotation();
        let mut w = window(start);
        let mut inflow = Inflow::new(&w, start);
        w.enable_journal();
        let mut key = 0u64;
        let mut arrive = |w: &mut Window, inflow: &mut Inflow, t: u64, ahead: u64, n: u64| {
            for _ in 0..n {
                key += 1;
                w.insert(key.to_le_bytes(), Some(t + ahead));
            }
            inflow.record(t, Some(t + ahead), n);
        };
        // An hour of 2 per second, 5 h ahead; then the rotation's refit.
        for t in start..start + HOUR {
            arrive(&mut w, &mut inflow, t, 5 * HOUR, 2);
        }
        let t0 = start + HOUR;
        w.advance(t0);
        refit(&mut w, &mut inflow, t0, 0);
        w.take_journal();
        // Then a new client: 20 per second into a bucket 90 min ahead that saw none before.
        // Each growth is a full snapshot for every verifier, and is refit as the publisher
        // does.
        let mut growths = 0;
        for t in t0..t0 + 600 {
            arrive(&mut w, &mut inflow, t, 5 * HOUR, 2);
            arrive(&mut w, &mut inflow, t, 90 * 60, 20);
            if w.take_journal().layout_changed {
                growths += 1;
                refit(&mut w, &mut inflow, t, 0);
                w.take_journal();
            }
        }
        // The first growth shows the averages fell short; the refit then sizes the bucket
        // for its own 20 per second until the rotation, and it stops growing.
        assert!((1..=2).contains(&growths), "{growths}");
    }

    #[test]
    fn a_bucket_sliding_towards_now_receives_ever_less() {
        // Every second 24 arrivals whose exp is spread evenly over the next 24 h (scattered
        // within each hour, so no part of it is more recent than another).
        let now = rotation();
        let w = window(now);
        let mut inflow = Inflow::new(&w, now);
        for t in 0..3600u64 {
            for k in 0..24 {
                let within = (t * 24 + k).wrapping_mul(2_654_435_761) % HOUR;
                inflow.record(now + t, Some(now + t + k * HOUR + within), 1);
            }
        }
        let t = now + 3600; // the next rotation
        let period = inflow.until_rotation(t);
        assert_eq!(period, HOUR);
        let current = (t - 60) / HOUR;
        // The oldest bucket leaves the distribution as the hour passes (half an hour's worth
        // of its rate), a bucket in the middle gets a full hour's, the newest enters it (half).
        let e = |b: u64| inflow.expected(t, BucketId::Expiry(b), period);
        let (first, middle, newest) = (e(current), e(current + 12), e(current + 24));
        assert!((first - 1800.0).abs() < 150.0, "{first}");
        assert!((middle - 3600.0).abs() < 150.0, "{middle}");
        assert!((newest - 1800.0).abs() < 150.0, "{newest}");
    }

    #[test]
    fn room_follows_the_expected_arrivals() {
        let now = rotation();
        let w = window(now);
        let mut inflow = Inflow::new(&w, now);
        let ahead = 20 * HOUR + 1200;
        for t in 0..3000 {
            inflow.record(now + t, Some(now + t + ahead), 1);
        }
        let t = now + 3000;
        // No arrivals expected: exactly the entries, so an idle store ships empty buckets.
        assert_eq!(inflow.capacity(t, bucket_at(t, 3 * HOUR), 500, 60), 500);
        // About 60 in the next 60 s: 1.1 × 60 + 3 × √60 ≈ 90 of room.
        let c = inflow.capacity(t, bucket_at(t, ahead), 500, 60);
        assert!((580..600).contains(&c), "{c}");
    }

    #[test]
    fn an_idle_publisher_ships_a_small_snapshot() {
        let now = rotation();
        let mut w = window(now);
        let inflow = Inflow::new(&w, now);
        let mut inflow = inflow;
        refit(&mut w, &mut inflow, now, 0);
        // One block per bucket, ring and overflow.
        let buckets = u64::from(w.geometry().buckets) + 1;
        assert_eq!(w.filter_bytes(), buckets * 64);
        // Control: the default sizing without a refit is half a megabyte.
        assert!(window(now).filter_bytes() > 500_000);
    }

    #[test]
    fn arrivals_beyond_the_ring_count_for_the_overflow_bucket() {
        let now = rotation() + 120;
        let w = window(now);
        let mut inflow = Inflow::new(&w, now);
        let n = u64::from(w.geometry().buckets);
        let far_end = (w.oldest_bucket() + n) * HOUR;
        // Arrivals 26 h ahead: past the far end for the whole period.
        for t in 0..600 {
            inflow.record(now + t, Some(now + t + 26 * HOUR), 1);
        }
        let t = now + 600;
        assert!(inflow.expected(t, BucketId::Overflow, 600) > 500.0);
        assert_eq!(
            inflow.expected(t, BucketId::Expiry(far_end / HOUR - 1), 600),
            0.0
        );
        // Revocations without exp count for the overflow bucket too.
        let mut inflow = Inflow::new(&w, now);
        for t in 0..600 {
            inflow.record(now + t, None, 1);
        }
        assert!(inflow.expected(t, BucketId::Overflow, 600) > 500.0);
    }

    #[test]
    fn room_lasts_until_the_next_rotation() {
        let now = rotation();
        let w = window(now);
        let inflow = Inflow::new(&w, now);
        // The window rotates `leeway` (60 s) after each boundary.
        assert_eq!(inflow.until_rotation(now), 3600);
        assert_eq!(inflow.until_rotation(now + 1), 3599);
        assert_eq!(inflow.until_rotation(now + 3599), 1);
    }
}
