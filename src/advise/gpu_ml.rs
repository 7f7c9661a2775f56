//! An idle GPU while ML inference misses its latency target.

use super::types::{Out, Recommendation, Severity, ev};
use super::window::window_mean;
use super::{Check, Ctx, GPU_IDLE_ML_SLOW};
use crate::collect::hardware::apple::GPU_UTILIZATION_RATIO;

pub(super) const CHECK: Check = Check {
    kinds: &[GPU_IDLE_ML_SLOW],
    reads: &[GPU_UTILIZATION_RATIO.name],
    run: gpu_ml,
};

fn gpu_ml(cx: &Ctx<'_>, out: &mut Out) {
    const K: &str = GPU_IDLE_ML_SLOW;
    let (inp, window_ms, over) = (cx.inp, cx.window_ms, cx.over);
    let gpu = GPU_UTILIZATION_RATIO.name;
    if inp.families.samples(gpu).next().is_none() {
        return out.skip(K, "the host reports no GPU utilisation");
    }
    let (Some(view), Some(target)) = (inp.trading, inp.ml_target_seconds) else {
        return out.skip(K, "trading is off");
    };
    let Some(ml) = view
        .score
        .components
        .iter()
        .find(|c| c.component == "ml")
        .and_then(|c| c.observed)
    else {
        return out.skip(K, "no ML inference latency recorded in the score window");
    };
    let Some(ring) = cx.ring() else {
        return out.skip(
            K,
            "needs the rule engine's sample ring (rules.enabled: false)",
        );
    };
    let Some(util) = window_mean(ring, gpu, &[], inp.now_ms, window_ms) else {
        return out.skip(
            K,
            format!("less than {} of GPU history so far", inp.config.window),
        );
    };
    if ml > target && util <= inp.config.gpu_idle_ratio {
        out.recs.push(Recommendation {
            kind: K,
            severity: Severity::Warning,
            subject: "ML inference".into(),
            summary: format!(
                "ML inference takes {:.2} ms against a {:.2} ms target while the GPU is {:.0}% busy",
                ml * 1e3,
                target * 1e3,
                util * 100.0
            ),
            evidence: vec![
                ev(
                    "m4watch_performance_component_score{component=\"ml\"} observed",
                    ml,
                    "seconds",
                    "score window quantile",
                ),
                ev("trading.score.ml.target", target, "seconds", "target"),
                ev(gpu, util, "ratio", over),
            ],
            action: "run inference on the GPU (Metal Performance Shaders / MLX) or the Neural \
                     Engine (Core ML) instead of the CPU"
                .into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::testutil::*;

    fn view_with_ml(observed: Option<f64>) -> View {
        let mut v = crate::collect::trading::view::empty_view();
        for c in &mut v.score.components {
            if c.component == "ml" {
                c.observed = observed;
            }
        }
        v
    }

    #[test]
    fn idle_gpu_while_ml_inference_is_slow() {
        let now = 1_000_000;
        let gpu = fam(
            &crate::collect::hardware::apple::GPU_UTILIZATION_RATIO,
            &[(&[], 0.02)],
        );
        let ring = ring_of(std::slice::from_ref(&gpu), now);
        let slow = view_with_ml(Some(0.012));
        let a = run(vec![gpu.clone()], Some(&ring), None, Some(&slow));
        assert_eq!(kinds(&a), [GPU_IDLE_ML_SLOW]);
        assert_eq!(a.recommendations[0].evidence[0].value, 0.012);

        let fast = view_with_ml(Some(0.001));
        assert!(kinds(&run(vec![gpu.clone()], Some(&ring), None, Some(&fast))).is_empty());

        let busy = fam(
            &crate::collect::hardware::apple::GPU_UTILIZATION_RATIO,
            &[(&[], 0.8)],
        );
        let busy_ring = ring_of(std::slice::from_ref(&busy), now);
        assert!(kinds(&run(vec![busy], Some(&busy_ring), None, Some(&slow))).is_empty());

        // No GPU metric (Linux): skipped with the reason.
        let a = run(vec![], Some(&ring), None, Some(&slow));
        assert!(
            a.skipped
                .iter()
                .any(|s| s.kind == GPU_IDLE_ML_SLOW && s.reason.contains("no GPU"))
        );
    }
}
