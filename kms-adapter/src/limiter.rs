//! The request rate shared by every clone of a [`Kms`](crate::Kms) client:
//! adaptive, so a run sits just under the KMS quota the account has left.
//!
//! KMS gives an account one shared quota of cryptographic requests (10,000/s
//! by default) and answers `ThrottlingException` above it. Requests are
//! spaced by a virtual-schedule token bucket (GCRA) whose rate adapts:
//!
//! - **Start**: 1,000/s (or `--max-rps`, when lower), doubling every 100 ms
//!   while callers use the whole rate and nothing is throttled.
//! - **On throttling**: at most once per 200 ms, the rate drops to 97% of
//!   what KMS admitted over the last 200 ms, but never below half, nor above
//!   97%, of the rate before: a quota that fell (another job started, the
//!   account's other traffic grew) is followed within a few cuts, and a
//!   rate that merely touched the quota loses 3%, not half (AIMD's
//!   sawtooth would average 75% of the quota; this one about 98%).
//! - **Probing**: every 100 ms without a throttle in which callers used at
//!   least 80% of the rate, it grows by 0.5%, then 1%, 2%, … up to 32% per
//!   step, so it finds quota freed by others without hammering.
//! - `--max-rps` caps it.
//!
//! Reservations are made at most 25 ms ahead, so a cut takes effect on
//! requests not yet sent within that time, not after a queue drains.
//!
//! The controller ([`Control`]) takes the time as an argument: the tests
//! drive it with a simulated clock and a simulated KMS quota, deterministically.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};

use crate::metrics::error_code;

/// The first rate, before anything is known of the quota.
const INITIAL_RATE: f64 = 1000.0;
/// The lowest rate the controller falls to.
const MIN_RATE: f64 = 1.0;
/// How often the rate may grow, and the span of the admitted-rate measure.
const INTERVAL: Duration = Duration::from_millis(100);
/// Throttles within this time of a cut were caused by the rate before it.
const CUT_SPACING: Duration = Duration::from_millis(200);
/// How far ahead a request may reserve its slot.
const HORIZON: Duration = Duration::from_millis(25);
/// Requests a caller may send at once after an idle moment: this much time's worth.
const TOLERANCE: Duration = Duration::from_millis(5);
/// Of the admitted rate, what a cut keeps.
const CUT_TO: f64 = 0.97;
/// Utilisation of the rate that counts as limited by it (only then does it grow).
const BUSY: f64 = 0.8;

/// What a caller does for a request slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Go now.
    Now,
    /// Reserved: go at this time.
    At(Instant),
    /// Nothing reservable yet: ask again at this time.
    Retry(Instant),
}

/// The adaptive rate, driven by explicit times.
#[derive(Debug)]
pub(crate) struct Control {
    rate: f64,
    cap: Option<f64>,
    adaptive: bool,
    /// The theoretical time of the next request (GCRA).
    next: Instant,
    /// Before the first throttle: doubling.
    slow_start: bool,
    interval_start: Instant,
    granted: u64,
    ok: u64,
    throttled: bool,
    /// Admitted requests in the last two intervals (older first).
    ok_history: [u64; 2],
    /// Intervals in a row without a throttle, since the last cut.
    clean: u32,
    last_cut: Option<Instant>,
}

impl Control {
    /// `cap`: most requests per second (`--max-rps`); `adaptive`: whether
    /// throttles and probes move the rate (otherwise it stays at the cap).
    pub(crate) fn new(cap: Option<f64>, adaptive: bool, now: Instant) -> Self {
        let rate = match (cap, adaptive) {
            (Some(cap), false) => cap,
            (Some(cap), true) => cap.min(INITIAL_RATE),
            (None, _) => INITIAL_RATE,
        };
        Self {
            rate,
            cap,
            adaptive,
            next: now,
            slow_start: true,
            interval_start: now,
            granted: 0,
            ok: 0,
            throttled: false,
            ok_history: [0; 2],
            clean: 0,
            last_cut: None,
        }
    }

    /// Whether there is any limit at all.
    pub(crate) fn limits(&self) -> bool {
        self.adaptive || self.cap.is_some()
    }

    /// The current rate, requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// A slot for one request.
    pub(crate) fn reserve(&mut self, now: Instant) -> Slot {
        self.roll(now);
        let earliest = now.checked_sub(TOLERANCE).unwrap_or(now);
        let slot = self.next.max(earliest);
        if slot > now + HORIZON {
            return Slot::Retry(slot - HORIZON / 2);
        }
        self.next = slot + Duration::from_secs_f64(1.0 / self.rate);
        self.granted += 1;
        if slot <= now { Slot::Now } else { Slot::At(slot) }
    }

    /// A request was answered (not throttled).
    pub(crate) fn admitted(&mut self, now: Instant) {
        self.roll(now);
        self.ok += 1;
    }

