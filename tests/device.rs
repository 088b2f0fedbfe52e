//! The device: adapter info, large tensors past one grid dimension, limits, seeded random
//! numbers, async readback and the buffer pool.

mod common;
use common::*;
use webgrad::Tensor;

#[test]
fn reports_the_adapter() {
    let info = device().info();
    assert!(!info.name.is_empty());
    assert!(
        ["Vulkan", "Metal", "Dx12", "Gl"].contains(&info.backend.as_str()),
        "{info}"
    );
}

#[test]
fn elementwise_past_65535_workgroups_is_correct() {
    // 65,535 x 256 = 16,776,960: one more workgroup than fits in one grid dimension.
    let n = 65_535 * 256 + 1000;
    let x: Vec<f32> = (0..n).map(|i| (i % 1013) as f32 - 500.0).collect();
    let t = tensor(&x, &[n]);
    let y = t
        .mul_scalar(2.0)
        .unwrap()
        .add(&t)
        .unwrap()
        .to_vec()
        .unwrap();
    for i in (0..n).step_by(9973).chain(n - 300..n) {
        assert_eq!(y[i], 3.0 * x[i], "element {i}");
    }
}

#[test]
fn tensors_over_the_binding_limit_are_an_error() {
    let max = device().limits().max_storage_buffer_binding_size;
    let n = (max / 4 + 1) as usize;
    let err = Tensor::zeros(device(), &[n]).unwrap_err().to_string();
    assert!(err.contains("exceed"), "{err}");
}

#[test]
fn random_tensors_are_reproducible() {
    let dev = webgrad::Device::new().unwrap();
    dev.manual_seed(42);
    let a = Tensor::randn(&dev, &[100]).unwrap().to_vec().unwrap();
    let u = Tensor::rand(&dev, &[100]).unwrap().to_vec().unwrap();
    dev.manual_seed(42);
    assert_eq!(Tensor::randn(&dev, &[100]).unwrap().to_vec().unwrap(), a);
    assert_eq!(Tensor::rand(&dev, &[100]).unwrap().to_vec().unwrap(), u);
    assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
    let mean: f32 = a.iter().sum::<f32>() / 100.0;
    assert!(mean.abs() < 0.3, "{mean}");
}

#[test]
fn fills_and_async_readback() {
    let t = Tensor::full(device(), &[3, 70], 2.5).unwrap();
    assert!(pollster::block_on(t.to_vec_async())
        .unwrap()
        .iter()
        .all(|&v| v == 2.5));
    assert!(Tensor::zeros(device(), &[5])
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    assert_eq!(Tensor::scalar(device(), 4.0).unwrap().item().unwrap(), 4.0);
    let err = Tensor::from_vec(device(), vec![1.0; 5], &[2, 3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 3]"), "{err}");
}

#[test]
fn memory_is_reused_across_iterations() {
    let dev = webgrad::Device::new().unwrap();
    let x = Tensor::randn(&dev, &[64, 100]).unwrap().requires_grad();
    let w = Tensor::randn(&dev, &[100, 10]).unwrap().requires_grad();
    let step = || {
        let loss = x.matmul(&w).unwrap().relu().unwrap().sum().unwrap();
        loss.backward().unwrap();
        x.zero_grad();
        w.zero_grad();
        dev.sync().unwrap();
    };
    for _ in 0..3 {
        step();
    }
    let after_warmup = dev.memory_allocated();
    for _ in 0..50 {
        step();
    }
    assert_eq!(dev.memory_allocated(), after_warmup);
}

#[test]
fn profiling_times_every_kernel_and_changes_no_result() {
    let opts = webgrad::DeviceOptions::default().with_profile(true);
    let dev = webgrad::Device::with_options(opts).unwrap();
    assert!(webgrad::Device::new().unwrap().profile_report().is_none());
    let a = randn(1, 300);
    let b = randn(2, 300);
    let run = |dev: &webgrad::Device| {
        let x = Tensor::from_slice(dev, &a, &[20, 15]).unwrap();
        let y = Tensor::from_slice(dev, &b, &[15, 20]).unwrap();
        // 4 products, 3 ReLUs and 3 divisions.
        let mut h = x.matmul(&y).unwrap();
        for _ in 0..3 {
            h = h
                .relu()
                .unwrap()
                .matmul(&h)
                .unwrap()
                .div_scalar(20.0)
                .unwrap();
        }
        h.to_vec().unwrap()
    };
    let plain = run(&webgrad::Device::new().unwrap());
    dev.profile_reset();
    assert_eq!(run(&dev), plain);
    let report = dev.profile_report().unwrap();
    let calls = |kernel: &str| -> u64 {
        report
            .lines()
            .find(|l| l.split_whitespace().next() == Some(kernel))
            .and_then(|l| l.split_whitespace().nth(1))
            .map_or(0, |c| c.parse().unwrap())
    };
    // Every kernel is in the table with its number of dispatches.
    let products: u64 = [
        "matmul_tiled",
        "matmul_blocked8",
        "matmul_vec4",
        "matmul_subgroup",
        "matmul_rows",
    ]
    .iter()
    .map(|k| calls(k))
    .sum();
    assert!(products >= 4, "{report}");
    assert_eq!(
        calls("unary_forward") + calls("unary_forward4"),
        6,
        "{report}"
    );
}

#[test]
fn shapes_whose_element_count_overflows_are_errors_naming_them() {
    let dev = device();
    let huge = [1usize << 32, 1 << 32];
    let named = |r: webgrad::Result<Tensor>, op: &str, shape: &[usize]| {
        let err = r.unwrap_err().to_string();
        assert!(
            err.starts_with(op) && err.contains(&format!("{shape:?}")),
            "{op}: {err}"
        );
    };
    named(Tensor::zeros(dev, &huge), "tensor", &huge);
    named(Tensor::ones(dev, &huge), "tensor", &huge);
    named(Tensor::full(dev, &huge, 2.0), "tensor", &huge);
    named(Tensor::rand(dev, &huge), "rand", &huge);
    named(Tensor::randn(dev, &huge), "randn", &huge);
    let wraps_to_two = [(1usize << 63) + 1, 2];
    named(
        Tensor::from_vec(dev, vec![1.0, 2.0], &wraps_to_two),
        "from_vec",
        &wraps_to_two,
    );
    // Zero dims beside dims whose product overflows (the strides would wrap).
    let zero_huge = [0usize, 1 << 40, 1 << 40];
    named(Tensor::zeros(dev, &zero_huge), "tensor", &zero_huge);
    let empty = Tensor::zeros(dev, &[0]).unwrap();
    named(empty.reshape(&huge), "reshape", &huge);
    let one = tensor(&[1.0], &[1, 1]);
    named(one.expand(&huge), "expand", &huge);
    // An output shape computed by an op: [2^40, 0] x [0, 2^40] would be [2^40, 2^40].
    let a = Tensor::zeros(dev, &[1 << 40, 0]).unwrap();
    let b = Tensor::zeros(dev, &[0, 1 << 40]).unwrap();
    assert!(a.matmul(&b).is_err());
    // Empty tensors with large dims whose product fits are fine.
    assert_eq!(Tensor::zeros(dev, &[0, 1 << 40]).unwrap().numel(), 0);
}
