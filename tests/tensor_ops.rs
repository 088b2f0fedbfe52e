//! Indexing, selection and multi-dim reductions (cat, stack, narrow, index_select, gather,
//! one_hot, where_, masked_fill, sum_dims, amax, amin, min_dim): float64 references on random
//! inputs, gradcheck, PyTorch's values (tests/reference/tensor_ops.py) and bad input.

mod common;
use common::*;
use webgrad::Tensor;

/// float64 reference of taking along `dim`: output (o, j, i) = x (o, index(o, j, i), i);
/// None gives NaN.
fn take_ref(
    x: &[f32],
    shape: &[usize],
    dim: usize,
    m: usize,
    index: impl Fn(usize, usize, usize) -> Option<usize>,
) -> Vec<f64> {
    let outer: usize = shape[..dim].iter().product();
    let n = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * m * inner);
    for o in 0..outer {
        for j in 0..m {
            for i in 0..inner {
                out.push(match index(o, j, i) {
                    Some(k) => x[(o * n + k) * inner + i] as f64,
                    None => f64::NAN,
                });
            }
        }
    }
    out
}

fn rand_indices(seed: u64, count: usize, n: usize) -> Vec<usize> {
    uniform(seed, count, 0.0, n as f32)
        .iter()
        .map(|&v| (v as usize).min(n - 1))
        .collect()
}

fn to_f32(v: &[usize]) -> Vec<f32> {
    v.iter().map(|&k| k as f32).collect()
}

#[test]
fn narrow_cat_stack_match_float64() {
    let shape = [3, 5, 4];
    let x = randn(1, numel(&shape));
    let t = tensor(&x, &shape);
    for dim in 0..3 {
        let size = shape[dim];
        for (start, len) in [(0, size), (1, size - 1), (size - 1, 1), (1, 0)] {
            let got = t.narrow(dim as isize, start, len).unwrap();
            let mut ws = shape.to_vec();
            ws[dim] = len;
            assert_eq!(got.shape(), ws.as_slice());
            let want = take_ref(&x, &shape, dim, len, |_, j, _| Some(start + j));
            assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0, "narrow");
        }
        // cat of the pieces gives the tensor back, negative dims too.
        let a = t.narrow(dim as isize, 0, 1).unwrap();
        let b = t.narrow(dim as isize, 1, size - 1).unwrap();
        let back = Tensor::cat(&[&a, &b], dim as isize - 3).unwrap();
        assert_eq!(back.shape(), &shape);
        assert_eq!(back.to_vec().unwrap(), x);
    }
    // stack along each new dim: element (.., k at dim, ..) of the output is tensor k's.
    let y = randn(2, 12);
    let (a, b) = (tensor(&x[..12], &[3, 4]), tensor(&y, &[3, 4]));
    for dim in 0..3 {
        let s = Tensor::stack(&[&a, &b], dim as isize).unwrap();
        let got = s.to_vec().unwrap();
        let mut ws = vec![3, 4];
        ws.insert(dim, 2);
        assert_eq!(s.shape(), ws.as_slice());
        let st = strides(&ws);
        for r in 0..3 {
            for c in 0..4 {
                let mut at = [r, c].to_vec();
                at.insert(dim, 0);
                let off = |k: usize| {
                    let mut at = at.clone();
                    at[dim] = k;
                    at.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>()
                };
                assert_eq!(got[off(0)], x[r * 4 + c], "stack dim {dim}");
                assert_eq!(got[off(1)], y[r * 4 + c], "stack dim {dim}");
            }
        }
    }
}

