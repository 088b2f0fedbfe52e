//! Figures written as PNG, shared by the examples: labelled grids of gray images that show what
//! a network computes (`kernels`, `lenet5 --save-figures`), and plotters charts (`lenet5`'s
//! curves, `gradient_descent`'s losses). A grid's pixels are placed by hand and written with
//! `png`, so its geometry is exact (the tests read pixels back); plotters only draws the text.
//! plotters draws text with a system font: where there is none (a bare server), grids and
//! charts are written without their text, with a warning, rather than failing or left blank.
#![allow(dead_code)]

use std::path::Path;

use webgrad::{Error, Result};

/// One labelled panel: an image as gray levels, with optional text marks on its pixels.
pub struct Panel {
    pub label: String,
    pub h: usize,
    pub w: usize,
    pub gray: Vec<u8>,
    /// Text drawn at the centre of panel pixel (row, col), e.g. a count.
    pub marks: Vec<(usize, usize, String)>,
}

impl Panel {
    /// Values mapped from their own [min, max] to gray levels [0, 255] (all 0 when constant).
    pub fn scaled(label: impl Into<String>, h: usize, w: usize, v: &[f32]) -> Panel {
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Panel::in_range(label, h, w, v, lo, hi)
    }

    /// Values mapped from [lo, hi] to gray levels [0, 255], clamped (all 0 when lo >= hi).
    pub fn in_range(
        label: impl Into<String>,
        h: usize,
        w: usize,
        v: &[f32],
        lo: f32,
        hi: f32,
    ) -> Panel {
        let range = hi - lo;
        let gray = v
            .iter()
            .map(|x| {
                if range > 0.0 {
                    ((x - lo) / range * 255.0).clamp(0.0, 255.0).round() as u8
                } else {
                    0
                }
            })
            .collect();
        Panel {
            label: label.into(),
            h,
            w,
            gray,
            marks: Vec::new(),
        }
    }
}

/// Rows of panels on a white background, each panel pixel a scale x scale square.
pub struct Figure {
    pub rows: Vec<Vec<Panel>>,
    pub scale: usize,
}

/// Pixel geometry: a label band above each cell, a gap around cells, and cells at least this
/// wide so that labels fit.
pub const LABEL: usize = 20;
pub const GAP: usize = 10;
pub const MIN_CELL_WIDTH: usize = 160;

impl Figure {
    /// A scale at which the largest panel side takes about `target` pixels (at least 1).
    pub fn scale_for(rows: &[Vec<Panel>], target: usize) -> usize {
        let side = rows
            .iter()
            .flatten()
            .map(|p| p.h.max(p.w))
            .max()
            .unwrap_or(1);
        (target / side.max(1)).max(1)
    }

    /// The cell size (height, width): the largest panel, scaled.
    pub fn cell(&self) -> (usize, usize) {
        let panels = self.rows.iter().flatten();
        let h = panels.clone().map(|p| p.h).max().unwrap_or(0) * self.scale;
        let w = panels.map(|p| p.w).max().unwrap_or(0) * self.scale;
        (h.max(1), w.max(MIN_CELL_WIDTH))
    }

    /// The figure's size in pixels (height, width).
    pub fn size(&self) -> (usize, usize) {
        let (ch, cw) = self.cell();
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        (
            GAP + self.rows.len() * (LABEL + ch + GAP),
            GAP + cols * (cw + GAP),
        )
    }

    /// The top-left pixel (y, x) of panel (row, col)'s image.
    pub fn origin(&self, row: usize, col: usize) -> (usize, usize) {
        let (ch, cw) = self.cell();
        (
            GAP + row * (LABEL + ch + GAP) + LABEL,
            GAP + col * (cw + GAP),
        )
    }

