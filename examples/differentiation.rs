//! One derivative three ways, as in the course's comparison: by hand, by central finite
//! differences, and by webgrad's automatic differentiation.
//!
//! f(x) = tanh(x) x^2 + exp(-x), so by hand f'(x) = (1 - tanh^2 x) x^2 + 2 x tanh x - exp(-x).
//! Central differences (f(x + h) - f(x - h)) / 2h have a truncation error that shrinks like h^2
//! and a rounding error that grows like eps / h: the example prints and plots the error against
//! h in float32 (webgrad's forward pass) and float64 (the host), a V on a log-log plot whose
//! bottom sits near eps^(1/3). Autodiff's error is at the level of float32 rounding, for
//! every x, without choosing a step. Last, the gradient of a function of n inputs: differences
//! need 2n evaluations of f, backward needs one pass.
//!
//! `cargo run --release --example differentiation [-- OUT.png]`

use std::time::Instant;

use webgrad::{Device, Result, Tensor};

const X: f64 = 0.7;

/// f in float64 on the host.
fn f64_f(x: f64) -> f64 {
    x.tanh() * x * x + (-x).exp()
}

/// f' by hand.
fn by_hand(x: f64) -> f64 {
    let t = x.tanh();
    (1.0 - t * t) * x * x + 2.0 * x * t - (-x).exp()
}

/// f on the GPU: tanh(x) x^2 + exp(-x), elementwise.
fn webgrad_f(x: &Tensor) -> Result<Tensor> {
    x.tanh()?.mul(x)?.mul(x)?.add(&x.neg()?.exp()?)
}

/// f(x) evaluated by webgrad (float32).
fn f32_f(dev: &Device, x: f64) -> Result<f64> {
    let t = Tensor::from_vec(dev, vec![x as f32], &[1])?;
    Ok(webgrad_f(&t)?.item()? as f64)
}

/// f'(x) by webgrad's backward.
fn autodiff(dev: &Device, x: f64) -> Result<f64> {
    let t = Tensor::from_vec(dev, vec![x as f32], &[1])?.requires_grad();
    webgrad_f(&t)?.backward()?;
    Ok(t.grad().expect("x requires grad").item()? as f64)
}

/// Central difference with step h, of an f evaluated by `eval`.
fn central(eval: &mut dyn FnMut(f64) -> Result<f64>, x: f64, h: f64) -> Result<f64> {
    Ok((eval(x + h)? - eval(x - h)?) / (2.0 * h))
}

/// The steps 10^0, 10^-0.5, ..., 10^-12.
fn steps() -> Vec<f64> {
    (0..=24).map(|i| 10f64.powf(-0.5 * i as f64)).collect()
}

/// |central difference - exact| for every step, in float32 (webgrad) and float64 (host).
fn difference_errors(dev: &Device, x: f64) -> Result<Vec<(f64, f64, f64)>> {
    let exact = by_hand(x);
    let mut out = Vec::new();
    for h in steps() {
        let e32 = (central(&mut |v| f32_f(dev, v), x, h)? - exact).abs();
        let e64 = (central(&mut |v| Ok(f64_f(v)), x, h)? - exact).abs();
        out.push((h, e32, e64));
    }
    Ok(out)
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "differentiation.png".into());
    if let Err(e) = run(&out) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(out: &str) -> Result<()> {
    let dev = Device::new()?;
    let exact = by_hand(X);
    println!("f(x) = tanh(x) x^2 + exp(-x) at x = {X}");
    println!("  by hand:   f'(x) = {exact:.12}");
    let ad = autodiff(&dev, X)?;
    println!(
        "  autodiff:  f'(x) = {ad:.12}  (error {:.1e})",
        (ad - exact).abs()
    );
    println!("  central differences (error against the hand-derived value):");
    println!("      h        float32 (webgrad)   float64 (host)");
    let errors = difference_errors(&dev, X)?;
    for (h, e32, e64) in &errors {
        println!("  {h:9.1e}   {e32:14.3e}   {e64:14.3e}");
    }
    let best = |pick: fn(&(f64, f64, f64)) -> f64| {
        errors
            .iter()
            .min_by(|a, b| pick(a).total_cmp(&pick(b)))
            .map(|e| (e.0, pick(e)))
            .expect("steps")
    };
    let (h32, e32) = best(|e| e.1);
    let (h64, e64) = best(|e| e.2);
    println!("  best step: float32 h = {h32:.1e} (error {e32:.1e}), float64 h = {h64:.1e} (error {e64:.1e})");

    // A gradient of n inputs: 2n evaluations against one backward pass.
    let n = 256;
    let xs: Vec<f32> = (0..n).map(|i| -2.0 + 4.0 * i as f32 / n as f32).collect();
    let t = Instant::now();
    let w = Tensor::from_slice(&dev, &xs, &[n])?.requires_grad();
    webgrad_f(&w)?.sum()?.backward()?;
    let grad = w.grad().expect("w requires grad").to_vec()?;
    let t_ad = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let h = 1e-2f32;
    let mut max_err = 0.0f64;
    for i in 0..n {
        let at = |d: f32| -> Result<f64> {
            let mut v = xs.clone();
            v[i] += d;
            Ok(webgrad_f(&Tensor::from_vec(&dev, v, &[n])?)?
                .sum()?
                .item()? as f64)
        };
        let fd = (at(h)? - at(-h)?) / (2.0 * h as f64);
        max_err = max_err.max((fd - grad[i] as f64).abs());
    }
    let t_fd = t.elapsed().as_secs_f64();
    println!(
        "gradient of sum f(x_i) over {n} inputs: backward {:.1} ms (one pass); central \
         differences {:.0} ms ({} evaluations), largest difference {max_err:.1e}",
        t_ad * 1e3,
        t_fd * 1e3,
        2 * n
    );

    match plot(out, &errors, (ad - exact).abs()) {
        Ok(()) => println!("plot: {out}"),
        Err(e) => eprintln!("warning: could not draw {out}: {e}"),
    }
    Ok(())
}

