//! The activations (leaky_relu, elu, gelu, silu, softplus, hardtanh, clamp) and their `nn`
//! modules: forward against float64 on random inputs, backward by gradcheck and float64
//! differences, and PyTorch's values (`tests/reference/activations.safetensors`).

mod common;
use common::*;
use webgrad::nn::{Hardtanh, LeakyReLU, Module, Sequential, SiLU, Softplus, ELU, GELU};
use webgrad::{GeluApproximate, Tensor};

/// An activation with one setting of its parameters: the op, its float64 reference, and the
/// inputs where it has a kink or switches form (finite differences keep away from them).
struct Act {
    name: &'static str,
    f: fn(&Tensor) -> webgrad::Result<Tensor>,
    r: fn(f64) -> f64,
    kinks: &'static [f64],
}

/// erfc(z) in float64: 1 - erf by erf's series of positive terms below 3, a continued
/// fraction above (where erfc's relative precision matters: gelu's negative tail).
fn erfc(z: f64) -> f64 {
    if z < 0.0 {
        return 2.0 - erfc(-z);
    }
    let pi = std::f64::consts::PI;
    if z < 3.0 {
        // erf(z) = 2/sqrt(pi) e^(-z^2) sum 2^n z^(2n+1) / (1 * 3 * ... * (2n+1))
        let (mut term, mut sum) = (z, z);
        for n in 1..200 {
            term *= 2.0 * z * z / (2 * n + 1) as f64;
            sum += term;
        }
        return 1.0 - 2.0 / pi.sqrt() * (-z * z).exp() * sum;
    }
    // erfc(z) = e^(-z^2) / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / (z + ...))))
    let mut f = z;
    for k in (1..80).rev() {
        f = z + k as f64 / 2.0 / f;
    }
    (-z * z).exp() / pi.sqrt() / f
}

fn gelu_ref(x: f64) -> f64 {
    x * 0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn gelu_tanh_ref(x: f64) -> f64 {
    let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + u.tanh())
}

fn softplus_ref(x: f64, beta: f64, threshold: f64) -> f64 {
    let z = beta * x;
    if z > threshold {
        x
    } else {
        z.exp().ln_1p() / beta
    }
}

fn acts() -> Vec<Act> {
    vec![
        Act {
            name: "leaky_relu_0.01",
            f: |t| t.leaky_relu(0.01),
            r: |x| if x > 0.0 { x } else { 0.01 * x },
            kinks: &[0.0],
        },
        Act {
            name: "leaky_relu_0.2",
            f: |t| t.leaky_relu(0.2),
            r: |x| if x > 0.0 { x } else { 0.2 * x },
            kinks: &[0.0],
        },
        Act {
            name: "elu_1",
            f: |t| t.elu(1.0),
            r: |x| if x > 0.0 { x } else { x.exp_m1() },
            kinks: &[0.0],
        },
        Act {
            name: "elu_0.5",
            f: |t| t.elu(0.5),
            r: |x| if x > 0.0 { x } else { 0.5 * x.exp_m1() },
            kinks: &[0.0],
        },
        Act {
            name: "gelu",
            f: |t| t.gelu(GeluApproximate::None),
            r: gelu_ref,
            kinks: &[],
        },
        Act {
            name: "gelu_tanh",
            f: |t| t.gelu(GeluApproximate::Tanh),
            r: gelu_tanh_ref,
            kinks: &[],
        },
        Act {
            name: "silu",
            f: |t| t.silu(),
            r: |x| x / (1.0 + (-x).exp()),
            kinks: &[],
        },
        Act {
            name: "softplus_1_20",
            f: |t| t.softplus(1.0, 20.0),
            r: |x| softplus_ref(x, 1.0, 20.0),
            kinks: &[20.0],
        },
        Act {
            name: "softplus_2_5",
            f: |t| t.softplus(2.0, 5.0),
            r: |x| softplus_ref(x, 2.0, 5.0),
            kinks: &[2.5],
        },
        Act {
            name: "softplus_-1_2",
            f: |t| t.softplus(-1.0, 2.0),
            r: |x| softplus_ref(x, -1.0, 2.0),
            kinks: &[-2.0],
        },
        Act {
            name: "hardtanh",
            f: |t| t.hardtanh(-1.0, 1.0),
            r: |x| x.clamp(-1.0, 1.0),
            kinks: &[-1.0, 1.0],
        },
        Act {
            name: "clamp_-0.5_2",
            f: |t| t.clamp(-0.5, 2.0),
            r: |x| x.clamp(-0.5, 2.0),
            kinks: &[-0.5, 2.0],
        },
        Act {
            name: "clamp_min_above_max",
            f: |t| t.clamp(1.0, -1.0),
            r: |_| -1.0,
            kinks: &[],
        },
    ]
}

