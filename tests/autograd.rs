//! The tape: the worked example, accumulation at fan-out, leaf gradients that persist and
//! accumulate until zero_grad, no_grad, and the autograd errors.

mod common;
use common::*;
use webgrad::{no_grad, Tensor};

#[test]
fn worked_example_is_exact() {
    let dev = device();
    let x = Tensor::from_vec(dev, vec![-2.0], &[1])
        .unwrap()
        .requires_grad();
    let y = Tensor::from_vec(dev, vec![5.0], &[1])
        .unwrap()
        .requires_grad();
    let z = Tensor::from_vec(dev, vec![-4.0], &[1])
        .unwrap()
        .requires_grad();
    let f = x.add(&y).unwrap().mul(&z).unwrap();
    f.backward().unwrap();
    assert_eq!(f.to_vec().unwrap(), vec![-12.0]);
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![-4.0]);
    assert_eq!(y.grad().unwrap().to_vec().unwrap(), vec![-4.0]);
    assert_eq!(z.grad().unwrap().to_vec().unwrap(), vec![3.0]);
}

#[test]
fn fan_out_accumulates_gradients() {
    // f = x*x + x*3 + exp(x): the tensor x feeds three ops. df/dx = 2x + 3 + exp(x).
    let xs = randn(3, 10);
    let x = tensor(&xs, &[10]).requires_grad();
    let f = x
        .mul(&x)
        .unwrap()
        .add(&x.mul_scalar(3.0).unwrap())
        .unwrap()
        .add(&x.exp().unwrap())
        .unwrap();
    f.sum().unwrap().backward().unwrap();
    let want: Vec<f64> = xs
        .iter()
        .map(|&v| 2.0 * v as f64 + 3.0 + (v as f64).exp())
        .collect();
    assert_close(
        &x.grad().unwrap().to_vec().unwrap(),
        &want,
        1e-6,
        1e-6,
        "fan-out",
    );

    // An intermediate used twice: h = tanh(x); f = h * h.
    let x2 = tensor(&xs, &[10]).requires_grad();
    let h = x2.tanh().unwrap();
    h.mul(&h).unwrap().sum().unwrap().backward().unwrap();
    let want: Vec<f64> = xs
        .iter()
        .map(|&v| {
            let t = (v as f64).tanh();
            2.0 * t * (1.0 - t * t)
        })
        .collect();
    assert_close(
        &x2.grad().unwrap().to_vec().unwrap(),
        &want,
        1e-6,
        1e-5,
        "shared intermediate",
    );
}

#[test]
fn leaf_gradients_accumulate_until_zero_grad() {
    let x = tensor(&[1.0, 2.0], &[2]).requires_grad();
    for _ in 0..3 {
        x.mul_scalar(2.0)
            .unwrap()
            .sum()
            .unwrap()
            .backward()
            .unwrap();
    }
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![6.0, 6.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    x.mul_scalar(2.0)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![2.0, 2.0]);
}

#[test]
fn only_tensors_that_require_grad_get_gradients() {
    let a = tensor(&[1.0, 2.0], &[2]).requires_grad();
    let b = tensor(&[3.0, 4.0], &[2]);
    a.mul(&b).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(a.grad().unwrap().to_vec().unwrap(), vec![3.0, 4.0]);
    assert!(b.grad().is_none());
    // detach cuts the graph.
    let c = tensor(&[1.0], &[1]).requires_grad();
    let d = c.mul_scalar(2.0).unwrap().detach();
    assert!(!d.is_requires_grad());
}

#[test]
fn no_grad_records_nothing() {
    let x = tensor(&[1.0], &[1]).requires_grad();
    let y = no_grad(|| x.mul_scalar(2.0).unwrap());
    assert!(!y.is_requires_grad());
    assert!(webgrad::is_grad_enabled());
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("does not require grad"), "{err}");
}

#[test]
fn backward_errors_are_clear() {
    let x = tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    let y = x.mul_scalar(2.0).unwrap();
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("[3]") && err.contains("one-element"), "{err}");

    let loss = y.sum().unwrap();
    loss.backward().unwrap();
    let err = loss.backward().unwrap_err().to_string();
    assert!(err.contains("freed"), "{err}");

    let other = webgrad::Device::new().unwrap();
    let z = Tensor::from_vec(&other, vec![1.0, 2.0, 3.0], &[3]).unwrap();
    let err = x.add(&z).unwrap_err().to_string();
    assert!(err.contains("different devices"), "{err}");
}

#[test]
fn backward_with_explicit_gradient() {
    let xs = randn(9, 6);
    let x = tensor(&xs, &[2, 3]).requires_grad();
    let y = x.mul_scalar(3.0).unwrap();
    y.backward_with(&tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]))
        .unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec().unwrap(),
        vec![3.0, 6.0, 9.0, 12.0, 15.0, 18.0]
    );
}

#[test]
fn composite_expression_matches_gradcheck() {
    // A small MLP-like expression mixing every op family.
    let x = randn(40, 12);
    let w = randn(41, 12);
    check_grad(
        "composite",
        |t| {
            let h = t[0]
                .reshape(&[3, 4])?
                .matmul(&t[1].reshape(&[4, 3])?)?
                .tanh()?;
            let s = h.log_softmax(-1)?.mul(&h.sigmoid()?)?;
            s.sum_dim(0, true)?.add(&h.mean_dim(1, true)?.t()?)
        },
        &[tensor(&x, &[12]), tensor(&w, &[12])],
        5e-3,
    );
}

