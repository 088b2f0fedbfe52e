//! Train LeNet-5 on MNIST-format digits, evaluate a checkpoint, or classify images.
//!
//! ```text
//! cargo run --release --example lenet5                       # train on the bundled digits
//! cargo run --release --example lenet5 -- --data /usr/share/datasets/fashion-mnist
//! cargo run --release --example lenet5 -- eval --weights runs/lenet5.safetensors
//! cargo run --release --example lenet5 -- predict --weights runs/lenet5.safetensors a.png b.png
//! cargo run --release --example lenet5 -- --help             # every option and its default
//! ```
//! Without a command, the options are `train`'s.

#[path = "common/figures.rs"]
mod figures;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args as ClapArgs, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use webgrad::data::{read_idx, DataLoader, Dataset, Mnist};
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::{summary, Module, Sequential};
use webgrad::optim::{Adam, CosineLr, LrSchedule, Optimizer, Sgd};
use webgrad::{no_grad, weights, Device, DeviceOptions, Error, Reduction, Result, Tensor};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-subset");

/// Train LeNet-5 on MNIST-format digits (the default command), evaluate a checkpoint, or
/// classify images, with every kernel a WebGPU compute shader.
#[derive(Parser, Debug)]
#[command(name = "lenet5", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train and write a checkpoint (what runs without a command).
    Train(TrainArgs),
    /// Test accuracy of a checkpoint.
    Eval(EvalArgs),
    /// Classify images: IDX files (every image in them) or 28 x 28 PNGs.
    Predict(PredictArgs),
}

/// Options of every command.
#[derive(ClapArgs, Debug)]
struct Common {
    /// Folder of MNIST-format IDX files (raw or .gz).
    #[arg(long, default_value = BUNDLED)]
    data: PathBuf,
    /// Seed of the initialisation and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// modern: ReLU and max pooling; classic: tanh and average pooling (LeCun 1998).
    #[arg(long, default_value = "modern", value_parser = ["modern", "classic"])]
    flavour: String,
    /// Substring of the adapter's name, e.g. llvmpipe [default: the preferred adapter].
    #[arg(long)]
    adapter: Option<String>,
    /// wgpu backend [default: every backend is tried].
    #[arg(long, value_parser = ["vulkan", "metal", "dx12", "gl"])]
    backend: Option<String>,
}

#[derive(ClapArgs, Debug)]
struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Epochs to train (at least 1: the checkpoint is written after them).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    epochs: u32,
    /// Images per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    batch_size: u32,
    /// Learning rate, above 0 [default: 0.001 for adam and adamw, 0.05 for sgd].
    #[arg(long, value_parser = positive)]
    lr: Option<f32>,
    /// Optimizer (sgd with --momentum).
    #[arg(long, default_value = "adam", value_parser = ["adam", "adamw", "sgd"])]
    optimizer: String,
    /// Momentum of sgd, in [0, 1].
    #[arg(long, default_value_t = 0.9, value_parser = unit_interval)]
    momentum: f32,
    /// Learning-rate schedule over the epochs.
    #[arg(long, default_value = "none", value_parser = ["none", "cosine"])]
    schedule: String,
    /// Folder for the checkpoint, the optimizer state and the curves.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Continue from the last complete epoch saved in --out.
    #[arg(long)]
    resume: bool,
    /// Save the checkpoint every this many epochs (and after the last).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    save_every: u32,
    /// Do not draw the training curves.
    #[arg(long)]
    no_plot: bool,
    /// Also write PNG figures to this folder: the learned conv1 kernels, the conv1 and conv2
    /// feature maps of one test digit, and the test set's confusion matrix.
    #[arg(long)]
    save_figures: Option<PathBuf>,
}

#[derive(ClapArgs, Debug)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    /// The checkpoint (safetensors) to evaluate.
    #[arg(long)]
    weights: PathBuf,
    /// Also write the figures (as train's --save-figures) to this folder.
    #[arg(long)]
    save_figures: Option<PathBuf>,
}

#[derive(ClapArgs, Debug)]
struct PredictArgs {
    #[command(flatten)]
    common: Common,
    /// The checkpoint (safetensors) to classify with.
    #[arg(long)]
    weights: PathBuf,
    /// IDX files or 28 x 28 PNG images.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn positive(v: &str) -> std::result::Result<f32, String> {
    match v.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{v} is not a number above 0")),
    }
}

fn unit_interval(v: &str) -> std::result::Result<f32, String> {
    match v.parse::<f32>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{v} is not a number in [0, 1]")),
    }
}

