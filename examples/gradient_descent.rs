//! The course's optimisers side by side: stochastic, batch and minibatch gradient descent and
//! Newton's method fit three small models, one for each of the course's losses:
//! - linear regression with the squared error,
//! - logistic regression with the logistic loss,
//! - softmax regression (three classes) with the cross-entropy.
//!
//! Gradients come from webgrad's autodiff and the descent steps from its `Sgd` optimizer.
//! Newton's Hessian is computed by webgrad too: each column is a central difference of two
//! autodiff gradients, H e_j = (g(w + h e_j) - g(w - h e_j)) / 2h, so it works for any loss;
//! the small linear system H d = g is solved on the host. The losses against iterations and
//! against time, for all four methods, go to one PNG.
//!
//! `cargo run --release --example gradient_descent [-- OUT.png]`

use std::time::Instant;

use webgrad::optim::{Optimizer, Sgd};
use webgrad::{Device, Error, Reduction, Result, Rng, Tensor};

#[path = "common/figures.rs"]
mod figures;

/// The loss of one problem.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    SquaredError,
    Logistic,
    CrossEntropy,
}

/// A data set with a column of ones appended (the bias is a weight), and its targets.
struct Problem {
    name: &'static str,
    loss: Loss,
    /// n x d row-major, the last column ones.
    x: Vec<f32>,
    /// Targets: values (regression), 0/1 (logistic) or class indices (cross-entropy).
    y: Vec<f32>,
    n: usize,
    d: usize,
    /// Outputs per example: 1, or the number of classes.
    k: usize,
}

/// One method's run: the full-data loss before the first iteration and after each one, and the
/// seconds spent in iterations so far.
struct Run {
    method: &'static str,
    losses: Vec<f64>,
    seconds: Vec<f64>,
}

impl Problem {
    /// Seeded synthetic data: a noisy plane, two overlapping blobs, three blobs.
    fn new(loss: Loss, n: usize, seed: u64) -> Problem {
        let mut rng = Rng::new(seed);
        let k = if loss == Loss::CrossEntropy { 3 } else { 1 };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (a, b) = (rng.normal(), rng.normal());
            let (a, b, target) = match loss {
                Loss::SquaredError => (a, b, 1.5 * a - 2.0 * b + 0.5 + 0.1 * rng.normal()),
                Loss::Logistic => {
                    let c = (i % 2) as f32;
                    (a + 1.2 * c, b + 0.8 * c, c)
                }
                Loss::CrossEntropy => {
                    let c = i % 3;
                    let centre = [(0.0, 1.5), (1.3, -0.8), (-1.3, -0.8)][c];
                    (a + centre.0, b + centre.1, c as f32)
                }
            };
            x.extend([a, b, 1.0]);
            y.push(target);
        }
        let name = match loss {
            Loss::SquaredError => "linear regression, squared error",
            Loss::Logistic => "logistic regression, logistic loss",
            Loss::CrossEntropy => "softmax regression, cross-entropy",
        };
        Problem {
            name,
            loss,
            x,
            y,
            n,
            d: 3,
            k,
        }
    }

    /// The mean loss of weights `w` (d x k) over the examples `rows`.
    fn loss(&self, dev: &Device, w: &Tensor, rows: &[usize]) -> Result<Tensor> {
        let xs: Vec<f32> = rows
            .iter()
            .flat_map(|&r| self.x[r * self.d..(r + 1) * self.d].iter().copied())
            .collect();
        let x = Tensor::from_vec(dev, xs, &[rows.len(), self.d])?;
        let out = x.matmul(w)?;
        let y: Vec<f32> = rows.iter().map(|&r| self.y[r]).collect();
        match self.loss {
            Loss::SquaredError => {
                let y = Tensor::from_vec(dev, y, &[rows.len(), 1])?;
                out.mse_loss(&y, Reduction::Mean)
            }
            Loss::Logistic => {
                let y = Tensor::from_vec(dev, y, &[rows.len(), 1])?;
                out.binary_cross_entropy_with_logits(&y, Reduction::Mean)
            }
            Loss::CrossEntropy => {
                let classes: Vec<usize> = y.iter().map(|&c| c as usize).collect();
                out.cross_entropy(&classes, Reduction::Mean)
            }
        }
    }

    fn all(&self) -> Vec<usize> {
        (0..self.n).collect()
    }

    /// The full-data loss and its gradient at host weights `w`.
    fn loss_and_grad(&self, dev: &Device, w: &[f32]) -> Result<(f64, Vec<f32>)> {
        let wt = Tensor::from_slice(dev, w, &[self.d, self.k])?.requires_grad();
        let loss = self.loss(dev, &wt, &self.all())?;
        loss.backward()?;
        let g = wt.grad().expect("the weights require grad").to_vec()?;
        Ok((loss.item()? as f64, g))
    }
}