#[test]
fn backward_through_a_tensor_written_in_place_is_an_error() {
    // y = w * w saves w. An optimizer step between forward and backward moves w 1 -> 0.5;
    // the gradient would silently be 2 * 0.5 + ... (as PyTorch, refuse instead).
    use webgrad::optim::{Optimizer, Sgd};
    let dev = device();
    let w = Tensor::from_vec(dev, vec![1.0], &[1])
        .unwrap()
        .requires_grad();
    let first = w.mul(&w).unwrap().sum().unwrap();
    first.backward().unwrap();
    let y = w.mul(&w).unwrap().sum().unwrap();
    let mut opt = Sgd::new(vec![w.clone()], 0.25).unwrap();
    opt.step().unwrap();
    assert_eq!(w.to_vec().unwrap(), vec![0.5]);
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("modified by an in-place operation"), "{err}");
    assert!(err.contains("mul"), "the error names the op: {err}");

    // copy_from and write_from_slice count as in-place writes too, also through a view.
    for write in 0..2 {
        let x = Tensor::from_vec(dev, vec![1.0, 2.0], &[2])
            .unwrap()
            .requires_grad();
        let y = x.exp().unwrap().sum().unwrap();
        let view = x.detach().reshape(&[1, 2]).unwrap();
        match write {
            0 => view.write_from_slice(&[3.0, 4.0]).unwrap(),
            _ => view.copy_from(&tensor(&[3.0, 4.0], &[1, 2])).unwrap(),
        }
        let err = y.backward().unwrap_err().to_string();
        assert!(err.contains("exp"), "{err}");
    }
}

#[test]
fn in_place_writes_to_tensors_backward_does_not_read_are_fine() {
    // add's backward reads neither operand, and a recomputed forward sees the new values.
    let dev = device();
    let a = Tensor::from_vec(dev, vec![1.0, 2.0], &[2])
        .unwrap()
        .requires_grad();
    let b = Tensor::from_vec(dev, vec![3.0, 4.0], &[2])
        .unwrap()
        .requires_grad();
    let y = a.add(&b).unwrap().sum().unwrap();
    a.write_from_slice(&[5.0, 6.0]).unwrap();
    y.backward().unwrap();
    assert_eq!(a.grad().unwrap().to_vec().unwrap(), vec![1.0, 1.0]);
    let y = a.mul(&b).unwrap().sum().unwrap();
    y.backward().unwrap();
    assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![6.0, 7.0]);
}

#[test]
fn backward_with_a_gradient_from_another_device_is_an_error() {
    let other = webgrad::Device::new().unwrap();
    let x = tensor(&[1.0, 2.0], &[2]).requires_grad();
    let y = x.mul_scalar(3.0).unwrap();
    let g = Tensor::from_slice(&other, &[1.0, 1.0], &[2]).unwrap();
    // Through the graph and straight into a leaf's gradient.
    for t in [&y, &x] {
        let err = t.backward_with(&g).unwrap_err();
        assert!(
            matches!(err, webgrad::Error::DeviceMismatch("backward_with")),
            "{err}"
        );
    }
    assert!(x.grad().is_none());
}

#[test]
fn sum_and_difference_pass_the_gradient_through_without_sharing_it() {
    // a + b and a - b of the same shape hand the upstream gradient on without a kernel; the
    // two sides' gradients must still be separate tensors (writing one leaves the other), and
    // a tensor on both sides gets their sum.
    let dev = device();
    let t = |v: &[f32]| Tensor::from_slice(dev, v, &[3]).unwrap().requires_grad();
    let g = Tensor::from_slice(dev, &[1.0, -2.0, 0.5], &[3]).unwrap();
    let (a, b) = (t(&[1.0, 2.0, 3.0]), t(&[4.0, 5.0, 6.0]));
    a.add(&b).unwrap().backward_with(&g).unwrap();
    let (ga, gb) = (a.grad().unwrap(), b.grad().unwrap());
    assert_eq!(ga.to_vec().unwrap(), vec![1.0, -2.0, 0.5]);
    assert_eq!(gb.to_vec().unwrap(), vec![1.0, -2.0, 0.5]);
    gb.copy_from(&Tensor::zeros(dev, &[3]).unwrap()).unwrap();
    assert_eq!(ga.to_vec().unwrap(), vec![1.0, -2.0, 0.5]);

    let (a, b) = (t(&[1.0, 2.0, 3.0]), t(&[4.0, 5.0, 6.0]));
    a.sub(&b).unwrap().backward_with(&g).unwrap();
    assert_eq!(a.grad().unwrap().to_vec().unwrap(), vec![1.0, -2.0, 0.5]);
    assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![-1.0, 2.0, -0.5]);

    // Through a non-leaf on both sides, then into a leaf: 2 g.
    let a = t(&[1.0, 2.0, 3.0]);
    let h = a.mul(&a).unwrap();
    h.add(&h).unwrap().backward_with(&g).unwrap();
    assert_eq!(a.grad().unwrap().to_vec().unwrap(), vec![4.0, -16.0, 6.0]);
}