/// `xs` with every value within `gap` of one of `kinks` moved 3 gaps away from it.
fn away_from(xs: &[f32], kinks: &[f64], gap: f32) -> Vec<f32> {
    xs.iter()
        .map(|&v| {
            kinks.iter().fold(v, |v, &k| {
                let d = v - k as f32;
                if d.abs() < gap {
                    k as f32 + if d < 0.0 { -3.0 * gap } else { 3.0 * gap }
                } else {
                    v
                }
            })
        })
        .collect()
}

// Small tensors run the scalar kernel only; from 4,096 elements the vec4 kernel takes all but
// the n % 4 tail.
const SHAPES: &[&[usize]] = &[&[1], &[7], &[3, 5, 7], &[4099], &[70, 1000]];

// Large |x| (overflowing exp, the tails of gelu and softplus) and values near 0.
const SPECIAL: &[f32] = &[
    -100.0, -30.0, -20.5, -12.0, -5.0, -1e-3, -1e-6, 0.0, 1e-6, 1e-3, 5.0, 12.0, 20.5, 30.0, 100.0,
];

#[test]
fn float64_erfc_matches_known_values() {
    // From Python's math.erfc. 1 - erf loses digits just below 3 (still far more than f32
    // results need).
    for (z, want) in [
        (0.5, 0.4795001221869535),
        (2.9, 4.109787809945886e-05),
        (3.0, 2.2090496998585438e-05),
        (5.0, 1.5374597944280351e-12),
        (-1.0, 1.842700792949715),
    ] {
        let got = erfc(z);
        assert!(
            (got - want).abs() <= 1e-9 * want,
            "erfc({z}) = {got}, want {want}"
        );
    }
}

#[test]
fn forward_matches_float64_on_random_inputs() {
    let mut inputs: Vec<(Vec<f32>, &[usize])> = SHAPES
        .iter()
        .enumerate()
        .map(|(si, shape)| {
            let x = randn(si as u64 + 1, numel(shape));
            (x.iter().map(|v| v * 3.0).collect(), *shape)
        })
        .collect();
    inputs.push((SPECIAL.to_vec(), &[15]));
    for (xs, shape) in &inputs {
        let t = tensor(xs, shape);
        for act in acts() {
            let got = (act.f)(&t).unwrap();
            assert_eq!(got.shape(), *shape);
            let want: Vec<f64> = xs.iter().map(|&v| (act.r)(v as f64)).collect();
            assert_close(&got.to_vec().unwrap(), &want, 1e-6, 1e-5, act.name);
        }
    }
}

#[test]
fn tails_keep_their_relative_precision() {
    // softplus(x) -> e^x and gelu(x) -> x Phi(x) far below 0, where 1 + e^x or 1 + erf
    // would round away all digits.
    let x = [-80.0f32, -30.0, -17.0, -5.0];
    let got = tensor(&x, &[4])
        .softplus(1.0, 20.0)
        .unwrap()
        .to_vec()
        .unwrap();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| softplus_ref(v as f64, 1.0, 20.0))
        .collect();
    assert_close(&got, &want, 0.0, 1e-5, "softplus tail");
    let x = [-9.0f32, -7.0, -5.0, -3.0];
    let got = tensor(&x, &[4]).gelu(GeluApproximate::None).unwrap();
    let want: Vec<f64> = x.iter().map(|&v| gelu_ref(v as f64)).collect();
    assert_close(&got.to_vec().unwrap(), &want, 0.0, 1e-4, "gelu tail");
}