/// What the rest of the program reads: the parsed command line, flattened.
#[derive(Debug)]
struct Args {
    command: String,
    data: PathBuf,
    epochs: usize,
    batch_size: usize,
    lr: Option<f32>,
    optimizer: String,
    momentum: f32,
    schedule: String,
    seed: u64,
    flavour: LeNetFlavour,
    adapter: Option<String>,
    backend: Option<String>,
    out: PathBuf,
    weights: Option<PathBuf>,
    resume: bool,
    save_every: usize,
    plot: bool,
    save_figures: Option<PathBuf>,
    files: Vec<PathBuf>,
}

impl Args {
    fn from_cli(cli: Cli) -> Args {
        let (command, common, train, weights, files, eval_figures) = match cli.command {
            None => ("train", None, Some(cli.train), None, vec![], None),
            Some(Command::Train(t)) => ("train", None, Some(t), None, vec![], None),
            Some(Command::Eval(e)) => (
                "eval",
                Some(e.common),
                None,
                Some(e.weights),
                vec![],
                e.save_figures,
            ),
            Some(Command::Predict(p)) => (
                "predict",
                Some(p.common),
                None,
                Some(p.weights),
                p.files,
                None,
            ),
        };
        // Commands other than train take train's defaults for its options (unused).
        let train = train.unwrap_or_else(|| Cli::parse_from(["lenet5"]).train);
        let save_figures = eval_figures.or(train.save_figures);
        let common = common.unwrap_or(train.common);
        Args {
            command: command.into(),
            data: common.data,
            epochs: train.epochs as usize,
            batch_size: train.batch_size as usize,
            lr: train.lr,
            optimizer: train.optimizer,
            momentum: train.momentum,
            schedule: train.schedule,
            seed: common.seed,
            flavour: match common.flavour.as_str() {
                "classic" => LeNetFlavour::Classic,
                _ => LeNetFlavour::Modern,
            },
            adapter: common.adapter,
            backend: common.backend,
            out: train.out,
            weights,
            resume: train.resume,
            save_every: train.save_every as usize,
            plot: !train.no_plot,
            save_figures,
            files,
        }
    }
}

/// The training state of a checkpoint: model and optimizer in one file, so that a resume never
/// pairs weights with another epoch's optimizer state (each file is written atomically).
const TRAINING_STATE: &str = "lenet5-training.safetensors";

/// Writes the model (`lenet5.safetensors`, PyTorch's names, for eval, predict and PyTorch) and
/// the training state (model and optimizer under `model.` and `optimizer.`, with the epoch and
/// step counts) after `epochs` complete epochs.
fn save_checkpoint(
    out: &Path,
    model: &dyn Module,
    opt: &dyn Optimizer,
    epochs: usize,
) -> Result<()> {
    weights::save_module(out.join("lenet5.safetensors"), model)?;
    let mut tensors: Vec<(String, Tensor)> = model
        .state_dict()
        .into_iter()
        .map(|(k, t)| (format!("model.{k}"), t))
        .collect();
    tensors.extend(
        opt.state()
            .into_iter()
            .map(|(k, t)| (format!("optimizer.{k}"), t)),
    );
    let meta: HashMap<String, String> = [
        ("steps".to_string(), opt.steps().to_string()),
        ("epochs".to_string(), epochs.to_string()),
    ]
    .into();
    weights::save(out.join(TRAINING_STATE), &tensors, &meta)
}

/// Loads a training state into the model and optimizer; the number of epochs it completed.
fn resume(dev: &Device, file: &Path, model: &dyn Module, opt: &mut dyn Optimizer) -> Result<usize> {
    let name = file.display().to_string();
    let (all, meta) = weights::load(file)?;
    let count = |key: &str| -> Result<u64> {
        meta.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| {
            Error::Io(format!(
                "{name}: no '{key}' count in its metadata: not a training state of this example"
            ))
        })
    };
    let (epochs, steps) = (count("epochs")?, count("steps")?);
    let part = |prefix: &str| -> HashMap<String, weights::HostTensor> {
        all.iter()
            .filter_map(|(k, t)| {
                let k = k.strip_prefix(prefix)?;
                Some((k.to_string(), t.clone()))
            })
            .collect()
    };
    weights::load_into(model, &part("model."), &name)?;
    let state: Vec<(String, Tensor)> = part("optimizer.")
        .iter()
        .map(|(k, t)| Ok((k.clone(), weights::to_device(dev, t)?)))
        .collect::<Result<_>>()?;
    opt.load_state(&state, steps)?;
    Ok(epochs as usize)
}