/// Gradient descent with `Sgd` on batches of `batch` examples drawn in a seeded shuffled order
/// (`batch` = n: batch gradient descent; 1: stochastic).
fn descend(
    dev: &Device,
    p: &Problem,
    method: &'static str,
    batch: usize,
    lr: f32,
    iterations: usize,
) -> Result<Run> {
    let w = Tensor::zeros(dev, &[p.d, p.k])?.requires_grad();
    let mut opt = Sgd::new(vec![w.clone()], lr)?;
    let mut rng = Rng::new(7);
    let mut order = p.all();
    let mut run = Run::new(method);
    run.push(
        webgrad::no_grad(|| p.loss(dev, &w, &p.all()))?.item()? as f64,
        0.0,
    );
    let mut spent = 0.0;
    for it in 0..iterations {
        if (it * batch).is_multiple_of(p.n) {
            rng.shuffle(&mut order);
        }
        let at = (it * batch) % p.n;
        let rows: Vec<usize> = (0..batch).map(|j| order[(at + j) % p.n]).collect();
        let t = Instant::now();
        opt.zero_grad();
        p.loss(dev, &w, &rows)?.backward()?;
        opt.step()?;
        dev.sync()?;
        spent += t.elapsed().as_secs_f64();
        // The full-data loss for the plot, outside the timed step.
        let full = webgrad::no_grad(|| p.loss(dev, &w, &p.all()))?.item()?;
        run.push(full as f64, spent);
    }
    Ok(run)
}

/// Newton's method: w <- w - (H + damping I)^-1 g with the Hessian from differences of
/// gradients. The small damping keeps the step defined where the loss is flat along a
/// direction (softmax logits shifted together).
fn newton(dev: &Device, p: &Problem, iterations: usize) -> Result<Run> {
    let m = p.d * p.k;
    let mut w = vec![0.0f32; m];
    let mut run = Run::new("Newton");
    run.push(p.loss_and_grad(dev, &w)?.0, 0.0);
    let mut spent = 0.0;
    for _ in 0..iterations {
        let t = Instant::now();
        let (_, g) = p.loss_and_grad(dev, &w)?;
        let h = hessian(dev, p, &w)?;
        let step = solve(h, g.iter().map(|&v| v as f64).collect(), 1e-6)?;
        for (wi, s) in w.iter_mut().zip(step) {
            *wi -= s as f32;
        }
        spent += t.elapsed().as_secs_f64();
        let (loss, _) = p.loss_and_grad(dev, &w)?;
        run.push(loss, spent);
    }
    Ok(run)
}

