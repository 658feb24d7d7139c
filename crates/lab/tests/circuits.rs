//! Circuits analyses: patterns equal the HF hook; the logit lens's last row is the model's output;
//! direct logit attribution sums to the logit difference; head scores are attention fractions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use interplay_lab::circuits::{
    attention_patterns, direct_logit_attribution, head_scores, logit_lens,
};
use interplay_models::device::read_f32;
use interplay_models::load::load_path;
use interplay_models::{ComputeDevice, Transformer};
use serde_json::Value;

use interplay_testkit::fixtures;

fn load(name: &str) -> Transformer {
    load_path(&fixtures().join(name), &ComputeDevice::cpu().device)
        .unwrap()
        .model
}

use interplay_testkit::golden;

fn prompt(g: &Value) -> Vec<u32> {
    g["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn patterns_match_hf() {
    for name in ["tiny-gpt2", "tiny-llama"] {
        let g = golden(name);
        let m = load(name);
        let pats = pollster::block_on(attention_patterns(&m, &prompt(&g))).unwrap();
        for l in 0..2 {
            let want: Vec<f64> = g["hooks"][format!("blocks.{l}.attn.hook_pattern")]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let got: Vec<f32> = pats.pattern[l]
                .iter()
                .flatten()
                .flatten()
                .copied()
                .collect();
            assert_eq!(got.len(), want.len(), "{name} L{l}: pattern entries");
            for (a, b) in got.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5, "{name} L{l}");
            }
        }
    }
}

#[test]
fn logit_lens_ends_at_the_models_output() {
    let g = golden("tiny-llama");
    let m = load("tiny-llama");
    let ids = prompt(&g);
    let lens = pollster::block_on(logit_lens(&m, &ids, &[5, 17], 5)).unwrap();
    assert_eq!(lens.top.len(), 3);
    let logits = pollster::block_on(read_f32(
        m.forward(m.tokens(std::slice::from_ref(&ids)).unwrap()),
    ))
    .unwrap();
    let last = &logits[logits.len() - 96..];
    let argmax = (0..96)
        .max_by(|&a, &b| last[a].total_cmp(&last[b]))
        .unwrap();
    assert_eq!(lens.top[2][0].0 as usize, argmax);
    let p: f32 = lens.top[2].iter().map(|t| t.1).sum();
    assert!(p > 0.0 && p <= 1.0 + 1e-5);
    assert!(
        lens.tracked
            .iter()
            .all(|row| row.iter().all(|(p, r)| *p >= 0.0 && *r < 96))
    );
}

#[test]
fn attribution_sums_to_the_logit_difference() {
    for name in ["tiny-gpt2", "tiny-llama"] {
        let g = golden(name);
        let m = load(name);
        let a = pollster::block_on(direct_logit_attribution(&m, &prompt(&g), 30, 58)).unwrap();
        let sum: f32 =
            a.heads.iter().flatten().sum::<f32>() + a.mlps.iter().sum::<f32>() + a.embed + a.biases;
        assert!(
            (sum - a.total).abs() < 1e-4 * a.total.abs().max(1.0),
            "{name}: {sum} vs {}",
            a.total
        );
        assert_eq!(a.heads.len(), 2);
        assert_eq!(a.heads[0].len(), 4);
    }
}

#[test]
fn head_scores_are_attention_fractions() {
    let m = load("tiny-gpt2");
    let s = pollster::block_on(head_scores(&m, 10, 1)).unwrap();
    assert_eq!(s.ids.len(), 20);
    assert_eq!(&s.ids[..10], &s.ids[10..]);
    for grid in [&s.induction, &s.previous, &s.duplicate] {
        assert!(
            grid.iter()
                .flatten()
                .all(|v| (0.0..=1.0 + 1e-6).contains(v))
        );
    }
    assert!(s.loss_first.is_finite() && s.loss_second.is_finite());
    // tiny-gpt2 holds 32 positions: a half of 17 is refused in the half's terms.
    let e = pollster::block_on(head_scores(&m, 17, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 16 tokens"), "{e}");
    assert!(pollster::block_on(head_scores(&m, 16, 1)).is_ok());
    assert_eq!(
        s,
        pollster::block_on(head_scores(&m, 10, 1)).unwrap(),
        "seeded"
    );
}