fn main() {
    // Bad arguments: clap prints the problem (or --help) and exits with status 2.
    let args = Args::from_cli(Cli::parse());
    if let Err(e) = run(args) {
        eprintln!("lenet5: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let mut opts = DeviceOptions::default();
    if let Some(a) = &args.adapter {
        opts = opts.with_adapter(a);
    }
    if let Some(b) = &args.backend {
        opts = opts.with_backend(b);
    }
    let dev = Device::with_options(opts)?;
    println!("adapter: {}", dev.info());
    dev.manual_seed(args.seed);
    let model = LeNet5::build(&dev, args.flavour)?;
    match args.command.as_str() {
        "train" => train(&dev, model, &args),
        "eval" => {
            let w = args
                .weights
                .clone()
                .ok_or_else(|| Error::Invalid("eval needs --weights FILE".into()))?;
            weights::load_module(&w, &model)?;
            let data = Mnist::load(&args.data)?;
            let acc = evaluate(&dev, &model, &data.test)?;
            println!(
                "test accuracy of {}: {:.2}% ({} images)",
                w.display(),
                acc * 100.0,
                data.test.len()
            );
            match &args.save_figures {
                Some(dir) => save_figures(&dev, &model, &data.test, dir),
                None => Ok(()),
            }
        }
        "predict" => {
            let w = args
                .weights
                .clone()
                .ok_or_else(|| Error::Invalid("predict needs --weights FILE".into()))?;
            weights::load_module(&w, &model)?;
            predict(&dev, &model, &args.files)
        }
        c => Err(Error::Invalid(format!("unknown command {c}"))),
    }
}

/// Fraction of `data` classified correctly (eval mode, no tape).
fn evaluate(dev: &Device, model: &Sequential, data: &Dataset) -> Result<f64> {
    let mut correct = 0usize;
    no_grad(|| -> Result<()> {
        for batch in DataLoader::new(data, 1000)?.epoch(0) {
            let pred = model
                .forward(&batch.images_on(dev)?)?
                .argmax(1, false)?
                .to_vec()?;
            correct += pred
                .iter()
                .zip(&batch.labels)
                .filter(|(p, &l)| **p as usize == l)
                .count();
        }
        Ok(())
    })?;
    Ok(correct as f64 / data.len().max(1) as f64)
}

fn train(dev: &Device, mut model: Sequential, args: &Args) -> Result<()> {
    let data = Mnist::load(&args.data)?;
    println!(
        "data: {} ({} train / {} test images)",
        args.data.display(),
        data.train.len(),
        data.test.len()
    );
    print!(
        "{}",
        summary(&model, &[1, 1, data.train.rows, data.train.cols])?.1
    );
    let lr = args
        .lr
        .unwrap_or(if args.optimizer == "sgd" { 0.05 } else { 1e-3 });
    let mut opt: Box<dyn Optimizer> = match args.optimizer.as_str() {
        "adam" => Box::new(Adam::new(model.parameters(), lr)?),
        "adamw" => Box::new(Adam::adamw(model.parameters(), lr)?),
        "sgd" => Box::new(Sgd::new(model.parameters(), lr)?.with_momentum(args.momentum)),
        o => {
            return Err(Error::Invalid(format!(
                "unknown optimizer {o} (adam, adamw or sgd)"
            )))
        }
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::Io(format!("{}: {e}", args.out.display())))?;
    let ckpt = args.out.join("lenet5.safetensors");
    let state_file = args.out.join(TRAINING_STATE);
    let mut first_epoch = 0;
    if args.resume {
        first_epoch = resume(dev, &state_file, &model, opt.as_mut())?;
        println!(
            "resumed from {} after {first_epoch} epochs",
            state_file.display()
        );
    }
    println!(
        "training: {} epochs, batch {}, {} lr {lr}, seed {}",
        args.epochs, args.batch_size, args.optimizer, args.seed
    );
    let schedule = CosineLr {
        base_lr: lr,
        t_max: args.epochs,
        eta_min: 0.0,
    };
    let loader = DataLoader::new(&data.train, args.batch_size)?.shuffle(args.seed);
    let mut history: Vec<(f64, f64, f64)> = Vec::new();
    for epoch in first_epoch..first_epoch + args.epochs {
        if args.schedule == "cosine" {
            opt.set_learning_rate(schedule.lr_at(epoch - first_epoch));
        }
        model.set_training(true);
        let bar = ProgressBar::new(loader.batches() as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} {bar:30} {pos}/{len} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, first_epoch + args.epochs));
        let start = Instant::now();
        // Losses and predictions stay on the GPU until the epoch ends (or a progress update),
        // so the training step itself never waits for a readback.
        let mut losses = Vec::new();
        let mut preds = Vec::new();
        let mut labels = Vec::new();
        let mut images = 0usize;
        for (step, batch) in loader.epoch(epoch).enumerate() {
            let x = batch.images_on(dev)?;
            let logits = model.forward(&x)?;
            let loss = logits.cross_entropy(&batch.labels, Reduction::Mean)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            losses.push(loss.detach());
            preds.push(logits.argmax(1, false)?);
            labels.push(batch.labels);
            images += batch.shape[0];
            if step % 20 == 19 {
                let l = losses.last().unwrap().item()?;
                let ips = images as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!("loss {l:.4}  {ips:.0} img/s"));
            }
            bar.inc(1);
        }
        let secs = start.elapsed().as_secs_f64();
        let mut loss_sum = 0.0;
        for l in &losses {
            loss_sum += l.item()? as f64;
        }
        let mut correct = 0usize;
        for (p, l) in preds.iter().zip(&labels) {
            let p = p.to_vec()?;
            correct += p.iter().zip(l).filter(|(p, &l)| **p as usize == l).count();
        }
        let train_loss = loss_sum / losses.len().max(1) as f64;
        let train_acc = correct as f64 / images.max(1) as f64;
        model.set_training(false);
        let test_acc = evaluate(dev, &model, &data.test)?;
        bar.finish_and_clear();
        println!(
            "epoch {}/{}: loss {train_loss:.4}  train {:.2}%  test {:.2}%  {:.0} img/s  {secs:.1} s",
            epoch + 1,
            first_epoch + args.epochs,
            train_acc * 100.0,
            test_acc * 100.0,
            images as f64 / secs
        );
        history.push((train_loss, train_acc, test_acc));
        let done = epoch + 1;
        if (done - first_epoch) % args.save_every == 0 || done == first_epoch + args.epochs {
            save_checkpoint(&args.out, &model, opt.as_ref(), done)?;
        }
    }
    println!(
        "checkpoint: {} (training state: {})",
        ckpt.display(),
        state_file.display()
    );
    if let Some((_, _, acc)) = history.last() {
        println!("final test accuracy: {:.2}%", acc * 100.0);
    }
    if args.plot && !history.is_empty() {
        let png = args.out.join("lenet5-curves.png");
        match plot(&png, &history) {
            Ok(()) => println!("curves: {}", png.display()),
            Err(e) => eprintln!("warning: could not draw {}: {e}", png.display()),
        }
    }
    if let Some(dir) = &args.save_figures {
        save_figures(dev, &model, &data.test, dir)?;
    }
    Ok(())
}

