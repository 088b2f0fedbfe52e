//! Checkpoints: save -> load round-trips bit for bit with PyTorch's names; missing,
//! mis-shaped, truncated and corrupted files are errors naming the tensor or the file; a
//! failed save leaves the old file intact.

mod common;
use common::*;
use std::collections::HashMap;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::Module;
use webgrad::weights;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("webgrad-w-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn save_then_load_round_trips_bit_for_bit() {
    let dir = temp("roundtrip");
    let path = dir.join("lenet.safetensors");
    device().manual_seed(1);
    let a = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    weights::save_module(&path, &a).unwrap();
    device().manual_seed(2);
    let b = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    weights::load_module(&path, &b).unwrap();
    for ((na, ta), (nb, tb)) in a.named_parameters().iter().zip(b.named_parameters()) {
        assert_eq!(*na, nb);
        let (va, vb) = (ta.to_vec().unwrap(), tb.to_vec().unwrap());
        assert!(
            va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{na}"
        );
    }
    // The file holds PyTorch's names and layouts.
    let (tensors, _) = weights::load(&path).unwrap();
    assert_eq!(tensors["conv1.weight"].shape, vec![6, 1, 5, 5]);
    assert_eq!(tensors["fc1.weight"].shape, vec![120, 400]);
    assert_eq!(tensors.len(), 10);
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_or_misshaped_tensors_are_named() {
    let dir = temp("names");
    let model = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    let mut dict = model.state_dict();
    dict.retain(|(n, _)| n != "fc2.bias");
    let path = dir.join("partial.safetensors");
    weights::save(&path, &dict, &HashMap::new()).unwrap();
    let e = weights::load_module(&path, &model).unwrap_err().to_string();
    assert!(
        e.contains("fc2.bias") && e.contains("partial.safetensors"),
        "{e}"
    );

    let mut dict = model.state_dict();
    for (n, t) in dict.iter_mut() {
        if n == "fc1.weight" {
            *t = tensor(&randn(1, 400 * 121), &[121, 400]);
        }
    }
    let path = dir.join("shape.safetensors");
    weights::save(&path, &dict, &HashMap::new()).unwrap();
    let e = weights::load_module(&path, &model).unwrap_err().to_string();
    assert!(
        e.contains("fc1.weight") && e.contains("[121, 400]") && e.contains("[120, 400]"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn truncated_and_corrupted_files_are_errors() {
    let dir = temp("corrupt");
    let model = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    let path = dir.join("ok.safetensors");
    weights::save_module(&path, &model).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for (name, data) in [
        ("truncated.safetensors", bytes[..bytes.len() / 2].to_vec()),
        ("header.safetensors", bytes[..20].to_vec()),
        ("garbage.safetensors", vec![0xff; 64]),
        ("empty.safetensors", vec![]),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        let e = weights::load_module(&p, &model).unwrap_err().to_string();
        assert!(e.contains(name), "{e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failed_save_leaves_the_old_file_intact() {
    let dir = temp("atomic");
    let path = dir.join("model.safetensors");
    let model = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    weights::save_module(&path, &model).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Make the write fail: occupy the temporary file's name with a directory (a read-only
    // directory would not stop root).
    let tmp = dir.join(format!(
        ".model.safetensors.webgrad-tmp-{}",
        std::process::id()
    ));
    std::fs::create_dir(&tmp).unwrap();
    assert!(weights::save_module(&path, &model).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn stale_temporary_files_of_our_naming_are_removed() {
    let dir = temp("stale");
    let path = dir.join("model.safetensors");
    let model = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    // Left by a process that no longer runs (no pid reaches 2^32 - 1).
    let stale = dir.join(".model.safetensors.webgrad-tmp-4294967295");
    // A running process's (pid 1 always runs), another target's, and not ours at all.
    let running = dir.join(".model.safetensors.webgrad-tmp-1");
    let other = dir.join(".other.safetensors.webgrad-tmp-4294967295");
    let foreign = dir.join(".model.safetensors.tmp-4294967295");
    for f in [&stale, &running, &other, &foreign] {
        std::fs::write(f, b"partial").unwrap();
    }
    weights::save_module(&path, &model).unwrap();
    weights::load_module(&path, &model).unwrap();
    if std::path::Path::new("/proc/self").exists() {
        assert!(!stale.exists(), "the stale temporary file is still there");
    }
    for f in [&running, &other, &foreign] {
        assert!(f.exists(), "{} was removed", f.display());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unexpected_tensors_are_an_error_unless_the_load_is_not_strict() {
    let dir = temp("strict");
    let model = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    let mut dict = model.state_dict();
    dict.retain(|(n, _)| n != "fc3.bias");
    dict.push(("fc4.weight".into(), tensor(&[1.0, 2.0], &[2])));
    dict.push(("conv1.scale".into(), tensor(&[3.0], &[1])));
    let path = dir.join("extra.safetensors");
    weights::save(&path, &dict, &HashMap::new()).unwrap();
    // Strict (the default): one error listing every missing and unexpected name.
    let e = weights::load_module(&path, &model).unwrap_err().to_string();
    assert!(
        e.contains("extra.safetensors")
            && e.contains("missing tensors: fc3.bias")
            && e.contains("unexpected tensors: conv1.scale, fc4.weight"),
        "{e}"
    );
    // Only extra tensors: still an error when strict.
    let full = dir.join("full.safetensors");
    let mut dict = model.state_dict();
    dict.push(("fc4.weight".into(), tensor(&[1.0, 2.0], &[2])));
    weights::save(&full, &dict, &HashMap::new()).unwrap();
    let e = weights::load_module(&full, &model).unwrap_err().to_string();
    assert!(
        e.contains("unexpected tensors: fc4.weight") && !e.contains("missing"),
        "{e}"
    );
    // Not strict: the present tensors load, the others are reported.
    let fresh = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    let before = fresh.state_dict();
    let fc3_bias = before
        .iter()
        .find(|(n, _)| n == "fc3.bias")
        .unwrap()
        .1
        .to_vec()
        .unwrap();
    let report = weights::load_module_with(&path, &fresh, false).unwrap();
    assert_eq!(report.missing, vec!["fc3.bias".to_string()]);
    assert_eq!(
        report.unexpected,
        vec!["conv1.scale".to_string(), "fc4.weight".to_string()]
    );
    for ((n, want), (_, got)) in model.state_dict().iter().zip(fresh.state_dict()) {
        let got = got.to_vec().unwrap();
        if n == "fc3.bias" {
            assert_eq!(got, fc3_bias, "{n} was left as it was");
        } else {
            assert_eq!(got, want.to_vec().unwrap(), "{n}");
        }
    }
    // A mis-shaped tensor is an error either way.
    let mut dict = model.state_dict();
    dict[0].1 = tensor(&[0.0; 3], &[3]);
    let bad = dir.join("bad.safetensors");
    weights::save(&bad, &dict, &HashMap::new()).unwrap();
    assert!(weights::load_module_with(&bad, &fresh, false).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn half_precision_tensors_are_converted_to_f32() {
    let dir = temp("half");
    // f16: 1, -2, 0.5, 65504 (largest), 2^-24 (smallest subnormal), inf.
    let f16: [u16; 6] = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00];
    let f16_want = [1.0, -2.0, 0.5, 65504.0, 2f32.powi(-24), f32::INFINITY];
    // bf16: 1, -2, 3.140625, 2^-133 (subnormal), 1.0e38-ish, -inf.
    let bf16: [u16; 6] = [0x3f80, 0xc000, 0x4049, 0x0001, 0x7e96, 0xff80];
    let bf16_want = [
        1.0,
        -2.0,
        3.140625,
        2f32.powi(-133),
        f32::from_bits(0x7e96_0000),
        f32::NEG_INFINITY,
    ];
    let le = |v: &[u16]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (a, b) = (le(&f16), le(&bf16));
    let views = vec![
        (
            "a",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![2, 3], &a).unwrap(),
        ),
        (
            "b",
            safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![6], &b).unwrap(),
        ),
    ];
    let path = dir.join("half.safetensors");
    std::fs::write(&path, safetensors::serialize(views, &None).unwrap()).unwrap();
    let (t, _) = weights::load(&path).unwrap();
    assert_eq!(t["a"].shape, vec![2, 3]);
    assert_eq!(t["a"].data, f16_want);
    assert_eq!(t["b"].data, bf16_want);
    std::fs::remove_dir_all(&dir).ok();
}

/// Sequential(conv, bn) as in tests/reference/bn_state.py.
fn conv_bn() -> webgrad::nn::Sequential {
    use webgrad::nn::{BatchNorm2d, Conv2dConfig, Sequential};
    Sequential::new()
        .add("conv", Conv2dConfig::new(1, 2, 3).init(device()).unwrap())
        .add("bn", BatchNorm2d::new(device(), 2).unwrap())
}

fn tracked(m: &dyn Module) -> u64 {
    let counters = m.named_counters();
    assert_eq!(counters.len(), 1);
    assert_eq!(counters[0].0, "bn.num_batches_tracked");
    counters[0].1.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn batch_norm_counts_training_batches_and_saves_the_count_as_int64() {
    let dir = temp("counters");
    let path = dir.join("bn.safetensors");
    let mut a = conv_bn();
    let x = tensor(&uniform(4, 4 * 36, 0.0, 1.0), &[4, 1, 6, 6]);
    for _ in 0..3 {
        a.forward(&x).unwrap();
    }
    a.eval();
    a.forward(&x).unwrap();
    assert_eq!(tracked(&a), 3, "eval-mode forwards are not counted");
    weights::save_module(&path, &a).unwrap();
    // As PyTorch writes it: an int64 scalar beside the f32 tensors.
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    assert!(
        header.contains(r#""bn.num_batches_tracked":{"dtype":"I64","shape":[]"#),
        "{header}"
    );
    let (tensors, _) = weights::load(&path).unwrap();
    assert_eq!(tensors["bn.num_batches_tracked"].ints, Some(vec![3]));
    let b = conv_bn();
    weights::load_module(&path, &b).unwrap();
    assert_eq!(tracked(&b), 3);
}

#[test]
fn pytorch_batch_norm_state_dicts_load_strictly_with_their_count() {
    let path = format!(
        "{}/tests/reference/bn_state.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let m = conv_bn();
    weights::load_module(&path, &m).unwrap();
    assert_eq!(tracked(&m), 3);
    let (tensors, _) = weights::load(&path).unwrap();
    let bn = m.named_buffers();
    assert_eq!(bn[0].0, "bn.running_mean");
    assert_eq!(
        bn[0].1.to_vec().unwrap(),
        tensors["bn.running_mean"].data,
        "PyTorch's running statistics after three batches"
    );
}

#[test]
fn a_file_without_the_count_loads_and_a_bad_count_is_an_error() {
    let dir = temp("counters-bad");
    let m = conv_bn();
    m.named_counters()[0]
        .1
        .store(7, std::sync::atomic::Ordering::Relaxed);
    // Older files (and other frameworks') have no count: the load keeps the module's.
    let plain = dir.join("plain.safetensors");
    weights::save(&plain, &m.state_dict(), &HashMap::new()).unwrap();
    weights::load_module(&plain, &m).unwrap();
    assert_eq!(tracked(&m), 7);
    // Two values, or a negative or fractional count, are errors naming the entry.
    for (name, shape, value) in [
        ("two", vec![2], vec![1.0, 2.0]),
        ("negative", vec![], vec![-1.0]),
        ("fraction", vec![], vec![1.5]),
    ] {
        let path = dir.join(format!("{name}.safetensors"));
        let mut tensors = m.state_dict();
        tensors.push(("bn.num_batches_tracked".to_string(), tensor(&value, &shape)));
        weights::save(&path, &tensors, &HashMap::new()).unwrap();
        let err = weights::load_module(&path, &m).unwrap_err().to_string();
        assert!(err.contains("bn.num_batches_tracked"), "{name}: {err}");
        assert_eq!(tracked(&m), 7, "{name}: a failed load changes nothing");
    }
}
