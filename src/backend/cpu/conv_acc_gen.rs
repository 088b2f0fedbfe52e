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

/// `fma16x{taps}`: taps 0 .. taps - 1 of a kernel row, the weights of tap i at wi + i * k_step
/// (`w{i}l`, `w{i}h`); quads 0 and 1 take the window's top row `t` at columns i and i + 1,
/// quads 2 and 3 its bottom row `b`.
fn fma_taps(taps: usize) -> String {
    let sum = |c: usize, row: &str, shift: usize| -> String {
        (0..taps)
            .map(|i| format!(" + {} * {row}.c{}", lane(&format!("w{i}"), c), i + shift))
            .collect()
    };
    let mut out = format!("fn fma16x{taps}(wi: u32, k_step: u32, t: WindowRow, b: WindowRow) {{\n");
    for i in 0..taps {
        let at = format!("wi + {i}u * k_step");
        out += &format!("    let w{i}l = wq({at});\n    let w{i}h = wq({at} + 1u);\n");
    }
    out += &per_channel(|c, j| {
        let (row, shift) = [("t", 0), ("t", 1), ("b", 0), ("b", 1)][j];
        format!("acc{c}{j} = acc{c}{j}{};", sum(c, row, shift))
    });
    out + "}\n"
}

/// Most taps of a kernel row that conv_relu_pool_forward unrolls (its ROW_SLIDE).
pub(crate) const ROW_TAPS: usize = 7;

/// conv_relu_pool_forward's window rows: `WindowRow` (columns 0 .. ROW_TAPS of one row of the
/// 2 x 2 window's pixels at one kernel row, columns past ROW_SLIDE zero), `window_row` (one
/// row's fetch) and `fma_row` (the products of one kernel row's taps: fma16x5 or fma16x4
/// where they apply, then one fma16 per tap they leave).
pub(crate) fn window_rows() -> String {
    let columns = 0..=ROW_TAPS;
    let mut out = String::from("struct WindowRow {\n");
    out += &columns
        .clone()
        .map(|j| format!("    c{j}: vec4<f32>,\n"))
        .collect::<String>();
    out += "}\n\nfn window_row(plane: u32, ih: i32, iw0: i32, q: u32) -> WindowRow {\n";
    out += "    let dw = i32(p.dw);\n    var r = WindowRow();\n";
    for j in columns {
        let fetch = format!("r.c{j} = pixel_quad(plane, ih, iw0 + {j} * dw, q);");
        out += &match j {
            0 | 1 => format!("    {fetch}\n"),
            _ => format!("    if (ROW_SLIDE > {}u) {{ {fetch} }}\n", j - 1),
        };
    }
    out += "    return r;\n}\n\nfn fma_row(wi: u32, k_step: u32, t: WindowRow, b: WindowRow) {\n";
    out += "    if (ROW_SLIDE == 5u) {\n        fma16x5(wi, k_step, t, b);\n    }\n";
    out +=
        "    if (ROW_SLIDE == 4u || ROW_SLIDE > 5u) {\n        fma16x4(wi, k_step, t, b);\n    }\n";
    for i in 0..ROW_TAPS {
        // Tap i alone: below 4 taps, and the taps after fma16x4's.
        let alone = match i {
            0..=2 => format!("ROW_SLIDE > {i}u && ROW_SLIDE < 4u"),
            3 => continue,
            _ => format!("ROW_SLIDE > {}u", i.max(5)),
        };
        let at = format!("wi + {i}u * k_step");
        let (l, r) = (i, i + 1);
        out += &format!(
            "    if ({alone}) {{\n        fma16(wq({at}), wq({at} + 1u), Quads(t.c{l}, t.c{r}, b.c{l}, b.c{r}));\n    }}\n"
        );
    }
    out + "}\n"
}

/// `fn {name}({params})` calling `call` for each channel `c` below CH with channel 0's four
/// accumulators (`acc00` .. `acc03`), in a loop that then shifts every channel's accumulators
/// down by one: one call site instead of one per channel. SwiftShader compiles every scalar
/// store as a loop over its SIMD lanes, so a store helper inlined 8 times was most of a
/// kernel's compile time there (conv_backward_input_pairs: 1.0-1.4 s against 0.44-0.47 s in
/// the loop). The shift moves named variables; an array indexed by the loop counter would be
/// a per-lane gather on llvmpipe (20% slower conv_relu_pool_forward).
fn for_each_channel(name: &str, params: &str, call: &str) -> String {
    let shift: String = (0..CHANNELS - 1)
        .flat_map(|c| (0..QUADS).map(move |j| format!("        acc{c}{j} = acc{}{j};\n", c + 1)))
        .collect();
    format!(
        "fn {name}({params}) {{\n    for (var c = 0u; c < CH; c++) {{\n        {call}\n{shift}    }}\n}}\n"
    )
}