/// Writes `conv1_kernels.png` (the learned 5 x 5 kernels on one shared gray scale),
/// `feature_maps_conv1.png` and `feature_maps_conv2.png` (what the convolutions compute from a
/// test digit, before their activation) and `confusion.png` (test counts: rows the true class,
/// columns the predicted one, darker = a larger share of the row).
fn save_figures(dev: &Device, model: &Sequential, test: &Dataset, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let mut figures = vec![("conv1_kernels.png", kernel_figure(model)?)];
    for (layer, figure) in feature_map_figures(dev, model, test)? {
        figures.push((layer, figure));
    }
    figures.push((
        "confusion.png",
        confusion_figure(&confusion(dev, model, test)?),
    ));
    for (file, figure) in figures {
        let path = dir.join(file);
        figure.write_png(&path)?;
        println!("figure: {}", path.display());
    }
    Ok(())
}

/// Panels in rows of at most 8.
fn in_rows(panels: Vec<figures::Panel>) -> Vec<Vec<figures::Panel>> {
    let mut rows: Vec<Vec<figures::Panel>> = Vec::new();
    for p in panels {
        match rows.last_mut() {
            Some(r) if r.len() < 8 => r.push(p),
            _ => rows.push(vec![p]),
        }
    }
    rows
}

/// conv1's kernels, on one gray scale symmetric about 0 (mid-gray = 0).
fn kernel_figure(model: &Sequential) -> Result<figures::Figure> {
    let params: HashMap<String, Tensor> = model.named_parameters().into_iter().collect();
    let conv1 = &params["conv1.weight"];
    let (k, kh, kw) = (conv1.shape()[0], conv1.shape()[2], conv1.shape()[3]);
    let w = conv1.to_vec()?;
    let bound = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let kernels = (0..k)
        .map(|i| {
            let plane = &w[i * kh * kw..(i + 1) * kh * kw];
            figures::Panel::in_range(format!("conv1 kernel {i}"), kh, kw, plane, -bound, bound)
        })
        .collect();
    let rows = in_rows(kernels);
    let scale = figures::Figure::scale_for(&rows, 120);
    Ok(figures::Figure { rows, scale })
}

