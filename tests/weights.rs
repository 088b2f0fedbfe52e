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
    let tmp = dir.join(format!(".model.safetensors.tmp-{}", std::process::id()));
    std::fs::create_dir(&tmp).unwrap();
    assert!(weights::save_module(&path, &model).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}
