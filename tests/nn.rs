//! nn modules: shapes, PyTorch-style initialisation bounds, names, train/eval behaviour and
//! the model summary.

mod common;
use common::*;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::{
    summary, BatchNorm2d, Conv2dConfig, Dropout, LinearConfig, MaxPool2d, Module, ReLU, Sequential,
};
use webgrad::Tensor;

#[test]
fn layers_have_pytorch_shapes_and_init_bounds() {
    let lin = LinearConfig::new(400, 120).init(device()).unwrap();
    assert_eq!(lin.weight.shape(), &[120, 400]);
    let bound = 1.0 / 400f32.sqrt();
    let w = lin.weight.to_vec().unwrap();
    assert!(w.iter().all(|v| v.abs() <= bound));
    // Uniform on [-b, b]: the spread is close to the bound, not far inside it.
    let max = w.iter().cloned().fold(0.0f32, |a, v| a.max(v.abs()));
    assert!(max > 0.95 * bound, "{max} vs {bound}");
    let conv = Conv2dConfig::new(6, 16, 5)
        .with_padding(1)
        .init(device())
        .unwrap();
    assert_eq!(conv.weight.shape(), &[16, 6, 5, 5]);
    let b = conv.bias.as_ref().unwrap().to_vec().unwrap();
    assert!(b.iter().all(|v| v.abs() <= 1.0 / 150f32.sqrt()));
    let y = conv
        .forward(&Tensor::zeros(device(), &[2, 6, 9, 9]).unwrap())
        .unwrap();
    assert_eq!(y.shape(), &[2, 16, 7, 7]);
    assert!(Conv2dConfig::new(6, 16, 5)
        .with_groups(4)
        .init(device())
        .is_err());
}

#[test]
fn seeded_initialisation_is_reproducible() {
    let dev = webgrad::Device::new().unwrap();
    dev.manual_seed(9);
    let a = LeNet5::build(&dev, LeNetFlavour::Modern).unwrap();
    dev.manual_seed(9);
    let b = LeNet5::build(&dev, LeNetFlavour::Modern).unwrap();
    for (x, y) in a.parameters().iter().zip(b.parameters()) {
        assert_eq!(x.to_vec().unwrap(), y.to_vec().unwrap());
    }
}

#[test]
fn sequential_names_parameters_and_switches_modes() {
    let mut m = Sequential::new()
        .add("conv", Conv2dConfig::new(1, 2, 3).init(device()).unwrap())
        .add("bn", BatchNorm2d::new(device(), 2).unwrap())
        .add("act", ReLU)
        .add("drop", Dropout::new(0.5));
    let names: Vec<String> = m.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "bn.running_var"
        ]
    );
    let x = tensor(&uniform(1, 2 * 36, 0.0, 1.0), &[2, 1, 6, 6]);
    m.set_training(false);
    let a = m.forward(&x).unwrap().to_vec().unwrap();
    let b = m.forward(&x).unwrap().to_vec().unwrap();
    assert_eq!(
        a, b,
        "eval mode is deterministic (no dropout, running statistics)"
    );
    m.set_training(true);
    // Dropout draws a new mask per call in training mode. (Counting zeros against eval mode
    // would depend on the initial weights, which the tests sharing this device draw in any
    // order: with a conv channel negative everywhere, eval mode has as many zeros.)
    let c = m.forward(&x).unwrap().to_vec().unwrap();
    let d = m.forward(&x).unwrap().to_vec().unwrap();
    assert_ne!(c, d, "training mode drops a different half each call");
    assert!(c.contains(&0.0));
}

#[test]
fn lenet5_summary_lists_shapes_parameters_and_receptive_fields() {
    for flavour in [LeNetFlavour::Modern, LeNetFlavour::Classic] {
        let model = LeNet5::build(device(), flavour).unwrap();
        let (rows, text) = summary(&model, &[1, 1, 28, 28]).unwrap();
        let conv2 = rows.iter().find(|r| r.name == "conv2").unwrap();
        assert_eq!(conv2.output_shape, vec![1, 16, 10, 10]);
        assert_eq!(conv2.parameters, 16 * 6 * 25 + 16);
        assert_eq!(conv2.receptive_field, 14);
        assert_eq!(rows.last().unwrap().output_shape, vec![1, 10]);
        assert_eq!(
            rows.iter()
                .find(|r| r.name == "pool2")
                .unwrap()
                .receptive_field,
            16
        );
        assert!(text.contains("total parameters: 61706"), "{text}");
    }
    let _ = MaxPool2d::new(2);
}

#[test]
fn models_run_forward_and_backward_on_an_empty_batch() {
    for flavour in [LeNetFlavour::Modern, LeNetFlavour::Classic] {
        let mut model = LeNet5::build(device(), flavour).unwrap();
        let x = Tensor::zeros(device(), &[0, 1, 28, 28]).unwrap();
        let logits = model.forward(&x).unwrap();
        assert_eq!(logits.shape(), &[0, 10], "{flavour:?}");
        let loss = logits.cross_entropy(&[], webgrad::Reduction::Sum).unwrap();
        assert_eq!(loss.item().unwrap(), 0.0);
        loss.backward().unwrap();
        for p in model.parameters() {
            let g = p.grad().unwrap().to_vec().unwrap();
            assert!(g.iter().all(|&v| v == 0.0), "{flavour:?}");
        }
        model.set_training(false);
        let logits = webgrad::no_grad(|| model.forward(&x)).unwrap();
        assert_eq!(logits.shape(), &[0, 10]);
    }
}

#[test]
fn models_and_tensors_can_move_to_worker_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let model =
        webgrad::models::LeNet5::build(device(), webgrad::models::LeNetFlavour::Modern).unwrap();
    send_sync(&model);
    send_sync(device());
    let x = webgrad::Tensor::zeros(device(), &[2, 1, 28, 28]).unwrap();
    send_sync(&x);
    // A training forward pass on another thread, the model moved there and back.
    let model = std::thread::spawn(move || {
        let y = model.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 10]);
        model
    })
    .join()
    .unwrap();
    assert_eq!(model.num_parameters(), 61_706);
}