/// The first 7 of the test set (as the kernels example) through the layers: per convolution,
/// its output channels (conv1's figure starts with the digit itself).
fn feature_map_figures(
    dev: &Device,
    model: &Sequential,
    test: &Dataset,
) -> Result<Vec<(&'static str, figures::Figure)>> {
    use figures::{Figure, Panel};
    let i = test.labels.iter().position(|&l| l == 7).unwrap_or(0);
    let (h0, w0) = (test.rows, test.cols);
    let digit = test.image(i);
    let mut panels = vec![Panel::scaled(
        format!("digit (label {})", test.labels[i]),
        h0,
        w0,
        digit,
    )];
    let mut out = Vec::new();
    no_grad(|| -> Result<()> {
        let mut h = Tensor::from_slice(dev, digit, &[1, 1, h0, w0])?;
        for (name, layer) in model.layers() {
            h = layer.forward(&h)?;
            let file = match name {
                "conv1" => "feature_maps_conv1.png",
                "conv2" => "feature_maps_conv2.png",
                _ => continue,
            };
            let (c, mh, mw) = (h.shape()[1], h.shape()[2], h.shape()[3]);
            let v = h.to_vec()?;
            for ch in 0..c {
                let plane = &v[ch * mh * mw..(ch + 1) * mh * mw];
                panels.push(Panel::scaled(format!("{name} map {ch}"), mh, mw, plane));
            }
            let rows = in_rows(std::mem::take(&mut panels));
            let scale = Figure::scale_for(&rows, 112);
            out.push((file, Figure { rows, scale }));
        }
        Ok(())
    })?;
    Ok(out)
}

/// The confusion matrix as a 10 x 10 panel with the counts written in.
fn confusion_figure(counts: &[[usize; 10]; 10]) -> figures::Figure {
    let mut shade = Vec::with_capacity(100);
    let mut marks = Vec::new();
    for (t, row) in counts.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f32;
        for (p, &n) in row.iter().enumerate() {
            shade.push(1.0 - n as f32 / total);
            if n > 0 {
                marks.push((t, p, n.to_string()));
            }
        }
    }
    let label = "rows: true 0-9, columns: predicted 0-9";
    let mut panel = figures::Panel::in_range(label, 10, 10, &shade, 0.0, 1.0);
    panel.marks = marks;
    figures::Figure {
        rows: vec![vec![panel]],
        scale: 40,
    }
}

/// counts[true class][predicted class] over `data` (eval mode, no tape).
fn confusion(dev: &Device, model: &Sequential, data: &Dataset) -> Result<[[usize; 10]; 10]> {
    let mut counts = [[0usize; 10]; 10];
    no_grad(|| -> Result<()> {
        for batch in DataLoader::new(data, 1000)?.epoch(0) {
            let pred = model
                .forward(&batch.images_on(dev)?)?
                .argmax(1, false)?
                .to_vec()?;
            for (p, &l) in pred.iter().zip(&batch.labels) {
                counts[l.min(9)][(*p as usize).min(9)] += 1;
            }
        }
        Ok(())
    })?;
    Ok(counts)
}

/// The loss (left) and the train and test accuracy (right) per epoch.
fn plot(path: &Path, history: &[(f64, f64, f64)]) -> Result<()> {
    use plotters::prelude::*;
    figures::write_chart(path, 900, 420, |root, labelled| {
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(450);
        let n = history.len() as f64;
        let epochs = 1.0..n.max(2.0);
        let max_loss = history.iter().map(|h| h.0).fold(0.0, f64::max) * 1.1;
        let mut c = figures::chart_on(&left, "training loss", labelled)
            .build_cartesian_2d(epochs.clone(), 0.0..max_loss.max(1e-3))?;
        let mut mesh = c.configure_mesh();
        if labelled {
            mesh.x_desc("epoch");
        }
        mesh.draw()?;
        let per_epoch = |f: fn(&(f64, f64, f64)) -> f64| {
            history
                .iter()
                .enumerate()
                .map(move |(i, h)| (i as f64 + 1.0, f(h)))
        };
        c.draw_series(LineSeries::new(per_epoch(|h| h.0), &RED))?;
        let lo = history.iter().map(|h| h.1.min(h.2)).fold(1.0, f64::min) * 100.0 - 1.0;
        let mut c = figures::chart_on(&right, "accuracy (%)", labelled)
            .build_cartesian_2d(epochs, lo.max(0.0)..100.0)?;
        let mut mesh = c.configure_mesh();
        if labelled {
            mesh.x_desc("epoch");
        }
        mesh.draw()?;
        c.draw_series(LineSeries::new(per_epoch(|h| h.1 * 100.0), &BLUE))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        c.draw_series(LineSeries::new(per_epoch(|h| h.2 * 100.0), &GREEN))?
            .label("test")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        if labelled {
            c.configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()?;
        }
        Ok(())
    })
}

/// Loads images to classify: IDX files (every image in them) or 28 x 28 PNGs.
fn load_images(files: &[PathBuf]) -> Result<Vec<(String, Vec<f32>)>> {
    let mut out = Vec::new();
    for f in files {
        let name = f.display().to_string();
        if f.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            let file = std::fs::File::open(f).map_err(|e| Error::Io(format!("{name}: {e}")))?;
            out.push((
                name.clone(),
                png_pixels(&name, std::io::BufReader::new(file))?,
            ));
        } else {
            let idx = read_idx(f)?;
            if idx.dims.len() != 3 || idx.dims[1] != 28 || idx.dims[2] != 28 {
                return Err(Error::Io(format!(
                    "{name}: dimensions {:?}, expected [N, 28, 28]",
                    idx.dims
                )));
            }
            for (i, img) in idx.data.chunks(784).enumerate() {
                out.push((
                    format!("{name}[{i}]"),
                    img.iter().map(|&b| b as f32 / 255.0).collect(),
                ));
            }
        }
    }
    Ok(out)
}

