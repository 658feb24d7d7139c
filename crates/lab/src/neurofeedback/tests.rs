//! Unit tests of the host-side pieces.

use super::*;

#[test]
fn directions_parse_and_print() {
    for s in ["pc1", "pc12", "probe", "random"] {
        assert_eq!(
            s.parse::<Direction>().map(|d| d.to_string()).ok(),
            Some(s.into())
        );
    }
    for bad in ["pc0", "pc", "pcx", "lda", ""] {
        assert!(bad.parse::<Direction>().is_err(), "{bad}");
    }
    let spec = NeurofeedbackSpec::smollm2();
    let json = serde_json::to_string(&spec).unwrap_or_default();
    assert!(json.contains("\"pc16\"") && json.contains("blocks.15.hook_resid_post"));
    let back: NeurofeedbackSpec = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back, spec);
}

#[test]
fn sentences_parse_with_concepts_and_say_what_is_wrong() {
    let s = parse_sentences("a good day | 1\n\n  a bad day |0 \nno concept\n").expect("parses");
    assert_eq!(s.len(), 3);
    assert_eq!(
        (s[0].text.as_str(), s[0].concept),
        ("a good day", Some(true))
    );
    assert_eq!(s[1].concept, Some(false));
    assert_eq!(s[2].concept, None);
    let e = parse_sentences("fine\nbroken | yes").expect_err("bad concept");
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(parse_sentences(" | 1").is_err());
    let few = Sentences::Pasted("one\ntwo".into())
        .load()
        .expect_err("too few");
    assert!(few.to_string().contains("at least 8"), "{few}");
    let sentiment = Sentences::Bundled("sentiment".into())
        .load()
        .expect("bundled");
    assert_eq!(sentiment.len(), 300);
    assert_eq!(
        sentiment.iter().filter(|s| s.concept == Some(true)).count(),
        150
    );
    assert_eq!(icl_words_set().len(), 160);
    // icl-word-3l's set: its 24 words once each, in its vocabulary, half of them animals.
    let words = Sentences::Bundled("icl-word".into())
        .load()
        .expect("bundled");
    let vocab = Bundled::IclWord.vocabulary();
    assert_eq!(words.len(), 24);
    assert!(words.iter().all(|s| vocab.contains(&s.text.as_str())));
    assert_eq!(words.iter().filter(|s| s.concept == Some(true)).count(), 12);
}

#[test]
fn pca_finds_the_axes_of_a_known_cloud() {
    // Points spread 3:2:0.5 along three orthogonal (rotated) axes.
    let axes = [
        [0.6, 0.8, 0.0, 0.0],
        [-0.8, 0.6, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    let scale = [3.0, 2.0, 0.5];
    let mut rng = Rng::new(3);
    let x: Vec<Vec<f64>> = (0..200)
        .map(|_| {
            let c: Vec<f64> = scale.iter().map(|s| s * rng.normal()).collect();
            (0..4)
                .map(|j| 1.0 + (0..3).map(|a| c[a] * axes[a][j]).sum::<f64>())
                .collect()
        })
        .collect();
    let (dirs, frac) = pca(&x, 3);
    for a in 0..3 {
        let cos = dot(&dirs[a], &axes[a]).abs();
        assert!(cos > 0.97, "PC{} cos {cos}", a + 1);
    }
    assert!((frac.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(frac[0] > frac[1] && frac[1] > frac[2] && frac[3] < 1e-12);
    // Eigen-decomposition of a small symmetric matrix by hand: [[2,1],[1,2]] → 3, 1.
    let (vals, _) = jacobi_eigen(vec![vec![2.0, 1.0], vec![1.0, 2.0]]);
    let mut v = vals.clone();
    v.sort_by(f64::total_cmp);
    assert!((v[0] - 1.0).abs() < 1e-12 && (v[1] - 3.0).abs() < 1e-12);
}

#[test]
fn probe_separates_labelled_points_and_medians_split() {
    let mut rng = Rng::new(5);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..100 {
        let c = i % 2 == 0;
        let shift = if c { 2.0 } else { -2.0 };
        x.push(vec![rng.normal() + shift, rng.normal() * 3.0, rng.normal()]);
        y.push(c);
    }
    let w = probe(&x, &y).expect("probe");
    assert!(w[0] > 0.9, "probe direction {w:?}");
    assert!(probe(&x, &[true; 100]).is_err());
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    let p = permutation(10, 7);
    let mut s = p.clone();
    s.sort_unstable();
    assert_eq!(s, (0..10).collect::<Vec<_>>());
    let (pool, q) = split(10, 7, 3);
    assert_eq!(pool.len(), 5);
    assert_eq!(q.len(), 3);
    assert!(q.iter().all(|i| !pool.contains(i)));
    let r = random_direction(16, 1);
    assert!((dot(&r, &r) - 1.0).abs() < 1e-12);
}

#[test]
fn quantile_bins_label_the_tails_and_leave_the_middle_out() {
    // NumPy: np.quantile([1, 2, 3, 4], [0.25, 0.5]) = [1.75, 2.5].
    assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.25) - 1.75).abs() < 1e-12);
    assert_eq!(
        quantile(&[4.0, 1.0, 3.0, 2.0], 0.5),
        median(&[1.0, 2.0, 3.0, 4.0])
    );
    let proj: Vec<f64> = (1..=8).map(f64::from).collect();
    let (labels, cuts) = bin_labels(&proj, Bins::Quantiles(0.25));
    assert_eq!(cuts, [2.75, 6.25]);
    assert_eq!(
        labels,
        [Some(1), Some(1), None, None, None, None, Some(0), Some(0)]
    );
    let (labels, cuts) = bin_labels(&proj, Bins::Median);
    assert_eq!(cuts, [4.5, 4.5]);
    assert_eq!(labels.iter().filter(|l| **l == Some(0)).count(), 4);
    // The labelled split keeps the seed's order and drops unlabelled sentences.
    let (pool, q) = labelled_split(8, 3, 8, &labels);
    assert_eq!((pool, q), split(8, 3, 8));
    let tails = bin_labels(&proj, Bins::Quantiles(0.25)).0;
    let (pool, q) = labelled_split(8, 3, 8, &tails);
    assert!(pool.iter().chain(&q).all(|&i| tails[i].is_some()));
    assert_eq!(pool.len() + q.len(), 4);
    let json = serde_json::to_string(&Bins::Quantiles(0.25)).unwrap_or_default();
    assert_eq!(json, r#"{"quantiles":0.25}"#);
    assert_eq!(
        serde_json::to_string(&Bins::Median).unwrap_or_default(),
        r#""median""#
    );
}
