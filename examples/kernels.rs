//! Convolution kernels at work: a real digit (and any PNG named on the command line) convolved
//! through webgrad's `conv2d` with the 3 x 3 Gaussian blur and the Sobel kernels S_x and S_y,
//! without padding, with padding 1, and with padding 1 and stride 2, written side by side as
//! one labelled PNG per image. It prints each output size from the formula
//! W' = floor((W + 2P - D(K - 1) - 1) / S) + 1 and the receptive fields of a few stacks.
//!
//! `cargo run --release --example kernels [-- [--out DIR] [IMAGE.png ...]]`

#[path = "common/figures.rs"]
mod figures;

use std::path::{Path, PathBuf};

use figures::{Figure, Panel};

use webgrad::data::Mnist;
use webgrad::{conv2d_output_size, receptive_field, Conv2dParams, Device, Error, Result, Tensor};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-subset");

/// The kernels, row-major 3 x 3.
const KERNELS: [(&str, [f32; 9]); 3] = [
    (
        "Gaussian blur",
        [
            1.0 / 16.0,
            2.0 / 16.0,
            1.0 / 16.0,
            2.0 / 16.0,
            4.0 / 16.0,
            2.0 / 16.0,
            1.0 / 16.0,
            2.0 / 16.0,
            1.0 / 16.0,
        ],
    ),
    (
        "Sobel S_x",
        [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0],
    ),
    (
        "Sobel S_y",
        [-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0],
    ),
];

/// (padding, stride) of each row of the figure.
const SETTINGS: [(usize, usize); 3] = [(0, 1), (1, 1), (1, 2)];

/// The largest PNG side accepted (checked from the header before decoding).
const MAX_SIDE: u32 = 2048;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut out = PathBuf::from(".");
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => {
                out = args
                    .next()
                    .ok_or_else(|| Error::Invalid("--out needs a folder".into()))?
                    .into()
            }
            "-h" | "--help" => {
                println!("usage: kernels [--out DIR] [IMAGE.png ...]");
                return Ok(());
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    let dev = Device::new()?;

    // The first 7 of the bundled test digits: its strokes run both ways, for both Sobels.
    let digits = Mnist::load(BUNDLED)?.test;
    let seven = digits.labels.iter().position(|&l| l == 7).unwrap_or(0);
    let mut images = vec![(
        "digit".to_string(),
        Image {
            h: digits.rows,
            w: digits.cols,
            pixels: digits.image(seven).to_vec(),
        },
    )];
    for f in &files {
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned());
        images.push((stem.unwrap_or_else(|| "image".into()), read_gray_png(f)?));
    }

    for (name, image) in &images {
        println!("{name}: {} x {} pixels", image.h, image.w);
        for (p, s) in SETTINGS {
            let ho = conv2d_output_size(image.h, 3, s, p, 1)?;
            let wo = conv2d_output_size(image.w, 3, s, p, 1)?;
            println!(
                "  K=3 P={p} S={s}: H' = floor(({} + 2*{p} - 1*(3-1) - 1) / {s}) + 1 = {ho}, W' = {wo}",
                image.h
            );
        }
        let figure = figure(&dev, image)?;
        let path = out.join(format!("kernels_{name}.png"));
        figure.write_png(&path)?;
        println!("  wrote {}", path.display());
    }

    println!("receptive fields (kernel, stride per layer):");
    let stacks: [(&str, &[(usize, usize)]); 3] = [
        ("two 3x3 convs", &[(3, 1), (3, 1)]),
        ("three 3x3 convs", &[(3, 1), (3, 1), (3, 1)]),
        (
            "LeNet-5: conv5, pool2, conv5, pool2",
            &[(5, 1), (2, 2), (5, 1), (2, 2)],
        ),
    ];
    for (name, layers) in stacks {
        println!("  {name}: {} pixels", receptive_field(layers));
    }
    Ok(())
}

/// A gray image, values in [0, 1] for inputs.
#[derive(Clone, Debug)]
struct Image {
    h: usize,
    w: usize,
    pixels: Vec<f32>,
}

