//! The accumulators of conv_forward, conv_backward_input(_pairs) and conv_relu_pool_forward,
//! generated: 8 channels x 4 image quads, `acc{channel}{quad}`, kept in separately named
//! module-scope variables (llvmpipe keeps a dynamically indexed private array in memory), and
//! the helpers that add a product into all of them: one tap (`fma16`), one tap of two channel
//! sets (`fma16x2`), and `taps` consecutive taps of a kernel row whose window slides along
//! (`fma16x4`, `fma16x5`). Each repeated line is written once here, with the loops over
//! channels and quads that unroll it; channels past the pipeline's CH are skipped by `if`
//! on that override constant, which the shader compiler resolves.

/// Channels and image quads one invocation accumulates.
const CHANNELS: usize = 8;
const QUADS: usize = 4;

/// Channel c's weight lane in a pair of vec4s named `{w}l` (channels 0-3) and `{w}h` (4-7).
fn lane(w: &str, c: usize) -> String {
    let half = if c < 4 { 'l' } else { 'h' };
    format!("{w}{half}.{}", ["x", "y", "z", "w"][c % 4])
}

/// `line(c, j)` for every channel's four quads: channel 0 always, the others behind
/// `if (CH > c)`.
fn per_channel(line: impl Fn(usize, usize) -> String) -> String {
    let mut out = String::new();
    for c in 0..CHANNELS {
        let quads: String = (0..QUADS)
            .map(|j| {
                let pad = if c == 0 { "    " } else { "        " };
                format!("{pad}{}\n", line(c, j))
            })
            .collect();
        out += &match c {
            0 => quads,
            _ => format!("    if (CH > {c}u) {{\n{quads}    }}\n"),
        };
    }
    out
}

/// `fma16x{taps}`: taps 0 .. taps - 1 of a kernel row (weights `w{i}l`, `w{i}h`); quads 0 and
/// 1 take the window's top row `t` at columns i and i + 1, quads 2 and 3 its bottom row `b`.
fn fma_row(taps: usize) -> String {
    let sum = |c: usize, row: &str, shift: usize| -> String {
        (0..taps)
            .map(|i| format!(" + {} * {row}{}", lane(&format!("w{i}"), c), i + shift))
            .collect()
    };
    let weights: Vec<String> = (0..taps)
        .map(|i| format!("w{i}l: vec4<f32>, w{i}h: vec4<f32>"))
        .collect();
    let weight_lines: Vec<String> = weights.chunks(2).map(|p| p.join(", ")).collect();
    let window = |row: &str| -> String {
        (0..=taps)
            .map(|i| format!("{row}{i}: vec4<f32>"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let indent = " ".repeat(format!("fn fma16x{taps}(").len());
    let mut out = format!(
        "fn fma16x{taps}({}",
        weight_lines.join(&format!(",\n{indent}"))
    );
    out += &format!(",\n{indent}{},\n{indent}{}) {{\n", window("t"), window("b"));
    out += &per_channel(|c, j| {
        let (row, shift) = [("t", 0), ("t", 1), ("b", 0), ("b", 1)][j];
        format!("acc{c}{j} = acc{c}{j}{};", sum(c, row, shift))
    });
    out + "}\n"
}

/// `fn {name}({params})` calling `call(c)` for each channel c: channel 0 always, the others
/// behind `if (CH > c)`.
fn for_each_channel(name: &str, params: &str, call: impl Fn(usize) -> String) -> String {
    let mut out = format!("fn {name}({params}) {{\n    {}\n", call(0));
    for c in 1..CHANNELS {
        out += &format!("    if (CH > {c}u) {{\n        {}\n    }}\n", call(c));
    }
    out + "}\n"
}

/// Channel c's four accumulators as arguments.
fn quads_of(c: usize) -> String {
    (0..QUADS)
        .map(|j| format!("acc{c}{j}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The helpers storing every channel's accumulators: store16 (conv_forward,
/// conv_backward_input), store_pairs (conv_backward_input_pairs), store_pooled_all
/// (conv_relu_pool_forward).
pub(crate) fn store_helpers() -> String {
    let store16 = for_each_channel(
        "store16",
        "nb: u32, first: u32, count: u32, ch0: u32, chans: u32, pixels: u32, pix: u32",
        |c| {
            format!(
                "store_channel(nb, first + {c}u, count, ch0 + {c}u, chans, pixels, pix, {});",
                quads_of(c)
            )
        },
    );
    let pairs = for_each_channel(
        "store_pairs",
        "nb2: u32, first: u32, count: u32, ch0: u32, pix: u32, second: bool",
        |c| {
            format!(
                "store_pair(nb2, first + {c}u, count, ch0 + {c}u, pix, second, {});",
                quads_of(c)
            )
        },
    );
    let pooled = for_each_channel(
        "store_pooled_all",
        "q: u32, first: u32, count: u32, ch0: u32, pp: u32",
        |c| {
            format!(
                "store_pooled(q, first + {c}u, count, ch0 + {c}u, pp, {});",
                quads_of(c)
            )
        },
    );
    [store16, pairs, pooled].join("\n")
}

/// The accumulator declarations.
pub(crate) fn accumulators() -> String {
    (0..CHANNELS)
        .flat_map(|c| (0..QUADS).map(move |j| format!("var<private> acc{c}{j}: vec4<f32>;\n")))
        .collect()
}

/// The helpers adding products into the accumulators.
pub(crate) fn fma_helpers() -> String {
    let mut out = String::from("fn fma16(wl: vec4<f32>, wh: vec4<f32>, x: Quads) {\n");
    out += &per_channel(|c, j| format!("acc{c}{j} += {} * x.q{j};", lane("w", c)));
    out += "}\n\nfn fma16x2(wl: vec4<f32>, wh: vec4<f32>, x: Quads, vl: vec4<f32>, vh: vec4<f32>, y: Quads) {\n";
    out += &per_channel(|c, j| {
        format!(
            "acc{c}{j} = acc{c}{j} + {} * x.q{j} + {} * y.q{j};",
            lane("w", c),
            lane("v", c)
        )
    });
    out + "}\n\n" + &fma_row(4) + "\n" + &fma_row(5)
}

#[cfg(test)]
mod tests {
    /// 32 accumulators; every helper updates each channel's four quads once, channels past 0
    /// behind their CH guard (their behaviour is tested through conv2d in tests/conv.rs).
    #[test]
    fn declares_and_updates_every_accumulator() {
        assert_eq!(super::accumulators().lines().count(), 32);
        let helpers = super::fma_helpers();
        for c in 0..8 {
            for j in 0..4 {
                let target = format!("acc{c}{j} ");
                let updates = helpers
                    .lines()
                    .filter(|l| l.trim_start().starts_with(&target))
                    .count();
                assert_eq!(
                    updates, 4,
                    "acc{c}{j}: one line in each of the four helpers"
                );
            }
        }
        assert_eq!(helpers.matches("if (CH > 7u)").count(), 4);
        assert!(helpers.contains("fn fma16x5(") && helpers.contains("w4h.w * b5;"));
        let stores = super::store_helpers();
        for f in ["fn store16(", "fn store_pairs(", "fn store_pooled_all("] {
            assert!(stores.contains(f), "{f}");
        }
        assert_eq!(
            stores.matches("acc73);").count(),
            3,
            "channel 7 stored by each"
        );
    }
}
