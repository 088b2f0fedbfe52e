//! The page's Rust code run natively (lavapipe): the reference runner and the trainer behave
//! as the native tests expect, and the artifacts the page test compares with are written.

use webgrad::data::Mnist;
use webgrad::nn::Module;
use webgrad::{no_grad, weights, Device, Tensor};
use webgrad_web::checks;
use webgrad_web::reference::{run_lenet_step, run_ops, Reference, OP_CASE_FILES};
use webgrad_web::trainer::Trainer;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/reference/");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/mnist-subset");
const NATIVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/test-artifacts/native");

fn reference(name: &str) -> Reference {
    let bytes = std::fs::read(format!("{REFERENCE}{name}")).unwrap();
    Reference::parse(&bytes, name).unwrap()
}

#[test]
fn the_reference_runner_passes_natively() {
    let dev = Device::new().unwrap();
    let mut checks = Vec::new();
    for file in OP_CASE_FILES {
        let r = reference(file);
        let ran = pollster::block_on(run_ops(&r, &dev, None));
        // Every case ran (a case that fails to run is one check named by the case alone).
        for case in r.cases() {
            let of_case = ran
                .iter()
                .filter(|c| c.name.starts_with(&format!("{case}.")))
                .count();
            assert!(of_case >= 1, "{file}: case {case} gave no checks");
        }
        checks.extend(ran);
    }
    let step = pollster::block_on(run_lenet_step(&reference("lenet5_step.safetensors"), &dev));
    checks.extend(step.unwrap());
    let failed: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
    assert!(failed.is_empty(), "{failed:?}");
    println!("{} checks pass", checks.len());
}

#[test]
fn the_reference_runner_catches_a_wrong_value() {
    // A check must be able to fail: a case against a perturbed reference, a value within the
    // usual tolerances and an exact one (max pooling's indices).
    let dev = Device::new().unwrap();
    for (file, case, role) in [
        ("ops.safetensors", "relu", "output"),
        ("pools.safetensors", "max_plain", "indices"),
    ] {
        let bytes = std::fs::read(format!("{REFERENCE}{file}")).unwrap();
        let (mut tensors, meta) = weights::load_bytes(&bytes, file).unwrap();
        let key = format!("{case}.{role}");
        tensors.get_mut(&key).unwrap().data[3] += 1e-3;
        let named: Vec<(String, webgrad::Tensor)> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), weights::to_device(&dev, t).unwrap()))
            .collect();
        let bad = weights::to_bytes(&named, &meta).unwrap();
        let r = Reference::parse(&bad, "perturbed").unwrap();
        let checks = pollster::block_on(run_ops(&r, &dev, Some(case)));
        let check = checks.iter().find(|c| c.name == key).unwrap();
        assert!(!check.ok && check.detail.contains("element 3"), "{check:?}");
        // The perturbed value is the only failure.
        assert_eq!(checks.iter().filter(|c| !c.ok).count(), 1, "{checks:?}");
    }
}

#[test]
fn blocking_calls_work_natively() {
    let report = pollster::block_on(checks::blocking()).unwrap();
    for (call, error) in report.as_object().unwrap() {
        assert!(error.is_null(), "{call}: {error}");
    }
}

/// Writes what the page test compares with: a checkpoint as the native `lenet5` example
/// writes it (`weights::save_module`; CI puts the example's own there first) and the classes
/// native webgrad gives the first 500 test digits with it.
#[test]
fn native_predictions_for_the_page() {
    let dev = Device::new().unwrap();
    let data = Mnist::load(DATA).unwrap();
    let test_images = data.test.images.clone();
    let mut trainer = Trainer::new(&dev, data.train, data.test, 32, 1e-3, 0).unwrap();
    let checkpoint = std::path::Path::new(NATIVE).join("lenet5.safetensors");
    if checkpoint.exists() {
        let bytes = std::fs::read(&checkpoint).unwrap();
        trainer
            .load_checkpoint(&bytes, "lenet5.safetensors")
            .unwrap();
    } else {
        trainer.train_batches(100).unwrap();
        std::fs::create_dir_all(NATIVE).unwrap();
        weights::save_module(&checkpoint, trainer.model()).unwrap();
    }
    let classes = pollster::block_on(trainer.test_classes(500)).unwrap();
    let accuracy = pollster::block_on(trainer.test_accuracy(500)).unwrap();
    assert!(
        accuracy > 0.5,
        "the checkpoint classifies {accuracy} of the digits"
    );
    // How sure the model is of each class (top probability minus the next): where two classes
    // tie to float rounding, another adapter may break the tie the other way.
    let x = Tensor::from_slice(&dev, &test_images[..500 * 784], &[500, 1, 28, 28]).unwrap();
    let p = no_grad(|| trainer.model().forward(&x)?.softmax(1)).unwrap();
    let margins: Vec<f32> = p
        .to_vec()
        .unwrap()
        .chunks(10)
        .map(|row| {
            let mut r = row.to_vec();
            r.sort_by(|a, b| b.total_cmp(a));
            r[0] - r[1]
        })
        .collect();
    let json = serde_json::json!({ "classes": classes, "margins": margins, "accuracy": accuracy });
    std::fs::write(
        std::path::Path::new(NATIVE).join("predictions.json"),
        json.to_string(),
    )
    .unwrap();
}
