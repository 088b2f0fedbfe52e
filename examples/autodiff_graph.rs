//! The computational graph of the course's worked example, f = (x + y) * z, and of one LeNet-5
//! training step, as Graphviz DOT, with forward values and the gradients backward sent along
//! each edge (upstream × local = downstream).
//!
//! `cargo run --release --example autodiff_graph [-- OUT_DIR]` prints the example's DOT and
//! writes `autodiff_graph.dot` and `lenet5_step.dot` to OUT_DIR (default: the current folder),
//! plus `.svg` and `.png` renderings when Graphviz's `dot` is installed
//! (`apt-get install graphviz`).

use std::path::{Path, PathBuf};
use std::process::Command;

use webgrad::graph::Graph;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::Module;
use webgrad::{Device, Reduction, Tensor};

fn main() {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    if let Err(e) = run(&out) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let dev = Device::new()?;

    // The worked example.
    let x = Tensor::from_vec(&dev, vec![-2.0], &[1])?.requires_grad();
    let y = Tensor::from_vec(&dev, vec![5.0], &[1])?.requires_grad();
    let z = Tensor::from_vec(&dev, vec![-4.0], &[1])?.requires_grad();
    let f = x.add(&y)?.mul(&z)?;
    let graph = Graph::capture(&f)?
        .with_name(&x, "x")
        .with_name(&y, "y")
        .with_name(&z, "z");
    f.backward()?;
    let dot = graph.to_dot()?;
    println!("{dot}");
    write(out, "autodiff_graph", &dot)?;

    // One LeNet-5 training step on random digits: ops grouped by layer.
    let model = LeNet5::build(&dev, LeNetFlavour::Modern)?;
    let images = Tensor::randn(&dev, &[8, 1, 28, 28])?;
    let loss = model
        .forward(&images)?
        .cross_entropy(&[0, 1, 2, 3, 4, 5, 6, 7], Reduction::Mean)?;
    let graph = Graph::capture(&loss)?
        .with_name(&images, "images")
        .with_names(&model.named_parameters());
    loss.backward()?;
    write(out, "lenet5_step", &graph.to_dot()?)?;
    Ok(())
}

/// Writes NAME.dot, and NAME.svg / NAME.png when Graphviz is installed.
fn write(out: &Path, name: &str, dot: &str) -> std::io::Result<()> {
    let path = out.join(format!("{name}.dot"));
    std::fs::write(&path, dot)?;
    eprintln!("wrote {}", path.display());
    for format in ["svg", "png"] {
        let target = out.join(format!("{name}.{format}"));
        let rendered = Command::new("dot")
            .arg(format!("-T{format}"))
            .arg(&path)
            .arg("-o")
            .arg(&target)
            .status();
        match rendered {
            Ok(s) if s.success() => eprintln!("wrote {}", target.display()),
            Ok(s) => eprintln!("warning: dot failed ({s}) for {}", target.display()),
            Err(_) => {
                eprintln!("(install Graphviz, `apt-get install graphviz`, for SVG and PNG)");
                break;
            }
        }
    }
    Ok(())
}
