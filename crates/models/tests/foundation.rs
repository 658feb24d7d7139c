//! Foundation checks: the bundled GPT-2 tokenizer gives GPT-2's ids, and both native devices
//! compute the device check correctly and agree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
#![cfg(not(target_family = "wasm"))]

use interplay_models::TextTokenizer;
use interplay_models::device::{ComputeDevice, device_check};

fn gpt2() -> TextTokenizer {
    let dir = format!(
        "{}/../../public/tokenizers/gpt2",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    );
    let enc = std::fs::read(format!("{dir}/encoder.json")).expect("bundled encoder.json");
    let bpe = std::fs::read_to_string(format!("{dir}/vocab.bpe")).expect("bundled vocab.bpe");
    TextTokenizer::gpt2_from_bpe(&enc, &bpe).expect("gpt2 tokenizer builds")
}

#[test]
fn gpt2_tokenizer_gives_known_ids() {
    let tk = gpt2();
    assert_eq!(tk.encode("Hello world").unwrap(), vec![15496, 995]);
    // " Mary" and " John" are single GPT-2 tokens, as the IOI experiments need.
    assert_eq!(tk.encode(" Mary").unwrap(), vec![5335]);
    assert_eq!(tk.encode(" John").unwrap(), vec![1757]);
    assert_eq!(tk.vocab_size(), 50257);
    let ids = tk.encode("When Mary and John went to the store").unwrap();
    assert_eq!(
        tk.decode(&ids).unwrap(),
        "When Mary and John went to the store"
    );
    assert_eq!(tk.display_tokens(&ids[..2]), vec!["When", "␣Mary"]);
}

#[test]
fn cpu_device_check_matches_reference() {
    let dev = ComputeDevice::cpu();
    let check = pollster::block_on(device_check(&dev, 48)).unwrap();
    assert!(check.max_abs_err < 1e-4, "{check:?}");
    // The checksum the start page shows is NumPy's (make_device_check_golden.py).
    let want = interplay_testkit::golden("device")["checksum"]["48"]
        .as_f64()
        .unwrap();
    assert!(
        (check.checksum - want).abs() < 1e-3,
        "{check:?} vs NumPy {want}"
    );
}

#[test]
fn wgpu_device_check_matches_cpu() {
    // Natively this runs on lavapipe (software Vulkan); a machine with no adapter skips loudly.
    let Some(gpu) = interplay_testkit::wgpu_device() else {
        return;
    };
    let g = pollster::block_on(device_check(&gpu, 48)).unwrap();
    let c = pollster::block_on(device_check(&ComputeDevice::cpu(), 48)).unwrap();
    assert!(g.max_abs_err < 1e-4, "{g:?}");
    assert!((g.checksum - c.checksum).abs() < 1e-3, "{g:?} vs {c:?}");
    let want = interplay_testkit::golden("device")["checksum"]["48"]
        .as_f64()
        .unwrap();
    assert!((g.checksum - want).abs() < 1e-3, "{g:?} vs NumPy {want}");
    // On wgpu the check's product is the fused blocks' kernel, tiled by four rows: a size that
    // leaves a partial last tile, and a single row (a generation step's tile of one).
    for n in [50, 1] {
        let g = pollster::block_on(device_check(&gpu, n)).unwrap();
        let c = pollster::block_on(device_check(&ComputeDevice::cpu(), n)).unwrap();
        assert!(g.max_abs_err < 1e-4, "{g:?}");
        assert!((g.checksum - c.checksum).abs() < 1e-3, "{g:?} vs {c:?}");
    }
}