#[test]
fn index_select_and_gather_match_float64() {
    let shape = [4, 6, 3];
    let x = randn(3, numel(&shape));
    let t = tensor(&x, &shape);
    for dim in 0..3 {
        let n = shape[dim];
        let list = rand_indices(10 + dim as u64, 9, n);
        let want = take_ref(&x, &shape, dim, list.len(), |_, j, _| Some(list[j]));
        let host = t.index_select(dim as isize, &list).unwrap();
        assert_close(
            &host.to_vec().unwrap(),
            &want,
            0.0,
            0.0,
            "index_select host",
        );
        let idx = tensor(&to_f32(&list), &[list.len()]);
        let dev = t.index_select(dim as isize, &idx).unwrap();
        assert_close(
            &dev.to_vec().unwrap(),
            &want,
            0.0,
            0.0,
            "index_select tensor",
        );

        let mut is = shape.to_vec();
        is[dim] = 5;
        let index = rand_indices(20 + dim as u64, numel(&is), n);
        let inner: usize = shape[dim + 1..].iter().product();
        let got = t
            .gather(dim as isize, &tensor(&to_f32(&index), &is))
            .unwrap();
        assert_eq!(got.shape(), is.as_slice());
        let want = take_ref(&x, &shape, dim, 5, |o, j, i| {
            Some(index[(o * 5 + j) * inner + i])
        });
        assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0, "gather");
    }
}

#[test]
fn invalid_device_indices_give_nan() {
    let t = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    let idx = tensor(&[2.0, 3.0, -1.0, 0.5, f32::NAN], &[5]);
    let got = t.index_select(0, &idx).unwrap().to_vec().unwrap();
    let nan = f64::NAN;
    let want = [5.0, 6.0, nan, nan, nan, nan, nan, nan, nan, nan];
    assert_close(&got, &want, 0.0, 0.0, "index_select invalid");
    let got = t
        .gather(1, &tensor(&[1.0, 2.0, 0.0, -1.0, 1.0, 1.0], &[3, 2]))
        .unwrap();
    let want = [2.0, nan, 3.0, nan, 6.0, 6.0];
    assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0, "gather invalid");
    let got = tensor(&[1.0, 3.0], &[2]).one_hot(3).unwrap();
    let want = [0.0, 1.0, 0.0, nan, nan, nan];
    assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0, "one_hot invalid");
}

#[test]
fn where_and_reductions_match_float64() {
    let (sa, sb, sc) = ([3, 4], [4], [3, 1]);
    let a = randn(4, 12);
    let b = randn(5, 4);
    let c: Vec<f32> = vec![1.0, 0.0, -2.0];
    let got = Tensor::where_(&tensor(&c, &sc), &tensor(&a, &sa), &tensor(&b, &sb)).unwrap();
    let want: Vec<f64> = (0..12)
        .map(|e| if c[e / 4] != 0.0 { a[e] } else { b[e % 4] } as f64)
        .collect();
    assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0, "where");
    let mask = tensor(&[0.0, 1.0, 0.0, 1.0], &[4]);
    let got = tensor(&a, &sa).masked_fill(&mask, -7.0).unwrap();
    let want: Vec<f64> = (0..12)
        .map(|e| if e % 2 == 1 { -7.0 } else { a[e] as f64 })
        .collect();
    assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0, "masked_fill");

    // sum / amax / amin over dims 0 and 2 of [3, 4, 5] against loops.
    let shape = [3, 4, 5];
    let x = randn(6, 60);
    let t = tensor(&x, &shape);
    let mut sum = vec![0.0f64; 4];
    let mut max = vec![f64::NEG_INFINITY; 4];
    let mut min = vec![f64::INFINITY; 4];
    for (e, &v) in x.iter().enumerate() {
        let k = (e / 5) % 4;
        sum[k] += v as f64;
        max[k] = max[k].max(v as f64);
        min[k] = min[k].min(v as f64);
    }
    for keepdim in [false, true] {
        let ws: &[usize] = if keepdim { &[1, 4, 1] } else { &[4] };
        let got = t.sum_dims(&[0, -1], keepdim).unwrap();
        assert_eq!(got.shape(), ws);
        assert_close(&got.to_vec().unwrap(), &sum, 1e-5, 1e-5, "sum_dims");
        let got = t.amax(&[2, 0], keepdim).unwrap();
        assert_eq!(got.shape(), ws);
        assert_close(&got.to_vec().unwrap(), &max, 0.0, 0.0, "amax");
        let got = t.amin(&[0, 2], keepdim).unwrap();
        assert_close(&got.to_vec().unwrap(), &min, 0.0, 0.0, "amin");
    }
    // Empty dims: over everything.
    let all: f64 = x.iter().map(|&v| v as f64).sum();
    let got = t.sum_dims(&[], false).unwrap();
    assert_eq!(got.shape(), &[] as &[usize]);
    assert_close(&got.to_vec().unwrap(), &[all], 1e-5, 1e-5, "sum_dims all");
    let got = t.amax(&[], true).unwrap();
    assert_eq!(got.shape(), &[1, 1, 1]);
    let (values, indices) = t.min_dim(1, false).unwrap();
    assert_eq!(values.shape(), &[3, 5]);
    let (v, i) = (values.to_vec().unwrap(), indices.to_vec().unwrap());
    for o in 0..3 {
        for c in 0..5 {
            let row: Vec<f32> = (0..4).map(|k| x[(o * 4 + k) * 5 + c]).collect();
            let best = (0..4).fold(0, |b, k| if row[k] < row[b] { k } else { b });
            assert_eq!(v[o * 5 + c], row[best]);
            assert_eq!(i[o * 5 + c], best as f32);
        }
    }
    assert_eq!(t.argmin(1, false).unwrap().to_vec().unwrap(), i);
}