/// The Hessian at `w`, column j = (g(w + h e_j) - g(w - h e_j)) / 2h, symmetrised.
#[allow(clippy::needless_range_loop)] // matrix code reads best with its indices
fn hessian(dev: &Device, p: &Problem, w: &[f32]) -> Result<Vec<Vec<f64>>> {
    let m = w.len();
    let step = 1e-2f32;
    let mut h = vec![vec![0.0f64; m]; m];
    for j in 0..m {
        let mut plus = w.to_vec();
        let mut minus = w.to_vec();
        plus[j] += step;
        minus[j] -= step;
        let (_, gp) = p.loss_and_grad(dev, &plus)?;
        let (_, gm) = p.loss_and_grad(dev, &minus)?;
        for i in 0..m {
            h[i][j] = (gp[i] as f64 - gm[i] as f64) / (2.0 * step as f64);
        }
    }
    for i in 0..m {
        for j in 0..i {
            let s = 0.5 * (h[i][j] + h[j][i]);
            h[i][j] = s;
            h[j][i] = s;
        }
    }
    Ok(h)
}

/// Solves (a + damping I) x = b by Gaussian elimination with partial pivoting.
#[allow(clippy::needless_range_loop)] // matrix code reads best with its indices
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>, damping: f64) -> Result<Vec<f64>> {
    let m = b.len();
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += damping;
    }
    for col in 0..m {
        let pivot = (col..m)
            .max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))
            .expect("a non-empty system");
        if a[pivot][col].abs() < 1e-12 {
            return Err(Error::Invalid("Newton: the Hessian is singular".into()));
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for r in col + 1..m {
            let f = a[r][col] / a[col][col];
            for c in col..m {
                a[r][c] -= f * a[col][c];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; m];
    for r in (0..m).rev() {
        let tail: f64 = (r + 1..m).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - tail) / a[r][r];
    }
    Ok(x)
}

impl Run {
    fn new(method: &'static str) -> Run {
        Run {
            method,
            losses: Vec::new(),
            seconds: Vec::new(),
        }
    }

    fn push(&mut self, loss: f64, seconds: f64) {
        self.losses.push(loss);
        self.seconds.push(seconds);
    }

    /// The first iteration (1-based) whose loss is within `tol` of `best`.
    fn iterations_to(&self, best: f64, tol: f64) -> Option<usize> {
        self.losses
            .iter()
            .position(|&l| l <= best + tol)
            .map(|i| i + 1)
    }
}

/// The four methods on one problem.
fn fit(dev: &Device, p: &Problem, iterations: usize) -> Result<Vec<Run>> {
    let lr = match p.loss {
        Loss::SquaredError => 0.1,
        Loss::Logistic | Loss::CrossEntropy => 0.5,
    };
    Ok(vec![
        descend(dev, p, "stochastic GD", 1, lr * 0.2, iterations)?,
        descend(dev, p, "minibatch GD (16)", 16, lr, iterations)?,
        descend(dev, p, "batch GD", p.n, lr, iterations)?,
        newton(dev, p, 8)?,
    ])
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "gradient_descent.png".into());
    if let Err(e) = run(&out) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(out: &str) -> Result<()> {
    let dev = Device::new()?;
    let mut results = Vec::new();
    for loss in [Loss::SquaredError, Loss::Logistic, Loss::CrossEntropy] {
        let p = Problem::new(loss, 240, 1);
        // A short untimed run first: the first dispatch of each kernel compiles its pipeline.
        fit(&dev, &p, 2)?;
        let runs = fit(&dev, &p, 150)?;
        let best = runs
            .iter()
            .flat_map(|r| r.losses.iter().copied())
            .fold(f64::INFINITY, f64::min);
        println!("{}: lowest loss {best:.5}", p.name);
        for r in &runs {
            let reached = r
                .iterations_to(best, 1e-3)
                .map_or("not within 1e-3 in this run".into(), |i| {
                    format!("within 1e-3 after {i} iterations")
                });
            println!(
                "  {:<18} final {:.5}  {reached}  ({:.3} s)",
                r.method,
                r.losses.last().copied().unwrap_or(f64::NAN),
                r.seconds.last().copied().unwrap_or(0.0)
            );
        }
        results.push((p.name, runs));
    }
    match plot(out, &results) {
        Ok(()) => println!("plot: {out}"),
        Err(e) => eprintln!("warning: could not draw {out}: {e}"),
    }
    Ok(())
}