/// The pixels of a 28 x 28 PNG as gray levels in [0, 1]. The size in the header is checked
/// before anything is decoded, so a huge image costs nothing.
fn png_pixels(name: &str, data: impl std::io::Read) -> Result<Vec<f32>> {
    let mut decoder = png::Decoder::new(data);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if (width, height) != (28, 28) {
        return Err(Error::Io(format!(
            "{name}: {width}x{height} pixels, expected 28x28"
        )));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let ch = info.color_type.samples();
    Ok(buf[..info.buffer_size()]
        .chunks(ch)
        .map(|p| {
            let rgb = if ch >= 3 {
                (p[0] as f32 + p[1] as f32 + p[2] as f32) / 3.0
            } else {
                p[0] as f32
            };
            rgb / 255.0
        })
        .collect())
}

fn predict(dev: &Device, model: &Sequential, files: &[PathBuf]) -> Result<()> {
    if files.is_empty() {
        return Err(Error::Invalid(
            "predict needs image files (IDX or 28x28 PNG)".into(),
        ));
    }
    let images = load_images(files)?;
    let pixels: Vec<f32> = images.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let x = Tensor::from_vec(dev, pixels, &[images.len(), 1, 28, 28])?;
    let probs = no_grad(|| model.forward(&x)?.softmax(1))?.to_vec()?;
    for (i, (name, _)) in images.iter().enumerate() {
        let p = &probs[i * 10..(i + 1) * 10];
        let (class, conf) =
            p.iter()
                .enumerate()
                .fold((0, 0.0f32), |b, (c, &v)| if v > b.1 { (c, v) } else { b });
        println!("{name}: class {class} ({:.1}%)", conf * 100.0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> std::result::Result<Args, clap::Error> {
        let argv = std::iter::once("lenet5").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(Args::from_cli)
    }

    #[test]
    fn no_arguments_train_with_the_documented_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.command, "train");
        assert_eq!((a.epochs, a.batch_size, a.seed), (10, 64, 0));
        assert_eq!(
            (a.optimizer.as_str(), a.schedule.as_str()),
            ("adam", "none")
        );
        assert_eq!(a.data, PathBuf::from(BUNDLED));
        assert_eq!(a.out, PathBuf::from("runs"));
        assert!(a.plot && !a.resume && a.lr.is_none());
        // Train's options with or without the command.
        let a = parse(&["--epochs", "3", "--optimizer", "sgd", "--lr", "0.1"]).unwrap();
        assert_eq!(
            (a.command.as_str(), a.epochs, a.lr),
            ("train", 3, Some(0.1))
        );
        let a = parse(&["train", "--batch-size", "7", "--flavour", "classic"]).unwrap();
        assert_eq!((a.batch_size, a.flavour), (7, LeNetFlavour::Classic));
        let a = parse(&["predict", "--weights", "w.safetensors", "a.png", "b.png"]).unwrap();
        assert_eq!(a.command, "predict");
        assert_eq!(a.files.len(), 2);
        let a = parse(&["eval", "--weights", "w.safetensors", "--seed", "4"]).unwrap();
        assert_eq!((a.command.as_str(), a.seed), ("eval", 4));
    }

    #[test]
    fn out_of_range_and_missing_values_are_refused() {
        for bad in [
            &["--epochs", "-1"][..],
            &["--epochs", "0"],
            &["--epochs=-1"],
            &["--batch-size", "0"],
            &["--batch-size", "2.5"],
            &["--lr", "0"],
            &["--lr", "-0.1"],
            &["--lr", "NaN"],
            &["--momentum", "1.5"],
            &["--optimizer", "adagrad"],
            &["--schedule", "step"],
            &["--flavour", "vintage"],
            &["--seed", "-3"],
            &["--unknown"],
            &["eval"],
            &["predict", "--weights", "w.safetensors"],
            &["eval", "--weights", "w", "--epochs", "3"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn help_lists_every_option_with_its_default() {
        let mut cmd = Cli::command();
        let help = cmd.render_long_help().to_string();
        for (opt, default) in [
            ("--epochs", "[default: 10]"),
            ("--batch-size", "[default: 64]"),
            ("--lr", "[default: 0.001 for adam and adamw, 0.05 for sgd]"),
            ("--optimizer", "[default: adam]"),
            ("--momentum", "[default: 0.9]"),
            ("--schedule", "[default: none]"),
            ("--seed", "[default: 0]"),
            ("--flavour", "[default: modern]"),
            ("--data", "[default: "),
            ("--out", "[default: runs]"),
            ("--adapter", "[default: the preferred adapter]"),
            ("--backend", "[default: every backend is tried]"),
            ("--resume", ""),
            ("--save-every", "[default: 1]"),
            ("--no-plot", ""),
        ] {
            let at = help
                .find(opt)
                .unwrap_or_else(|| panic!("{opt} missing:\n{help}"));
            let next = help[at + 2..]
                .find("\n  -")
                .map_or(help.len(), |i| at + 2 + i);
            assert!(help[at..next].contains(default), "{opt}:\n{help}");
        }
        for command in ["train", "eval", "predict"] {
            assert!(help.contains(command), "{command}:\n{help}");
        }
    }

    #[test]
    fn a_checkpoint_resumes_model_and_optimizer_of_the_same_epoch() {
        let dev = Device::new().unwrap();
        let dir = std::env::temp_dir().join(format!("webgrad-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = LeNet5::build(&dev, LeNetFlavour::Modern).unwrap();
        let mut opt = Adam::new(model.parameters(), 1e-3).unwrap();
        let x = Tensor::rand(&dev, &[4, 1, 28, 28]).unwrap();
        for _ in 0..3 {
            let loss = model.forward(&x).unwrap();
            let loss = loss.cross_entropy(&[1, 2, 3, 4], Reduction::Mean).unwrap();
            opt.zero_grad();
            loss.backward().unwrap();
            opt.step().unwrap();
        }
        save_checkpoint(&dir, &model, &opt, 7).unwrap();

        dev.manual_seed(99);
        let fresh = LeNet5::build(&dev, LeNetFlavour::Modern).unwrap();
        let mut fresh_opt = Adam::new(fresh.parameters(), 1e-3).unwrap();
        let epochs = resume(&dev, &dir.join(TRAINING_STATE), &fresh, &mut fresh_opt).unwrap();
        assert_eq!((epochs, fresh_opt.steps()), (7, 3));
        for ((name, a), (_, b)) in model.state_dict().iter().zip(fresh.state_dict()) {
            assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap(), "{name}");
        }
        for ((name, a), (_, b)) in opt.state().iter().zip(fresh_opt.state()) {
            assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap(), "{name}");
        }
        // A file without the counts (the model-only checkpoint) is refused, not started at 0.
        let err = resume(
            &dev,
            &dir.join("lenet5.safetensors"),
            &fresh,
            &mut fresh_opt,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'epochs'"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The PNG path under random mutations of a valid 28 x 28 digit (bit flips, extreme bytes,
    /// truncation, appended bytes): pixels or an error, never a panic
    /// (`WEBGRAD_FUZZ_ITERS` cases, 300 by default).
    #[test]
    fn mutated_pngs_are_errors_or_pixels_never_panics() {
        let mut valid = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut valid, 28, 28);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let pixels: Vec<u8> = (0..784).map(|i| (i * 7 % 256) as u8).collect();
            enc.write_header()
                .unwrap()
                .write_image_data(&pixels)
                .unwrap();
        }
        assert_eq!(png_pixels("seed", &valid[..]).unwrap().len(), 784);
        let iterations: usize = std::env::var("WEBGRAD_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let mut r = webgrad::Rng::new(17);
        let mut refused = 0;
        for i in 0..iterations {
            let mut b = valid.clone();
            let at = |r: &mut webgrad::Rng, n: usize| (r.uniform() * n as f32) as usize % n;
            match at(&mut r, 4) {
                0 => {
                    let k = at(&mut r, b.len());
                    b[k] ^= 1 << at(&mut r, 8);
                }
                1 => {
                    let k = at(&mut r, b.len());
                    b[k] = 0xff;
                }
                2 => b.truncate(at(&mut r, b.len())),
                _ => b.extend((0..at(&mut r, 64)).map(|v| v as u8)),
            }
            match png_pixels(&format!("case {i}"), &b[..]) {
                Ok(p) => assert_eq!(p.len(), 784, "case {i}"),
                Err(_) => refused += 1,
            }
        }
        assert!(
            refused > 0,
            "no mutation was refused: the fuzzer is not biting"
        );
    }

    /// A PNG of `width` x `height` 8-bit gray pixels whose image data is one empty stored
    /// deflate block: only the header is valid.
    fn png_header_only(width: u32, height: u32) -> Vec<u8> {
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&crc.sum().to_be_bytes());
            c
        };
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(
            b"IDAT",
            &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
        ));
        png.extend(chunk(b"IEND", &[]));
        png
    }

    #[test]
    fn png_size_is_checked_from_the_header_before_decoding() {
        // 100,000 x 100,000 pixels would need 10 GB to decode.
        let e = png_pixels("huge.png", &png_header_only(100_000, 100_000)[..])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("huge.png") && e.contains("100000x100000") && e.contains("28x28"),
            "{e}"
        );
        let e = png_pixels("small.png", &png_header_only(29, 28)[..])
            .unwrap_err()
            .to_string();
        assert!(e.contains("29x28"), "{e}");
        // A real 28 x 28 image decodes.
        let mut bytes = Vec::new();
        let mut enc = png::Encoder::new(&mut bytes, 28, 28);
        enc.set_color(png::ColorType::Grayscale);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[255; 784]).unwrap();
        drop(w);
        assert_eq!(png_pixels("ok.png", &bytes[..]).unwrap(), vec![1.0; 784]);
    }

    #[test]
    fn a_chart_whose_text_cannot_be_drawn_is_written_without_it() {
        // As plotters fails without a font: the labelled drawing errs after drawing part of
        // the chart, and what is written is the unlabelled drawing alone.
        use plotters::prelude::*;
        let dir = std::env::temp_dir().join(format!("webgrad-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.png");
        figures::write_chart(&path, 40, 20, |area, labelled| {
            area.fill(&WHITE)?;
            if labelled {
                area.draw_pixel((0, 0), &RED)?;
                return Err("No such font: sans-serif".into());
            }
            area.draw_pixel((39, 19), &BLUE)?;
            Ok(())
        })
        .unwrap();
        let (h, w, px) = figures::read_rgb_png(&path);
        assert_eq!((h, w), (20, 40));
        assert_eq!(&px[..3], &[255, 255, 255], "the failed drawing's pixel");
        assert_eq!(&px[(19 * 40 + 39) * 3..][..3], &[0, 0, 255]);
        // A chart that cannot be drawn at all is an error naming the file.
        let e = figures::write_chart(&dir.join("none.png"), 4, 4, |_, _| Err("broken".into()));
        assert!(e.unwrap_err().to_string().contains("none.png"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn figures_hold_the_kernels_maps_and_a_consistent_confusion_matrix() {
        let dev = Device::new().expect("tests need a wgpu adapter");
        let model = LeNet5::build(&dev, LeNetFlavour::Modern).unwrap();
        let full = Mnist::load(BUNDLED).unwrap().test;
        let n = 50;
        let test = Dataset {
            images: full.images[..n * 784].to_vec(),
            labels: full.labels[..n].to_vec(),
            rows: 28,
            cols: 28,
        };
        let dir = std::env::temp_dir().join(format!("webgrad-figures-{}", std::process::id()));
        save_figures(&dev, &model, &test, &dir).unwrap();

        // 6 kernels 5 x 5 at scale 24; the digit and 6 conv1 maps (28 x 28) at scale 4; 16
        // conv2 maps (10 x 10) in rows of 8 at scale 11; the 10 x 10 matrix at scale 40.
        let sizes = [
            ("conv1_kernels.png", (10 + 150, 10 + 6 * 170)),
            (
                "feature_maps_conv1.png",
                (10 + (20 + 112 + 10), 10 + 7 * 170),
            ),
            (
                "feature_maps_conv2.png",
                (10 + 2 * (20 + 110 + 10), 10 + 8 * 170),
            ),
            ("confusion.png", (10 + 430, 10 + 410)),
        ];
        for (file, size) in sizes {
            let (h, w, _) = figures::read_rgb_png(&dir.join(file));
            assert_eq!((h, w), size, "{file}");
        }
        // The kernel with the largest |weight| reaches black or white on the shared scale.
        let (_, w, px) = figures::read_rgb_png(&dir.join("conv1_kernels.png"));
        let weights = model.named_parameters()[0].1.to_vec().unwrap();
        let (at, v) = weights.iter().enumerate().fold((0, 0.0f32), |b, (i, &v)| {
            if v.abs() > b.1.abs() {
                (i, v)
            } else {
                b
            }
        });
        let (k, ky, kx) = (at / 25, at % 25 / 5, at % 5);
        let (y, x) = (10 + 20 + ky * 24 + 12, 10 + k * 170 + kx * 24 + 12);
        let expected = if v > 0.0 { 255 } else { 0 };
        assert_eq!(px[(y * w + x) * 3] as i32, expected);

        let counts = confusion(&dev, &model, &test).unwrap();
        assert_eq!(counts.iter().flatten().sum::<usize>(), n);
        let diagonal: usize = (0..10).map(|i| counts[i][i]).sum();
        let acc = evaluate(&dev, &model, &test).unwrap();
        assert!((diagonal as f64 / n as f64 - acc).abs() < 1e-9);
        std::fs::remove_dir_all(&dir).ok();
    }
}