#[test]
fn gradients_match_finite_differences() {
    let x = tensor(&randn(7, 24), &[2, 4, 3]);
    let y = tensor(&randn(8, 12), &[2, 2, 3]);
    check_grad(
        "cat",
        |t| Tensor::cat(&[&t[0], &t[1], &t[0]], 1),
        &[x.clone(), y.clone()],
        1e-2,
    );
    let z = tensor(&randn(9, 24), &[2, 4, 3]);
    check_grad(
        "stack",
        |t| Tensor::stack(&[&t[0], &t[1]], 2),
        &[x.clone(), z],
        1e-2,
    );
    check_grad(
        "narrow",
        |t| t[0].narrow(1, 1, 2),
        std::slice::from_ref(&x),
        1e-2,
    );
    let list = [3, 1, 3, 3, 0];
    check_grad(
        "index_select host",
        |t| t[0].index_select(1, &list),
        std::slice::from_ref(&x),
        1e-2,
    );
    let idx = tensor(&[2.0, 2.0, 0.0], &[3]);
    check_grad(
        "index_select tensor",
        |t| t[0].index_select(-1, &idx),
        std::slice::from_ref(&x),
        1e-2,
    );
    let index = tensor(&to_f32(&rand_indices(11, 30, 4)), &[2, 5, 3]);
    check_grad(
        "gather",
        |t| t[0].gather(1, &index),
        std::slice::from_ref(&x),
        1e-2,
    );
    // An index smaller than the input on the other dims (PyTorch allows it).
    let small = tensor(&[3.0, 0.0, 0.0, 3.0], &[1, 2, 2]);
    check_grad(
        "gather smaller index",
        |t| t[0].gather(1, &small),
        std::slice::from_ref(&x),
        1e-2,
    );
    let cond = tensor(&[1.0, 0.0, 0.0, 1.0], &[4, 1]);
    let b = tensor(&randn(12, 3), &[3]);
    check_grad(
        "where",
        |t| Tensor::where_(&cond, &t[0], &t[1]),
        &[x.clone(), b],
        1e-2,
    );
    check_grad(
        "masked_fill",
        |t| t[0].masked_fill(&cond, 2.0),
        std::slice::from_ref(&x),
        1e-2,
    );
    check_grad(
        "sum_dims",
        |t| t[0].sum_dims(&[0, 2], false),
        std::slice::from_ref(&x),
        1e-2,
    );
    // Random normals: no ties, so finite differences see one maximum.
    check_grad(
        "amax",
        |t| t[0].amax(&[0, -1], true),
        std::slice::from_ref(&x),
        1e-2,
    );
    check_grad(
        "amin",
        |t| t[0].amin(&[1], false),
        std::slice::from_ref(&x),
        1e-2,
    );
    check_grad("min_dim", |t| Ok(t[0].min_dim(1, false)?.0), &[x], 1e-2);
}