#[test]
fn backward_matches_finite_differences() {
    // Inputs keep away from the kinks (the step is 1e-2).
    let x = randn(11, 15).iter().map(|v| v * 2.0).collect::<Vec<_>>();
    for act in acts() {
        let xs = away_from(&x, act.kinks, 0.1);
        check_grad(
            act.name,
            move |t| (act.f)(&t[0]),
            &[tensor(&xs, &[3, 5])],
            5e-3,
        );
    }
}

#[test]
fn backward_of_large_tensors_matches_float64_derivatives() {
    // 4,099 elements: the vec4 backward kernel and the scalar tail. The derivative of the
    // float64 reference by central differences, times a random upstream gradient.
    let n = 4099;
    let x = randn(21, n).iter().map(|v| v * 3.0).collect::<Vec<_>>();
    let g = randn(23, n);
    for act in acts() {
        let xs = away_from(&x, act.kinks, 0.05);
        let t = tensor(&xs, &[n]).requires_grad();
        (act.f)(&t)
            .unwrap()
            .backward_with(&tensor(&g, &[n]))
            .unwrap();
        let want = central_difference_grad(act.r, &xs, &g, 1e-6);
        let got = t.grad().unwrap().to_vec().unwrap();
        assert_close(&got, &want, 1e-4, 1e-4, act.name);
    }
}

/// The reference case's op, from its metadata.
fn apply(meta: &serde_json::Value, x: &Tensor) -> webgrad::Result<Tensor> {
    let arg = |k: &str| meta[k].as_f64().unwrap() as f32;
    match meta["op"].as_str().unwrap() {
        "leaky_relu" => x.leaky_relu(arg("negative_slope")),
        "elu" => x.elu(arg("alpha")),
        "gelu" => x.gelu(meta["approximate"].as_str().unwrap().parse()?),
        "silu" => x.silu(),
        "softplus" => x.softplus(arg("beta"), arg("threshold")),
        "hardtanh" => x.hardtanh(arg("min_val"), arg("max_val")),
        "clamp" => x.clamp(arg("min"), arg("max")),
        op => panic!("no activation {op}"),
    }
}

#[test]
fn matches_pytorch_reference() {
    // Each case's inputs include its kinks exactly, so PyTorch's choice of gradient there
    // (leaky_relu and elu: the negative side's; hardtanh and clamp: 0 at the bounds) is checked.
    let r = Reference::load("activations.safetensors");
    let ops = [
        "leaky_relu",
        "elu",
        "gelu",
        "silu",
        "softplus",
        "hardtanh",
        "clamp",
    ];
    let mut n = 0;
    for op in ops {
        for case in r.cases(op) {
            let x = r.tensor(&case, "input").requires_grad();
            let y = apply(r.meta(&case), &x).unwrap();
            r.assert_matches(&case, "output", &y, 1e-6, 1e-5);
            y.backward_with(&r.tensor(&case, "grad_output")).unwrap();
            r.assert_matches(&case, "grad_input", &x.grad().unwrap(), 1e-6, 1e-5);
            n += 1;
        }
    }
    assert_eq!(n, 14, "every case of activations.safetensors");
}