    /// A request was answered with ThrottlingException.
    pub(crate) fn throttled(&mut self, now: Instant) {
        self.roll(now);
        self.throttled = true;
        self.clean = 0;
        self.slow_start = false;
        if !self.adaptive || self.last_cut.is_some_and(|t| now.duration_since(t) < CUT_SPACING) {
            return;
        }
        self.last_cut = Some(now);
        // Admitted per second over the last two whole intervals and this partial one.
        let span = 2.0 * INTERVAL.as_secs_f64() + now.duration_since(self.interval_start).as_secs_f64();
        let admitted = (self.ok_history[0] + self.ok_history[1] + self.ok) as f64 / span;
        let target = admitted * CUT_TO;
        self.rate = target.clamp(self.rate * 0.5, self.rate * CUT_TO).max(MIN_RATE);
        // Reservations already made beyond the new spacing are kept; new ones follow the new rate.
    }

    /// Closes the intervals that ended before `now`, growing the rate after
    /// a busy one without throttles.
    fn roll(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.interval_start);
        if elapsed < INTERVAL {
            return;
        }
        let whole = elapsed.as_nanos() / INTERVAL.as_nanos();
        let busy = self.granted as f64 >= BUSY * self.rate * INTERVAL.as_secs_f64();
        if whole == 1 {
            self.ok_history = [self.ok_history[1], self.ok];
        } else {
            // Idle intervals in between: nothing was admitted in them.
            self.ok_history = [0, 0];
        }
        if self.adaptive && whole == 1 && busy && !self.throttled {
            let factor = if self.slow_start { 2.0 } else { 1.0 + 0.005 * f64::from(1u32 << self.clean.min(6)) };
            self.rate *= factor;
            self.clean += 1;
        }
        if let Some(cap) = self.cap {
            self.rate = self.rate.min(cap);
        }
        self.interval_start += INTERVAL * u32::try_from(whole).unwrap_or(u32::MAX);
        self.granted = 0;
        self.ok = 0;
        self.throttled = false;
    }
}

/// The shared limiter: [`Control`] behind a lock, with the waiting.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    control: Mutex<Control>,
}

impl RateLimiter {
    pub(crate) fn new(cap: Option<f64>, adaptive: bool) -> Self {
        Self { control: Mutex::new(Control::new(cap, adaptive, Instant::now())) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Control) -> T) -> T {
        // A panic while holding the lock leaves a usable controller: recover it.
        let mut control = self.control.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut control)
    }

    /// Waits for this request's slot.
    pub(crate) async fn acquire(&self) {
        loop {
            let slot = self.with(|c| if c.limits() { c.reserve(Instant::now()) } else { Slot::Now });
            match slot {
                Slot::Now => return,
                Slot::At(t) => {
                    tokio::time::sleep_until(t.into()).await;
                    return;
                }
                Slot::Retry(t) => tokio::time::sleep_until(t.into()).await,
            }
        }
    }

    pub(crate) fn admitted(&self) {
        self.with(|c| c.admitted(Instant::now()));
    }

    pub(crate) fn throttled(&self) {
        self.with(|c| c.throttled(Instant::now()));
    }

    /// The current rate, requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.with(|c| c.rate())
    }
}

/// Tells the SDK not to retry ThrottlingException answers itself: the
/// adapter retries them after waiting for the (lowered) rate. The SDK's
/// retries would bypass the limiter, hammer the quota, and spend its retry
/// budget (500 tokens, 5 a retry), after which it retries nothing, faults
/// included.
#[derive(Debug)]
pub(crate) struct ThrottlesAreRetriedByTheAdapter;

impl ClassifyRetry for ThrottlesAreRetriedByTheAdapter {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.output_or_error() {
            Some(Err(err))
                if err.as_operation_error().is_some_and(|e| {
                    matches!(error_code(e), Some("ThrottlingException" | "LimitExceededException"))
                }) =>
            {
                RetryAction::RetryForbidden
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "RekeyThrottlesAreRetriedByTheAdapter"
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};

    use super::*;

    /// KMS's quota as a token bucket holding 100 ms of tokens.
    struct Quota {
        rate: f64,
        tokens: f64,
        last: Instant,
    }

