//! Train LeNet-5 on MNIST-format digits, evaluate a checkpoint, or classify images.
//!
//! ```text
//! cargo run --release --example lenet5                       # train on the bundled digits
//! cargo run --release --example lenet5 -- --data /usr/share/datasets/fashion-mnist
//! cargo run --release --example lenet5 -- eval --weights runs/lenet5.safetensors
//! cargo run --release --example lenet5 -- predict --weights runs/lenet5.safetensors a.png b.png
//! ```
//! Options: --epochs N (10), --batch-size N (64), --lr F, --optimizer adam|adamw|sgd (adam),
//! --momentum F (0.9, sgd), --schedule none|cosine (none), --seed N (0), --flavour
//! modern|classic, --adapter NAME, --backend vulkan|metal|dx12|gl, --out DIR (runs),
//! --resume (continue from DIR's checkpoint and optimizer state), --no-plot.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use webgrad::data::{read_idx, DataLoader, Dataset, Mnist};
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::{summary, Module, Sequential};
use webgrad::optim::{Adam, CosineLr, LrSchedule, Optimizer, Sgd};
use webgrad::{no_grad, weights, Device, DeviceOptions, Error, Reduction, Result, Tensor};

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
    plot: bool,
    files: Vec<PathBuf>,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        command: "train".into(),
        data: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-subset")),
        epochs: 10,
        batch_size: 64,
        lr: None,
        optimizer: "adam".into(),
        momentum: 0.9,
        schedule: "none".into(),
        seed: 0,
        flavour: LeNetFlavour::Modern,
        adapter: None,
        backend: None,
        out: PathBuf::from("runs"),
        weights: None,
        resume: false,
        plot: true,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1).peekable();
    if let Some(c) = it.peek() {
        if ["train", "eval", "predict"].contains(&c.as_str()) {
            a.command = it.next().unwrap();
        }
    }
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |v: String, name: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match arg.as_str() {
            "--data" => a.data = value("--data")?.into(),
            "--epochs" => a.epochs = num(value("--epochs")?, "--epochs")? as usize,
            "--batch-size" => a.batch_size = num(value("--batch-size")?, "--batch-size")? as usize,
            "--lr" => a.lr = Some(num(value("--lr")?, "--lr")? as f32),
            "--optimizer" => a.optimizer = value("--optimizer")?,
            "--momentum" => a.momentum = num(value("--momentum")?, "--momentum")? as f32,
            "--schedule" => a.schedule = value("--schedule")?,
            "--seed" => a.seed = num(value("--seed")?, "--seed")? as u64,
            "--flavour" => {
                a.flavour = match value("--flavour")?.as_str() {
                    "modern" => LeNetFlavour::Modern,
                    "classic" => LeNetFlavour::Classic,
                    f => return Err(format!("unknown flavour {f} (modern or classic)")),
                }
            }
            "--adapter" => a.adapter = Some(value("--adapter")?),
            "--backend" => a.backend = Some(value("--backend")?),
            "--out" => a.out = value("--out")?.into(),
            "--weights" => a.weights = Some(value("--weights")?.into()),
            "--resume" => a.resume = true,
            "--no-plot" => a.plot = false,
            "-h" | "--help" => {
                return Err("see the comment at the top of examples/lenet5.rs".into())
            }
            f if !f.starts_with("--") => a.files.push(f.into()),
            f => return Err(format!("unknown option {f}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lenet5: {e}");
            std::process::exit(2);
        }
    };
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
            Ok(())
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
        for batch in DataLoader::new(data, 1000).epoch(0) {
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
    let opt_file = args.out.join("lenet5-optimizer.safetensors");
    let mut first_epoch = 0;
    if args.resume {
        weights::load_module(&ckpt, &model)?;
        let (state, meta) = weights::load(&opt_file)?;
        let state: Vec<(String, Tensor)> = state
            .iter()
            .map(|(k, t)| Ok((k.clone(), weights::to_device(dev, t)?)))
            .collect::<Result<_>>()?;
        let steps = meta.get("steps").and_then(|s| s.parse().ok()).unwrap_or(0);
        opt.load_state(&state, steps)?;
        first_epoch = meta.get("epochs").and_then(|s| s.parse().ok()).unwrap_or(0);
        println!("resumed from {} after {first_epoch} epochs", ckpt.display());
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
    let loader = DataLoader::new(&data.train, args.batch_size).shuffle(args.seed);
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
    }
    let last_epoch = first_epoch + args.epochs;
    weights::save_module(&ckpt, &model)?;
    let meta: HashMap<String, String> = [
        ("steps".to_string(), opt.steps().to_string()),
        ("epochs".to_string(), last_epoch.to_string()),
    ]
    .into();
    weights::save(&opt_file, &opt.state(), &meta)?;
    println!(
        "checkpoint: {} (optimizer state: {})",
        ckpt.display(),
        opt_file.display()
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
    Ok(())
}

fn plot(
    path: &Path,
    history: &[(f64, f64, f64)],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = BitMapBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let n = history.len() as f64;
    let max_loss = history.iter().map(|h| h.0).fold(0.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(1.0..n.max(2.0), 0.0..max_loss.max(1e-3))?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(
        history
            .iter()
            .enumerate()
            .map(|(i, h)| (i as f64 + 1.0, h.0)),
        &RED,
    ))?;
    let lo = history.iter().map(|h| h.1.min(h.2)).fold(1.0, f64::min) * 100.0 - 1.0;
    let mut c = ChartBuilder::on(&right)
        .caption("accuracy (%)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(1.0..n.max(2.0), lo.max(0.0)..100.0)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(
        history
            .iter()
            .enumerate()
            .map(|(i, h)| (i as f64 + 1.0, h.1 * 100.0)),
        &BLUE,
    ))?
    .label("train")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new(
        history
            .iter()
            .enumerate()
            .map(|(i, h)| (i as f64 + 1.0, h.2 * 100.0)),
        &GREEN,
    ))?
    .label("test")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Loads images to classify: IDX files (every image in them) or 28 x 28 PNGs.
fn load_images(files: &[PathBuf]) -> Result<Vec<(String, Vec<f32>)>> {
    let mut out = Vec::new();
    for f in files {
        let name = f.display().to_string();
        if f.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            let file = std::fs::File::open(f).map_err(|e| Error::Io(format!("{name}: {e}")))?;
            let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
            decoder
                .set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
            let mut reader = decoder
                .read_info()
                .map_err(|e| Error::Io(format!("{name}: {e}")))?;
            let mut buf = vec![0; reader.output_buffer_size()];
            let info = reader
                .next_frame(&mut buf)
                .map_err(|e| Error::Io(format!("{name}: {e}")))?;
            if (info.width, info.height) != (28, 28) {
                return Err(Error::Io(format!(
                    "{name}: {}x{} pixels, expected 28x28",
                    info.width, info.height
                )));
            }
            let ch = info.color_type.samples();
            let px: Vec<f32> = buf[..info.buffer_size()]
                .chunks(ch)
                .map(|p| {
                    let rgb = if ch >= 3 {
                        (p[0] as f32 + p[1] as f32 + p[2] as f32) / 3.0
                    } else {
                        p[0] as f32
                    };
                    rgb / 255.0
                })
                .collect();
            out.push((name, px));
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