/// Convolves `image` with the three kernels (one conv2d with three output channels) under each
/// setting.
fn figure(dev: &Device, image: &Image) -> Result<Figure> {
    let x = Tensor::from_slice(dev, &image.pixels, &[1, 1, image.h, image.w])?;
    let weights: Vec<f32> = KERNELS
        .iter()
        .flat_map(|(_, k)| k.iter().copied())
        .collect();
    let w = Tensor::from_vec(dev, weights, &[KERNELS.len(), 1, 3, 3])?;
    let mut rows = Vec::new();
    for (p, s) in SETTINGS {
        let y = x.conv2d(&w, None, Conv2dParams::default().padding(p).stride(s))?;
        let (ho, wo) = (y.shape()[2], y.shape()[3]);
        let values = y.to_vec()?;
        let mut row = vec![Panel::scaled(
            format!("input, P={p} S={s}"),
            image.h,
            image.w,
            &image.pixels,
        )];
        for (k, (name, _)) in KERNELS.iter().enumerate() {
            let plane = &values[k * ho * wo..(k + 1) * ho * wo];
            row.push(Panel::scaled(format!("{name} {ho}x{wo}"), ho, wo, plane));
        }
        rows.push(row);
    }
    let scale = Figure::scale_for(&rows, 168);
    Ok(Figure { rows, scale })
}

/// A PNG as gray levels in [0, 1]; its size is checked from the header before decoding.
fn read_gray_png(path: &Path) -> Result<Image> {
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w < 3 || h < 3 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::Io(format!(
            "{name}: {w}x{h} pixels; the example takes 3 to {MAX_SIDE} pixels a side"
        )));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let ch = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(ch)
        .map(|p| {
            let color = ch.min(3);
            p[..color].iter().map(|&v| v as f32).sum::<f32>() / color as f32 / 255.0
        })
        .collect();
    Ok(Image {
        h: h as usize,
        w: w as usize,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 x 3 cross-correlation (what conv2d computes) in float64 on the CPU.
    fn cpu_conv(img: &Image, k: &[f32; 9], p: usize, s: usize) -> (usize, usize, Vec<f32>) {
        let ho = (img.h + 2 * p - 3) / s + 1;
        let wo = (img.w + 2 * p - 3) / s + 1;
        let mut out = Vec::new();
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = 0.0f64;
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (y, x) = (
                            (oy * s + ky) as isize - p as isize,
                            (ox * s + kx) as isize - p as isize,
                        );
                        if y >= 0 && x >= 0 && (y as usize) < img.h && (x as usize) < img.w {
                            acc += k[ky * 3 + kx] as f64
                                * img.pixels[y as usize * img.w + x as usize] as f64;
                        }
                    }
                }
                out.push(acc as f32);
            }
        }
        (ho, wo, out)
    }

    #[test]
    fn the_figure_holds_the_cpu_convolutions_at_the_expected_size() {
        let dev = Device::new().expect("tests need a wgpu adapter");
        let (h, w) = (9, 7);
        let mut rng = webgrad::Rng::new(5);
        let image = Image {
            h,
            w,
            pixels: (0..h * w).map(|_| rng.uniform()).collect(),
        };
        let fig = figure(&dev, &image).unwrap();
        let dir = std::env::temp_dir().join(format!("webgrad-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kernels_test.png");
        fig.write_png(&path).unwrap();

        let (got_h, got_w, buf) = figures::read_rgb_png(&path);
        // scale 168 / 9 = 18; cells 162 x 160 (the label width floor); 3 rows of 4 panels.
        assert_eq!(fig.scale, 18);
        let (height, width) = (10 + 3 * (20 + 162 + 10), 10 + 4 * (160 + 10));
        assert_eq!((got_h, got_w), (height, width));

        for (r, (p, s)) in SETTINGS.into_iter().enumerate() {
            for (c, (_, k)) in KERNELS.iter().enumerate() {
                let (ho, wo, want) = cpu_conv(&image, k, p, s);
                let want = Panel::scaled("", ho, wo, &want);
                let (y0, x0) = fig.origin(r, c + 1);
                for oy in 0..ho {
                    for ox in 0..wo {
                        // The centre of the output pixel's square.
                        let (y, x) = (y0 + oy * 18 + 9, x0 + ox * 18 + 9);
                        let got = buf[(y * width + x) * 3] as i32;
                        let expected = want.gray[oy * wo + ox] as i32;
                        assert!(
                            (got - expected).abs() <= 1,
                            "P={p} S={s} kernel {c} pixel ({oy}, {ox}): {got} vs {expected}"
                        );
                    }
                }
                // Past the output's edge the cell is background.
                let past = ((y0 + ho * 18) * width + x0) * 3;
                assert_eq!(&buf[past..past + 3], &[255, 255, 255]);
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
