//! dropout: keep rate, scaling, reproducibility from the seed, gradient through the mask.

mod common;
use common::*;
use webgrad::Tensor;

#[test]
fn keeps_about_one_minus_p_and_scales_the_rest() {
    let dev = webgrad::Device::new().unwrap();
    dev.manual_seed(3);
    let n = 100_000;
    let x = Tensor::ones(&dev, &[n]).unwrap();
    let y = x.dropout(0.3, true).unwrap().to_vec().unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    assert!((kept - 0.7).abs() < 0.01, "kept {kept}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    // Reproducible from the seed, different for the next call.
    dev.manual_seed(3);
    assert_eq!(x.dropout(0.3, true).unwrap().to_vec().unwrap(), y);
    assert_ne!(x.dropout(0.3, true).unwrap().to_vec().unwrap(), y);
}

#[test]
fn eval_mode_and_edge_probabilities() {
    let x = tensor(&randn(1, 10), &[10]);
    assert_eq!(
        x.dropout(0.5, false).unwrap().to_vec().unwrap(),
        x.to_vec().unwrap()
    );
    assert_eq!(
        x.dropout(0.0, true).unwrap().to_vec().unwrap(),
        x.to_vec().unwrap()
    );
    assert!(x
        .dropout(1.0, true)
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    assert!(x.dropout(1.5, true).is_err());
}

#[test]
fn gradient_flows_through_the_same_mask() {
    let x = tensor(&uniform(2, 1000, 1.0, 2.0), &[1000]).requires_grad();
    let y = x.dropout(0.5, true).unwrap();
    y.sum().unwrap().backward().unwrap();
    let (yv, gv, xv) = (
        y.to_vec().unwrap(),
        x.grad().unwrap().to_vec().unwrap(),
        x.to_vec().unwrap(),
    );
    for i in 0..1000 {
        assert!((gv[i] * xv[i] - yv[i]).abs() < 1e-5, "{i}");
    }
}