#[test]
fn special_values_follow_pytorch() {
    let x = tensor(&[f32::NAN, -2.0, -1.0, 0.0, 1.0, 2.0], &[6]).requires_grad();
    // NaN stays NaN through clamp and hardtanh, with gradient 0; at the bounds the gradient
    // is 0.
    let y = x.clamp(-1.0, 1.0).unwrap();
    let got = y.to_vec().unwrap();
    assert!(
        got[0].is_nan() && got[1..] == [-1.0, -1.0, 0.0, 1.0, 1.0],
        "{got:?}"
    );
    y.sum().unwrap().backward().unwrap();
    let grad = x.grad().unwrap().to_vec().unwrap();
    assert_eq!(grad, vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    let got = x.hardtanh(0.0, 0.0).unwrap().to_vec().unwrap();
    assert!(
        got[0].is_nan() && got[1..].iter().all(|&v| v == 0.0),
        "{got:?}"
    );
    // No overflow to inf or NaN at large |x|.
    let big = tensor(&[-1e30, -1e4, 1e4, 1e30], &[4]);
    for (name, y) in [
        ("elu", big.elu(1.0)),
        ("silu", big.silu()),
        ("softplus", big.softplus(1.0, 20.0)),
        ("softplus beta -1", big.softplus(-1.0, 20.0)),
        ("gelu", big.gelu(GeluApproximate::None)),
        ("gelu_tanh", big.gelu(GeluApproximate::Tanh)),
    ] {
        let got = y.unwrap().to_vec().unwrap();
        assert!(got.iter().all(|v| v.is_finite()), "{name}: {got:?}");
    }
}

#[test]
fn bad_options_are_errors() {
    let x = tensor(&[1.0, -1.0], &[2]);
    let err = x.softplus(0.0, 20.0).unwrap_err().to_string();
    assert!(err.contains("softplus") && err.contains("beta 0"), "{err}");
    assert!(x.softplus(f32::NAN, 20.0).is_err());
    assert!(x.softplus(1.0, f32::NAN).is_err());
    let err = x.hardtanh(1.0, -1.0).unwrap_err().to_string();
    assert!(
        err.contains("min_val (1)") && err.contains("max_val (-1)"),
        "{err}"
    );
    assert!(Hardtanh::new(1.0, -1.0).forward(&x).is_err());
    let err = "erf".parse::<GeluApproximate>().unwrap_err().to_string();
    assert!(err.contains("\"erf\""), "{err}");
    // clamp with min > max is not an error: PyTorch sets everything to max.
    assert_eq!(x.clamp(1.0, -1.0).unwrap().to_vec().unwrap(), vec![-1.0; 2]);
}

#[test]
fn modules_have_pytorchs_names_and_defaults() {
    assert_eq!(LeakyReLU::default().negative_slope, 0.01);
    assert_eq!(ELU::default().alpha, 1.0);
    assert_eq!(GELU::default().approximate, GeluApproximate::None);
    let sp = Softplus::default();
    assert_eq!((sp.beta, sp.threshold), (1.0, 20.0));
    let ht = Hardtanh::default();
    assert_eq!((ht.min_val, ht.max_val), (-1.0, 1.0));
    let described: Vec<String> = [
        &LeakyReLU::default() as &dyn Module,
        &ELU::new(0.5),
        &GELU::new(GeluApproximate::Tanh),
        &SiLU,
        &Softplus::default(),
        &Hardtanh::default(),
    ]
    .iter()
    .map(|m| m.describe())
    .collect();
    assert_eq!(
        described,
        [
            "LeakyReLU(negative_slope=0.01)",
            "ELU(alpha=0.5)",
            "GELU(approximate='tanh')",
            "SiLU",
            "Softplus(beta=1, threshold=20)",
            "Hardtanh(min_val=-1, max_val=1)",
        ]
    );

    // A Sequential of them computes what the tensor methods do.
    let model = Sequential::new()
        .add("leaky", LeakyReLU::default())
        .add("elu", ELU::default())
        .add("gelu", GELU::default())
        .add("silu", SiLU)
        .add("softplus", Softplus::default())
        .add("hardtanh", Hardtanh::new(0.0, 2.0));
    let x = tensor(&randn(31, 24), &[4, 6]);
    let got = model.forward(&x).unwrap().to_vec().unwrap();
    let want = x
        .leaky_relu(0.01)
        .and_then(|y| y.elu(1.0))
        .and_then(|y| y.gelu(GeluApproximate::None))
        .and_then(|y| y.silu())
        .and_then(|y| y.softplus(1.0, 20.0))
        .and_then(|y| y.hardtanh(0.0, 2.0))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(got, want);
}