type Results = [(&'static str, Vec<Run>)];

/// One row per problem: the loss against iterations (left) and against seconds (right).
fn plot(path: &str, results: &Results) -> Result<()> {
    use plotters::prelude::*;
    let height = 300 * results.len();
    figures::write_chart(
        std::path::Path::new(path),
        1000,
        height,
        |root, labelled| {
            root.fill(&WHITE)?;
            let colors = [RED, BLUE, GREEN, BLACK];
            for ((name, runs), row) in results.iter().zip(root.split_evenly((results.len(), 1))) {
                let (left, right) = row.split_horizontally(500);
                let max_loss = runs
                    .iter()
                    .flat_map(|r| r.losses.iter().copied())
                    .fold(0.0, f64::max);
                let iterations = runs.iter().map(|r| r.losses.len()).max().unwrap_or(1) as f64;
                let seconds = runs
                    .iter()
                    .filter_map(|r| r.seconds.last().copied())
                    .fold(1e-3, f64::max);
                for (area, by_time) in [(&left, false), (&right, true)] {
                    let x_max = if by_time { seconds } else { iterations };
                    let mut chart = figures::chart_on(area, name, labelled)
                        .build_cartesian_2d(0.0..x_max, 0.0..max_loss * 1.05)?;
                    let mut mesh = chart.configure_mesh();
                    mesh.light_line_style(WHITE);
                    if labelled {
                        mesh.x_desc(if by_time { "seconds" } else { "iterations" })
                            .y_desc("loss");
                    }
                    mesh.draw()?;
                    for (r, color) in runs.iter().zip(colors) {
                        let points = r.losses.iter().enumerate().map(|(i, &l)| {
                            let x = if by_time {
                                r.seconds[i]
                            } else {
                                i as f64 + 1.0
                            };
                            (x, l)
                        });
                        chart
                            .draw_series(LineSeries::new(points, color))?
                            .label(r.method)
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 20, y)], color)
                            });
                    }
                    if labelled {
                        chart
                            .configure_series_labels()
                            .border_style(BLACK)
                            .background_style(WHITE)
                            .draw()?;
                    }
                }
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newton_converges_in_fewer_iterations_than_batch_gradient_descent() {
        let dev = Device::new().expect("tests need a wgpu adapter");
        for loss in [Loss::Logistic, Loss::CrossEntropy] {
            let p = Problem::new(loss, 120, 3);
            let batch = descend(&dev, &p, "batch GD", p.n, 0.5, 60).unwrap();
            let newton = newton(&dev, &p, 8).unwrap();
            let best = newton.losses.iter().copied().fold(f64::INFINITY, f64::min);
            let newton_its = newton.iterations_to(best, 1e-4).unwrap();
            assert!(newton_its <= 8, "{loss:?}: Newton took {newton_its}");
            // Batch gradient descent is still above Newton's tolerance when Newton is done.
            let batch_its = batch.iterations_to(best, 1e-4).unwrap_or(usize::MAX);
            assert!(
                newton_its < batch_its,
                "{loss:?}: {newton_its} vs {batch_its}"
            );
            // And every method descends.
            assert!(batch.losses.last().unwrap() < &batch.losses[0]);
        }
    }

    #[test]
    fn newton_solves_least_squares_in_one_step() {
        let dev = Device::new().expect("tests need a wgpu adapter");
        let p = Problem::new(Loss::SquaredError, 100, 4);
        let run = newton(&dev, &p, 2).unwrap();
        // The loss is quadratic: one Newton step (losses[1]) reaches the minimum.
        let l = &run.losses;
        assert!((l[1] - l[2]).abs() < 1e-5, "{l:?}");
        // The noise level is 0.1: the residual mean square is about 0.01.
        assert!(l[1] < 0.02 && l[0] > 1.0, "{l:?}");
    }
}