/// Error against step on log-log axes, with autodiff's error as a horizontal line.
fn plot(
    path: &str,
    errors: &[(f64, f64, f64)],
    autodiff_error: f64,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = BitMapBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let floor = 1e-17;
    let lg = |v: f64| v.max(floor).log10();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "central differences: error against step",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(-12.0..0.0, -17.0..1.0)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("log10 step h")
        .y_desc("log10 |error|")
        .draw()?;
    let series = [
        (
            "float32 (webgrad forward)",
            RED,
            errors
                .iter()
                .map(|e| (e.0.log10(), lg(e.1)))
                .collect::<Vec<_>>(),
        ),
        (
            "float64 (host)",
            BLUE,
            errors.iter().map(|e| (e.0.log10(), lg(e.2))).collect(),
        ),
        (
            "autodiff (webgrad backward)",
            GREEN,
            vec![(-12.0, lg(autodiff_error)), (0.0, lg(autodiff_error))],
        ),
    ];
    for (label, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autodiff_matches_the_hand_derivative_to_float32_rounding() {
        let dev = Device::new().expect("tests need a wgpu adapter");
        for x in [-2.0, -0.3, 0.0, 0.7, 1.9] {
            let (ad, exact) = (autodiff(&dev, x).unwrap(), by_hand(x));
            assert!(
                (ad - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                "x {x}: {ad} vs {exact}"
            );
        }
    }

    #[test]
    fn difference_errors_fall_like_h_squared_then_rise_with_rounding() {
        let dev = Device::new().expect("tests need a wgpu adapter");
        let errors = difference_errors(&dev, X).unwrap();
        let at = |h: f64| {
            *errors
                .iter()
                .find(|e| (e.0.log10() - h.log10()).abs() < 1e-9)
                .unwrap()
        };
        // Truncation: a step 10x smaller makes the error about 100x smaller (float64).
        let ratio = at(1e-1).2 / at(1e-2).2;
        assert!((50.0..200.0).contains(&ratio), "h^2 ratio {ratio}");
        // Rounding: float64 is best near 1e-5, and worse again at 1e-10.
        assert!(at(1e-10).2 > 10.0 * at(1e-5).2);
        // Float32 is better at 1e-2 than at 1e-1 (truncation) and at 1e-5 (rounding).
        assert!(
            at(1e-2).1 < at(1e-1).1 && at(1e-2).1 < at(1e-5).1,
            "{errors:?}"
        );
        // Autodiff beats the best float32 difference.
        let best32 = errors.iter().map(|e| e.1).fold(f64::INFINITY, f64::min);
        assert!((autodiff(&dev, X).unwrap() - by_hand(X)).abs() < best32);
    }
}
