//! reshape / flatten / permute / transpose / expand: values and gradients.

mod common;
use common::*;

#[test]
fn reshape_and_flatten_keep_values() {
    let x = randn(1, 24);
    let t = tensor(&x, &[2, 3, 4]);
    assert_eq!(t.reshape(&[6, 4]).unwrap().to_vec().unwrap(), x);
    assert_eq!(t.flatten(1, -1).unwrap().shape(), &[2, 12]);
    assert_eq!(t.flatten(0, 1).unwrap().shape(), &[6, 4]);
    assert_eq!(t.flatten_all().unwrap().shape(), &[24]);
    let err = t.reshape(&[5, 5]).unwrap_err().to_string();
    assert!(err.contains("[2, 3, 4]") && err.contains("[5, 5]"), "{err}");
}

#[test]
fn permute_and_transpose_match_index_arithmetic() {
    let shape = [3usize, 4, 5, 2];
    let x = randn(2, numel(&shape));
    let t = tensor(&x, &shape);
    let perm = [2usize, 0, 3, 1];
    let p = t.permute(&perm).unwrap();
    assert_eq!(p.shape(), &[5, 3, 2, 4]);
    let got = p.to_vec().unwrap();
    let s = strides(&shape);
    let out_shape = [5usize, 3, 2, 4];
    for (i, &g) in got.iter().enumerate() {
        let mut rest = i;
        let mut src = 0;
        for d in (0..4).rev() {
            let k = rest % out_shape[d];
            rest /= out_shape[d];
            src += k * s[perm[d]];
        }
        assert_eq!(g, x[src], "permute[{i}]");
    }
    let m = tensor(&x[..12], &[3, 4]);
    let tt = m.t().unwrap().to_vec().unwrap();
    for i in 0..3 {
        for j in 0..4 {
            assert_eq!(tt[j * 3 + i], x[i * 4 + j]);
        }
    }
    assert!(t.permute(&[0, 0, 1, 2]).is_err());
}

#[test]
fn expand_repeats_broadcast_dims() {
    let x = randn(3, 3);
    let e = tensor(&x, &[3, 1]).expand(&[2, 3, 4]).unwrap();
    let got = e.to_vec().unwrap();
    for b in 0..2 {
        for i in 0..3 {
            for j in 0..4 {
                assert_eq!(got[(b * 3 + i) * 4 + j], x[i]);
            }
        }
    }
    assert!(tensor(&x, &[3]).expand(&[4, 2]).is_err());
}

#[test]
fn gradients_flow_through_layout_ops() {
    let x = randn(4, 24);
    check_grad(
        "reshape",
        |t| t[0].reshape(&[4, 6])?.tanh(),
        &[tensor(&x, &[2, 3, 4])],
        5e-3,
    );
    check_grad(
        "permute",
        |t| t[0].permute(&[2, 0, 1])?.tanh(),
        &[tensor(&x, &[2, 3, 4])],
        5e-3,
    );
    check_grad(
        "transpose",
        |t| t[0].transpose(0, -1)?.tanh(),
        &[tensor(&x, &[2, 3, 4])],
        5e-3,
    );
    check_grad(
        "expand",
        |t| t[0].expand(&[2, 3, 4])?.tanh(),
        &[tensor(&x[..3], &[3, 1])],
        5e-3,
    );
}

#[test]
fn transpose_of_a_zero_dim_tensor_is_a_no_op_as_in_pytorch() {
    let x = webgrad::Tensor::scalar(device(), 3.5)
        .unwrap()
        .requires_grad();
    for (a, b) in [(0, 0), (-1, -1), (0, -1)] {
        let y = x.transpose(a, b).unwrap();
        assert_eq!(y.shape(), &[] as &[usize]);
        assert_eq!(y.item().unwrap(), 3.5);
    }
    // Gradients flow through it.
    let y = x.transpose(0, 0).unwrap().mul_scalar(2.0).unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().item().unwrap(), 2.0);
    // Any other dim is out of range, as in PyTorch.
    for (a, b) in [(0, 1), (1, 0), (-2, 0)] {
        let err = x.transpose(a, b).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
    }
}