#[test]
fn ties_and_repeats_share_the_gradient() {
    // amax of [1, 3, 3, 2]: the two 3s get half each.
    let x = tensor(&[1.0, 3.0, 3.0, 2.0], &[4]).requires_grad();
    x.amax(&[0], false).unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), [0.0, 0.5, 0.5, 0.0]);
    // No grad needed: no weights computed, same values.
    let plain = tensor(&[1.0, 3.0, 3.0, 2.0], &[4])
        .amax(&[], false)
        .unwrap();
    assert_eq!(plain.to_vec().unwrap(), [3.0]);
    // A 0-d input is its own maximum.
    let s = tensor(&[-4.0], &[]).requires_grad();
    let m = s.amax(&[], false).unwrap();
    assert_eq!(m.to_vec().unwrap(), [-4.0]);
    m.backward().unwrap();
    assert_eq!(s.grad().unwrap().to_vec().unwrap(), [1.0]);
    // More index positions than one invocation may loop over: the chunked scatter-add.
    let n = 17_000;
    let list: Vec<usize> = (0..n).map(|j| j % 3).collect();
    let x = tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    x.index_select(0, &list)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    let counts: Vec<f32> = (0..3)
        .map(|k| list.iter().filter(|&&j| j == k).count() as f32)
        .collect();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), counts);
    // An empty piece: nothing to copy, nothing to scatter.
    let x = tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    let empty = x.narrow(0, 1, 0).unwrap();
    assert_eq!(empty.shape(), &[0]);
    let y = Tensor::cat(&[&empty, &x, &empty], 0).unwrap();
    assert_eq!(y.to_vec().unwrap(), [1.0, 2.0, 3.0]);
    y.sum().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), [1.0, 1.0, 1.0]);
    // gather: a repeated index accumulates, an invalid one sends nothing.
    let x = tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    let index = tensor(&[2.0, 2.0, 7.0, 0.0, 2.0], &[5]);
    x.gather(0, &index)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    // The NaN output's gradient goes nowhere; the others land on their indices.
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), [1.0, 0.0, 3.0]);
}

#[test]
fn matches_pytorch() {
    let r = Reference::load("tensor_ops.safetensors");
    let leaf = |case: &str, role: &str| r.tensor(case, role).requires_grad();
    let check = |case: &str, out: &Tensor, inputs: &[(&str, &Tensor)]| {
        r.assert_matches(case, "output", out, 1e-6, 1e-5);
        if !r.has(case, "grad_output") {
            return;
        }
        out.backward_with(&r.tensor(case, "grad_output")).unwrap();
        for (role, t) in inputs {
            let grad = t.grad().unwrap();
            r.assert_matches(case, &format!("grad_{role}"), &grad, 1e-6, 1e-5);
        }
    };
    let dim = |case: &str| r.meta(case)["dim"].as_i64().unwrap() as isize;
    let dims = |case: &str| -> Vec<isize> {
        let m = r.meta(case);
        m["dim"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap() as isize)
            .collect()
    };
    let keepdim = |case: &str| r.meta(case)["keepdim"].as_bool().unwrap();
    let mut seen = 0;
    for op in ["cat", "stack"] {
        for case in r.cases(op) {
            let roles: Vec<&str> = ["a", "b", "c"]
                .into_iter()
                .filter(|x| r.has(&case, x))
                .collect();
            let ts: Vec<Tensor> = roles.iter().map(|x| leaf(&case, x)).collect();
            let refs: Vec<&Tensor> = ts.iter().collect();
            let out = if op == "cat" {
                Tensor::cat(&refs, dim(&case))
            } else {
                Tensor::stack(&refs, dim(&case))
            }
            .unwrap();
            let named: Vec<(&str, &Tensor)> = roles.iter().copied().zip(ts.iter()).collect();
            check(&case, &out, &named);
            seen += 1;
        }
    }
    for case in r.cases("narrow") {
        let x = leaf(&case, "input");
        let m = r.meta(&case);
        let (start, len) = (m["start"].as_u64().unwrap(), m["length"].as_u64().unwrap());
        let out = x.narrow(dim(&case), start as usize, len as usize).unwrap();
        check(&case, &out, &[("input", &x)]);
        seen += 1;
    }
    for op in ["index_select", "gather"] {
        for case in r.cases(op) {
            let x = leaf(&case, "input");
            let index = r.tensor(&case, "index");
            let out = if op == "index_select" {
                x.index_select(dim(&case), &index)
            } else {
                x.gather(dim(&case), &index)
            }
            .unwrap();
            check(&case, &out, &[("input", &x)]);
            seen += 1;
        }
    }
    for case in r.cases("one_hot") {
        let classes = r.meta(&case)["num_classes"].as_u64().unwrap() as usize;
        check(
            &case,
            &r.tensor(&case, "input").one_hot(classes).unwrap(),
            &[],
        );
        seen += 1;
    }
    for case in r.cases("where") {
        let (a, b) = (leaf(&case, "input"), leaf(&case, "other"));
        let out = Tensor::where_(&r.tensor(&case, "condition"), &a, &b).unwrap();
        check(&case, &out, &[("input", &a), ("other", &b)]);
        seen += 1;
    }
    for op in ["sum", "amax", "amin"] {
        for case in r.cases(op) {
            let x = leaf(&case, "input");
            let out = match op {
                "sum" => x.sum_dims(&dims(&case), keepdim(&case)),
                "amax" => x.amax(&dims(&case), keepdim(&case)),
                _ => x.amin(&dims(&case), keepdim(&case)),
            }
            .unwrap();
            check(&case, &out, &[("input", &x)]);
            seen += 1;
        }
    }
    for case in r.cases("min") {
        let x = leaf(&case, "input");
        let (values, indices) = x.min_dim(dim(&case), keepdim(&case)).unwrap();
        r.assert_matches(&case, "indices", &indices, 0.0, 0.0);
        check(&case, &values, &[("input", &x)]);
        seen += 1;
    }
    assert_eq!(seen, 18, "every case of tensor_ops.safetensors ran");
}