    impl Quota {
        fn admit(&mut self, now: Instant) -> bool {
            self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate * 0.1);
            self.last = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                true
            } else {
                false
            }
        }
    }

    /// Per simulated second: (requests sent, requests admitted).
    type Seconds = Vec<(u64, u64)>;

    /// A client with `in_flight` workers against a quota that is
    /// `quota(second)`, with a 10 ms round trip, for `seconds`, in 250 µs
    /// steps. Every throttled request is retried. Deterministic: no clock,
    /// no randomness.
    fn simulate(cap: Option<f64>, in_flight: usize, seconds: u64, quota: impl Fn(u64) -> f64) -> Seconds {
        let t0 = Instant::now();
        let step = Duration::from_micros(250);
        let rtt = Duration::from_millis(10);
        let mut control = Control::new(cap, true, t0);
        let mut server = Quota { rate: quota(0), tokens: quota(0) * 0.1, last: t0 };
        // Answers on their way back: (arrival, admitted).
        let mut answers: VecDeque<(Instant, bool)> = VecDeque::new();
        // Workers waiting, by the time they may act (earliest first), and
        // whether they hold a reserved slot then (or must ask again).
        let mut waiting: BinaryHeap<Reverse<(Instant, bool)>> = (0..in_flight).map(|_| Reverse((t0, false))).collect();
        let mut out = vec![(0, 0); usize::try_from(seconds).expect("small")];
        let steps = seconds * 4_000;
        for i in 0..steps {
            let now = t0 + step * u32::try_from(i).expect("small");
            let second = usize::try_from(i / 4_000).expect("small");
            server.rate = quota(i / 4_000);
            while answers.front().is_some_and(|(t, _)| *t <= now) {
                let (_, ok) = answers.pop_front().expect("checked");
                if ok {
                    control.admitted(now)
                } else {
                    control.throttled(now)
                }
                waiting.push(Reverse((now, false)));
            }
            while waiting.peek().is_some_and(|Reverse((t, _))| *t <= now) {
                let Some(Reverse((_, reserved))) = waiting.pop() else { break };
                match if reserved { Slot::Now } else { control.reserve(now) } {
                    Slot::Now => {
                        let ok = server.admit(now);
                        out[second].0 += 1;
                        out[second].1 += u64::from(ok);
                        answers.push_back((now + rtt, ok));
                    }
                    Slot::At(t) => waiting.push(Reverse((t.max(now + step), true))),
                    Slot::Retry(t) => waiting.push(Reverse((t.max(now + step), false))),
                }
            }
        }
        out
    }

    fn admitted_per_second(s: &[(u64, u64)]) -> f64 {
        s.iter().map(|(_, ok)| *ok as f64).sum::<f64>() / s.len() as f64
    }

    fn sent_per_second(s: &[(u64, u64)]) -> f64 {
        s.iter().map(|(sent, _)| *sent as f64).sum::<f64>() / s.len() as f64
    }

    #[test]
    fn sits_just_under_the_quota() {
        let s = simulate(None, 400, 20, |_| 10_000.0);
        let steady = &s[2..];
        let admitted = admitted_per_second(steady);
        let sent = sent_per_second(steady);
        assert!(admitted >= 9_500.0, "admitted {admitted}/s of a 10,000/s quota: {s:?}");
        assert!(sent <= 10_500.0, "sent {sent}/s against a 10,000/s quota: hammering: {s:?}");
    }

    #[test]
    fn follows_a_quota_that_drops_mid_run_within_five_seconds() {
        let s = simulate(None, 400, 30, |second| if second < 10 { 10_000.0 } else { 2_000.0 });
        assert!(admitted_per_second(&s[3..10]) >= 9_500.0, "{s:?}");
        // From 5 s after the drop: sending about what is admitted, admitted near the new quota.
        let after = &s[15..];
        let (sent, admitted) = (sent_per_second(after), admitted_per_second(after));
        assert!(sent <= 2_200.0, "still sending {sent}/s 5 s after the quota fell to 2,000/s: {s:?}");
        assert!(admitted >= 1_900.0, "admitted {admitted}/s of 2,000/s: {s:?}");
    }

    #[test]
    fn probes_back_up_when_the_quota_returns() {
        let s = simulate(None, 400, 30, |second| if (5..10).contains(&second) { 2_000.0 } else { 10_000.0 });
        let admitted = admitted_per_second(&s[20..]);
        assert!(admitted >= 9_500.0, "admitted {admitted}/s 10 s after the quota came back: {s:?}");
    }

    #[test]
    fn the_cap_is_never_exceeded() {
        let s = simulate(Some(500.0), 400, 10, |_| 10_000.0);
        for (second, (sent, _)) in s.iter().enumerate() {
            // One tolerance's burst on top of 500 in the first second.
            assert!(*sent <= 505, "second {second}: {sent} sent with --max-rps 500: {s:?}");
        }
        assert!(admitted_per_second(&s[1..]) >= 495.0, "{s:?}");
    }

    #[test]
    fn without_a_quota_the_rate_grows_to_what_the_workers_can_send() {
        // 400 workers at 10 ms: at most 40,000/s.
        let s = simulate(None, 400, 5, |_| 1e9);
        let admitted = admitted_per_second(&s[2..]);
        assert!(admitted >= 38_000.0, "{admitted}/s: {s:?}");
    }
}