    /// Writes the figure as an RGB PNG.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let (height, width) = self.size();
        let mut rgb = vec![255u8; height * width * 3];
        for (r, row) in self.rows.iter().enumerate() {
            for (c, panel) in row.iter().enumerate() {
                let (y0, x0) = self.origin(r, c);
                for y in 0..panel.h * self.scale {
                    for x in 0..panel.w * self.scale {
                        let g = panel.gray[(y / self.scale) * panel.w + x / self.scale];
                        let i = ((y0 + y) * width + x0 + x) * 3;
                        rgb[i..i + 3].copy_from_slice(&[g, g, g]);
                    }
                }
            }
        }
        if let Err(e) = self.draw_text(&mut rgb, width, height) {
            eprintln!("warning: {}: labels not drawn ({e})", path.display());
        }
        write_rgb_png(path, &rgb, width, height)
    }

    fn draw_text(
        &self,
        rgb: &mut [u8],
        width: usize,
        height: usize,
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        use plotters::prelude::*;
        let area =
            BitMapBackend::with_buffer(rgb, (width as u32, height as u32)).into_drawing_area();
        let label = ("sans-serif", 14).into_font().color(&BLACK);
        let mark = ("sans-serif", 12).into_font().color(&RED);
        let half = self.scale as i32 / 2;
        for (r, row) in self.rows.iter().enumerate() {
            for (c, panel) in row.iter().enumerate() {
                let (y0, x0) = self.origin(r, c);
                let at = (x0 as i32, (y0 - LABEL + 3) as i32);
                area.draw(&Text::new(panel.label.clone(), at, label.clone()))?;
                for (py, px, text) in &panel.marks {
                    let y = (y0 + py * self.scale) as i32 + half - 6;
                    let x = (x0 + px * self.scale) as i32 + half - 3 * text.len() as i32;
                    area.draw(&Text::new(text.clone(), (x, y), mark.clone()))?;
                }
            }
        }
        area.present()?;
        Ok(())
    }
}

/// The area a chart is drawn on, and what drawing on it returns.
pub type ChartArea<'a> =
    plotters::drawing::DrawingArea<plotters::prelude::BitMapBackend<'a>, plotters::coord::Shift>;
pub type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws a `width` x `height` chart with `draw(area, labelled)` and writes it as an RGB PNG.
/// When drawing with text fails (no font), the chart is drawn again with `labelled` false,
/// which must draw no text: no captions, axis labels or legends.
pub fn write_chart(
    path: &Path,
    width: usize,
    height: usize,
    draw: impl Fn(&ChartArea, bool) -> DrawResult,
) -> Result<()> {
    use plotters::prelude::*;
    let render = |labelled: bool| -> std::result::Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut rgb = vec![255u8; width * height * 3];
        {
            let area = BitMapBackend::with_buffer(&mut rgb, (width as u32, height as u32))
                .into_drawing_area();
            draw(&area, labelled)?;
            area.present()?;
        }
        Ok(rgb)
    };
    let rgb = render(true).or_else(|e| {
        eprintln!("warning: {}: drawn without text ({e})", path.display());
        render(false).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
    })?;
    write_rgb_png(path, &rgb, width, height)
}

/// A chart builder on `area` with a caption and room for axis labels when `labelled`, and with
/// neither otherwise (plotters then draws no text for the axes).
pub fn chart_on<'a, 'b>(
    area: &'a ChartArea<'b>,
    caption: &str,
    labelled: bool,
) -> plotters::chart::ChartBuilder<'a, 'b, plotters::prelude::BitMapBackend<'b>> {
    let mut builder = plotters::chart::ChartBuilder::on(area);
    builder.margin(10);
    if labelled {
        builder
            .caption(caption, ("sans-serif", 20))
            .x_label_area_size(30)
            .y_label_area_size(50);
    }
    builder
}

fn write_rgb_png(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<()> {
    let io = |e: &dyn std::fmt::Display| Error::Io(format!("{}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(|e| io(&e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    let mut w = enc.write_header().map_err(|e| io(&e))?;
    w.write_image_data(rgb).map_err(|e| io(&e))
}

/// Decodes an RGB PNG written by [`Figure::write_png`]: (height, width, pixels).
pub fn read_rgb_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let file = std::fs::File::open(path).expect("figure written");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("one frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.height as usize, info.width as usize, buf)
}
