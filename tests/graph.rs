//! The computational graph as DOT: the course's worked example with its values and gradients,
//! and a LeNet-5 training step grouped by layer.

mod common;

use webgrad::graph::Graph;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::Module;
use webgrad::{Reduction, Tensor};

/// The line of the DOT text that declares the vertex whose label starts with `label`.
fn vertex<'a>(dot: &'a str, label: &str) -> &'a str {
    dot.lines()
        .find(|l| l.contains(&format!("[label=\"{label}\\n")))
        .unwrap_or_else(|| panic!("no vertex labelled {label} in\n{dot}"))
}

/// The DOT name (`v3`) of the vertex whose label starts with `label`.
fn id<'a>(dot: &'a str, label: &str) -> &'a str {
    vertex(dot, label).split_whitespace().next().unwrap()
}

#[test]
fn the_worked_example_shows_values_gradients_and_edge_products() {
    let dev = common::device();
    let x = Tensor::from_vec(dev, vec![-2.0], &[1])
        .unwrap()
        .requires_grad();
    let y = Tensor::from_vec(dev, vec![5.0], &[1])
        .unwrap()
        .requires_grad();
    let z = Tensor::from_vec(dev, vec![-4.0], &[1])
        .unwrap()
        .requires_grad();
    let q = x.add(&y).unwrap();
    let f = q.mul(&z).unwrap();
    let graph = Graph::capture(&f)
        .unwrap()
        .with_name(&x, "x")
        .with_name(&y, "y")
        .with_name(&z, "z");

    // Before backward: forward values only.
    let before = graph.to_dot().unwrap();
    assert!(vertex(&before, "add").contains("value 3\""), "{before}");
    assert!(!before.contains("\\ngrad"), "{before}");

    f.backward().unwrap();
    let dot = graph.to_dot().unwrap();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(vertex(&dot, "x").contains("value -2\\ngrad -4\""), "{dot}");
    assert!(vertex(&dot, "y").contains("value 5\\ngrad -4\""), "{dot}");
    assert!(vertex(&dot, "z").contains("value -4\\ngrad 3\""), "{dot}");
    assert!(vertex(&dot, "add").contains("value 3\\ngrad -4\""), "{dot}");
    let mul = vertex(&dot, "mul");
    assert!(mul.contains("value -12\\ngrad 1\""), "{dot}");
    assert!(mul.contains("peripheries=2"), "the result is marked: {dot}");

    // Edges run with the computation and carry upstream x local = downstream.
    let (add, mul) = (id(&dot, "add"), id(&dot, "mul"));
    let edges = [
        (id(&dot, "x"), add, "-4 × 1 = -4"),
        (id(&dot, "y"), add, "-4 × 1 = -4"),
        (add, mul, "1 × -4 = -4"),
        (id(&dot, "z"), mul, "1 × 3 = 3"),
    ];
    for (from, to, label) in edges {
        let edge = format!("{from} -> {to} [label=\"{label}\"];");
        assert!(dot.contains(&edge), "missing {edge} in\n{dot}");
    }
    assert_eq!(dot.matches("->").count(), 4, "{dot}");
}

#[test]
fn a_lenet_step_is_grouped_by_layer_with_large_tensors_by_shape() {
    let dev = common::device();
    let model = LeNet5::build(dev, LeNetFlavour::Modern).unwrap();
    let x = Tensor::randn(dev, &[4, 1, 28, 28]).unwrap();
    let loss = model
        .forward(&x)
        .unwrap()
        .cross_entropy(&[0, 1, 2, 3], Reduction::Mean)
        .unwrap();
    let graph = Graph::capture(&loss)
        .unwrap()
        .with_names(&model.named_parameters());
    loss.backward().unwrap();
    let dot = graph.to_dot().unwrap();

    // Fused layers form one cluster named after all of them, holding their parameters. The
    // CPU-adapter kernels fuse the 2 x 2 max-pool too (cluster conv1+relu1+pool1), the GPU
    // kernels pool separately (conv1+relu1, then pool1).
    let pool_fused = dot.contains("label=\"conv1+relu1+pool1\";");
    let (conv1, conv2) = if pool_fused {
        ("conv1+relu1+pool1", "conv2+relu2+pool2")
    } else {
        ("conv1+relu1", "conv2+relu2")
    };
    for cluster in [conv1, conv2, "fc1+relu3", "fc3"] {
        let start = dot
            .find(&format!("label=\"{cluster}\";"))
            .unwrap_or_else(|| panic!("no cluster {cluster} in\n{dot}"));
        let body = &dot[start..start + dot[start..].find("  }").unwrap()];
        let layer = cluster.split('+').next().unwrap();
        assert!(body.contains(&format!("{layer}.weight")), "{body}");
        assert!(body.contains(&format!("{layer}.bias")), "{body}");
    }
    let pooled = if pool_fused {
        vertex(&dot, "conv2d+relu+max_pool2d")
    } else {
        assert!(dot.contains("label=\"pool1\";"), "{dot}");
        vertex(&dot, "pool2d")
    };
    assert!(pooled.contains("[4, 6, 14, 14]"), "{dot}");
    // Large tensors by shape only; the loss with its value and the seed gradient.
    assert!(!vertex(&dot, "conv1.weight").contains("value"), "{dot}");
    assert!(
        vertex(&dot, "conv1.weight").contains("[6, 1, 5, 5]"),
        "{dot}"
    );
    let loss_value = loss.item().unwrap();
    let shown = vertex(&dot, "cross_entropy");
    assert!(shown.contains("grad 1\""), "{shown}");
    let value: f32 = shown
        .split("value ")
        .nth(1)
        .unwrap()
        .split('\\')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((value - loss_value).abs() < 1e-3, "{value} vs {loss_value}");
}