/// The helpers storing every channel's accumulators: store16 (conv_forward,
/// conv_backward_input), store_pairs (conv_backward_input_pairs), store_pooled_all
/// (conv_relu_pool_forward).
pub(crate) fn store_helpers() -> String {
    let quads = "acc00, acc01, acc02, acc03";
    let store16 = for_each_channel(
        "store16",
        "nb: u32, first: u32, count: u32, ch0: u32, chans: u32, pixels: u32, pix: u32",
        &format!("store_channel(nb, first + c, count, ch0 + c, chans, pixels, pix, {quads});"),
    );
    let pairs = for_each_channel(
        "store_pairs",
        "nb2: u32, first: u32, count: u32, ch0: u32, pix: u32, second: bool",
        &format!("store_pair(nb2, first + c, count, ch0 + c, pix, second, {quads});"),
    );
    let pooled = for_each_channel(
        "store_pooled_all",
        "q: u32, first: u32, count: u32, ch0: u32, pp: u32",
        &format!("store_pooled(q, first + c, count, ch0 + c, pp, {quads});"),
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
    out + "}\n\n" + &fma_taps(4) + "\n" + &fma_taps(5)
}

/// Accumulators of `shaders/cpu/conv_subgroup.wgsl`: 32 vec4s per lane.
const SUBGROUP_ACCUMULATORS: usize = 32;

/// conv_subgroup.wgsl's generated part: its accumulators `acc0` .. `acc31`, `fma_taps` (4
/// taps' products: the weights of channel quad cq broadcast from lane cq, times the lane's
/// image quads) and `store_all` (every channel's quads through store_channel), each spelled
/// out for both QL (image quads per lane): accumulator a is channel a / QL, quad a % QL; and
/// `pool_all` (every channel through pool_channel), for QL 1, the only one POOL runs with.
pub(crate) fn subgroup() -> String {
    let mut out: String = (0..SUBGROUP_ACCUMULATORS)
        .map(|a| format!("var<private> acc{a}: vec4<f32>;\n"))
        .collect();
    // Channel c's 4 products: tap t's weight broadcast from lane c / 4 (once per channel
    // quad), component c % 4, times the tap's image quads.
    let fma = |ql: usize, c: usize| {
        let (cq, comp) = (c / 4, ["x", "y", "z", "w"][c % 4]);
        let mut s = String::new();
        if c.is_multiple_of(4) {
            for t in 0..4 {
                s += &format!("        let b{t}_{cq} = subgroupBroadcast(t{t}.w, {cq}u);\n");
            }
        }
        for j in 0..ql {
            let terms: String = (0..4)
                .map(|t| format!(" + b{t}_{cq}.{comp} * t{t}.x{j}"))
                .collect();
            s += &format!("        acc{a} = acc{a}{terms};\n", a = c * ql + j);
        }
        s
    };
    let store = |ql: usize, c: usize| {
        let second = if ql == 2 { 2 * c + 1 } else { c };
        format!(
            "        store_channel({c}u, first, ch0, q0, pix, acc{}, acc{second});\n",
            c * ql
        )
    };
    let pool = |ql: usize, c: usize| -> String {
        (0..ql)
            .map(|j| {
                let a = c * ql + j;
                format!("    pool_channel({c}u, first, ch0, q0 + {j}u, win, acc{a});\n")
            })
            .collect()
    };
    // `line(ql, c)` for every channel c of both lane layouts, each under its `if` on QL.
    let both = |line: &dyn Fn(usize, usize) -> String| {
        let per_ql = |ql: usize| -> String {
            (0..SUBGROUP_ACCUMULATORS / ql)
                .map(|c| line(ql, c))
                .collect()
        };
        format!(
            "    if (QL == 1u) {{\n{}    }} else {{\n{}    }}\n",
            per_ql(1),
            per_ql(2)
        )
    };
    out += "\nfn fma_taps(t0: Fetched, t1: Fetched, t2: Fetched, t3: Fetched) {\n";
    out += &both(&fma);
    out += "}\n\nfn store_all(first: u32, ch0: u32, q0: u32, pix: u32) {\n";
    out += &both(&store);
    // pool_all: QL 1 only (Policy::conv_pool_lane_quads).
    out += "}\n\nfn pool_all(first: u32, ch0: u32, q0: u32, win: u32) {\n";
    out += &(0..SUBGROUP_ACCUMULATORS)
        .map(|c| pool(1, c))
        .collect::<String>();
    out + "}\n"
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
        assert!(helpers.contains("fn fma16x5(") && helpers.contains("w4h.w * b.c5;"));
        let rows = super::window_rows();
        assert!(rows.contains("if (ROW_SLIDE > 6u) { r.c7 = "));
        assert_eq!(
            rows.matches("fma16(wq(").count(),
            6,
            "taps 0-2 and 4-6 alone"
        );
        // conv_subgroup: 32 accumulators, each updated once per lane layout (QL 1 and 2) and
        // stored once per layout; 8 (QL 1) + 4 (QL 2) channel quads broadcast per tap.
        let sub = super::subgroup();
        assert_eq!(sub.matches("var<private> acc").count(), 32);
        for a in 0..32 {
            let updates = sub
                .lines()
                .filter(|l| l.trim_start().starts_with(&format!("acc{a} = acc{a} + ")))
                .count();
            assert_eq!(updates, 2, "acc{a}");
            assert!(sub.contains(&format!("acc{a},")) || sub.contains(&format!("acc{a});")));
        }
        assert_eq!(sub.matches("= subgroupBroadcast(t3.w, ").count(), 12);
        assert!(sub.contains("store_channel(31u, first, ch0, q0, pix, acc31, acc31);"));
        assert!(sub.contains("store_channel(15u, first, ch0, q0, pix, acc30, acc31);"));
        assert!(sub.contains("    pool_channel(31u, first, ch0, q0 + 0u, win, acc31);"));
        assert_eq!(sub.matches("pool_channel(").count(), 32);
        let stores = super::store_helpers();
        for f in ["fn store16(", "fn store_pairs(", "fn store_pooled_all("] {
            assert!(stores.contains(f), "{f}");
        }
        assert_eq!(
            stores.matches("acc63 = acc73;").count(),
            3,
            "channel 7's accumulators shifted down in each"
        );
        assert_eq!(stores.matches("for (var c = 0u; c < CH; c++)").count(), 3);
    }
}