fn message(r: webgrad::Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got a tensor of shape {:?}", t.shape()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_input_is_an_error() {
    let x = tensor(&randn(13, 12), &[3, 4]);
    let y = tensor(&randn(14, 6), &[3, 2]);
    let s = tensor(&[1.0], &[]);
    assert!(message(Tensor::cat(&[], 0)).contains("non-empty"));
    let m = message(Tensor::cat(&[&x, &y], 0));
    assert!(m.contains("[3, 4]") && m.contains("[3, 2]"), "{m}");
    assert!(Tensor::cat(&[&x, &y], 1).is_ok());
    assert!(Tensor::cat(&[&x, &y], 2).is_err());
    assert!(message(Tensor::cat(&[&s, &s], 0)).contains("zero-dimensional"));
    let m = message(Tensor::stack(&[&x, &y], 0));
    assert!(m.contains("[3, 4]") && m.contains("[3, 2]"), "{m}");
    assert!(Tensor::stack(&[&x, &x], 3).is_err());
    assert!(Tensor::stack(&[&x, &x], -3).is_ok());
    let m = message(x.narrow(1, 2, 3));
    assert!(m.contains("start 2") && m.contains("length 3"), "{m}");
    assert!(x.narrow(2, 0, 1).is_err());
    assert!(s.narrow(0, 0, 1).is_err());
    let m = message(x.index_select(1, &[0, 4, 1]));
    assert!(m.contains("index 4") && m.contains("size 4"), "{m}");
    let m = message(x.index_select(0, &tensor(&[0.0, 1.0], &[1, 2])));
    assert!(m.contains("[1, 2]"), "{m}");
    let m = message(x.gather(1, &tensor(&[0.0; 8], &[4, 2])));
    assert!(m.contains("[4, 2]") && m.contains("[3, 4]"), "{m}");
    assert!(x.gather(1, &tensor(&[0.0; 3], &[3])).is_err());
    assert!(x.one_hot(0).is_err());
    let m = message(Tensor::where_(&tensor(&[1.0, 0.0], &[2]), &x, &x));
    assert!(m.contains("[2]") && m.contains("[3, 4]"), "{m}");
    assert!(message(x.sum_dims(&[1, -1], false)).contains("more than once"));
    assert!(x.sum_dims(&[2], false).is_err());
    assert!(x.amax(&[0, 0], false).is_err());
    let empty = Tensor::zeros(x.device(), &[3, 0]).unwrap();
    assert!(message(empty.amax(&[1], false)).contains("empty"));
    assert!(x.min_dim(5, false).is_err());
}
