//! The WGSL of `conv_backward_weight`, generated: the kernel keeps 16 taps' operands and 8
//! channels' accumulators in separately named variables (llvmpipe keeps a dynamically indexed
//! private array in memory), so written out by hand it repeated one line per tap or channel
//! hundreds of times. Here each repeated line is written once, with the loop over taps (`t`,
//! `x`, `y`: TAPS <= 16 slots) or channels (`g`, accumulators `a{channel}_{tap block}`: CH <= 8)
//! that unrolls it. Slots past the pipeline's TAPS or CH are skipped by `if` on those override
//! constants, which the shader compiler resolves.

/// Most taps and channels one invocation holds.
const TAPS: usize = 16;
const CHANNELS: usize = 8;

/// `line(i)` for every slot, the first unconditional and the others behind `if (LIMIT > iu)`,
/// indented by `indent` spaces.
fn unrolled(indent: usize, count: usize, limit: &str, line: impl Fn(usize) -> String) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}{}\n", line(0));
    for i in 1..count {
        out += &format!(
            "{pad}if ({limit} > {i}u) {{\n{pad}    {}\n{pad}}}\n",
            line(i)
        );
    }
    out
}

/// `line(i)` for every slot, unconditionally.
fn each(indent: usize, count: usize, line: impl Fn(usize) -> String) -> String {
    let pad = " ".repeat(indent);
    (0..count).map(|i| format!("{pad}{}\n", line(i))).collect()
}

/// Channel c's accumulation of both output columns into its four tap blocks, and its bias sum.
fn accumulate(c: usize) -> String {
    let mut out = format!("gp = g_pair(g{c}, oh, ow, q);\n");
    for b in 0..TAPS / 4 {
        let dots: Vec<String> = (4 * b..4 * b + 4)
            .map(|k| format!("dot(gp.v, x{k}) + dot(gp.w, y{k})"))
            .collect();
        out += &format!("a{c}_{b} += vec4<f32>({});\n", dots.join(", "));
    }
    let lane = ["x", "y", "z", "w"][c % 4];
    out + &format!("s{}.{lane} += dot(gp.v + gp.w, vec4<f32>(1.0));\n", c / 4)
}

/// Slot i's x at output column `column` while sliding: fetched where the slot ends a kernel
/// row, else `next` (its right neighbour's at the previous column). The condition is written
/// here, on the slot's number and SLIDE_KW, rather than in a helper taking the slot as an
/// argument: SwiftShader inlines every call without folding constant arguments, so a helper
/// compiled its fetch at all 30 call sites (200 ms of the kernel's compile time).
fn slid(x: &str, i: usize, next: &str, column: &str) -> String {
    let kw = "max(SLIDE_KW, 1u)";
    format!(
        "if ({i}u % {kw} == {kw} - 1u) {{ {x}{i} = x_at(t{i}, oh, {column}, q); }} \
         else {{ {x}{i} = {next}; }}"
    )
}

fn indented(indent: usize, text: &str) -> String {
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// The kernel, entry point and all (see the comments above its place in
/// `shaders/cpu/conv_implicit.wgsl`).
pub(crate) fn conv_backward_weight() -> String {
    let fetch = |at: &'static str| move |i: usize| format!("x{i} = x_at(t{i}, oh, {at}, q);");
    let next = |v: &str, i: usize| match i + 1 < TAPS {
        true => format!("{v}{}", i + 1),
        false => "vec4<f32>(0.0)".into(),
    };
    let slide_x = |i: usize| slid("x", i, &next("y", i), "ow + 2u");
    let slide_y = |i: usize| slid("y", i, &next("x", i), "ow + 1u");
    let mut accumulate_all = indented(16, &accumulate(0));
    for c in 1..CHANNELS {
        accumulate_all += &format!(
            "                if (CH > {c}u) {{\n{}                }}\n",
            indented(20, &accumulate(c))
        );
    }
    // The stores in a loop over the channels that shifts their accumulators down after each
    // (one call site: SwiftShader compiles every store as a loop over its SIMD lanes, and
    // store_gw holds 4; named variables, not an array, which llvmpipe would gather).
    let mut stores = String::from(
        "    for (var c = 0u; c < CH; c++) {
        if (cb * CH + c < cout_g) {
            store_gw(base, l, g * cout_g + cb * CH + c, kb, a0_0, a0_1, a0_2, a0_3);
        }
",
    );
    for c in 0..CHANNELS - 1 {
        for b in 0..TAPS / 4 {
            stores += &format!("        a{c}_{b} = a{}_{b};\n", c + 1);
        }
    }
    stores += "    }\n";
    let mut out = String::from(
        "@compute @workgroup_size(WG)
fn conv_backward_weight(id: Invocation) {
    let cin_g = p.c / p.groups;
    let cout_g = p.c_out / p.groups;
    let k_len = cin_g * p.kh * p.kw;
    let kb_count = (k_len + TAPS - 1u) / TAPS;
    let cb_count = channel_blocks(cout_g);
    let bands = (p.ho + p.rows_per_part - 1u) / p.rows_per_part;
    let quad_groups = (p.nq + p.quads_per_part - 1u) / p.quads_per_part;
    // Quad groups fastest: the 8 lanes of a SIMD group fetch neighbouring texels of x and g.
    let v = invocation(id);
    let qg = v % quad_groups;
    let rest = v / quad_groups;
    let kb = rest % kb_count;
    let cb = (rest / kb_count) % cb_count;
    let g = (rest / (kb_count * cb_count)) % p.groups;
    let band = rest / (kb_count * cb_count * p.groups);
    if (band >= bands) {
        return;
    }
    let part = qg * bands + band;
    // The block's taps' planes and offsets (taps past the end repeat the last one; not stored).
    let k0 = kb * TAPS;
",
    );
    out += &each(4, TAPS, |i| {
        format!("let t{i} = tap(g, cin_g, min(k0 + {i}u, k_len - 1u));")
    });
    out += "    // Output channels, clamped to the group's last channel.
    let c0 = g * cout_g + cb * CH;
    let last = g * cout_g + cout_g - 1u;
";
    out += &each(4, CHANNELS, |c| format!("let g{c} = min(c0 + {c}u, last);"));
    out += "    // a{i}_{b}: channel i's dot products with taps 4b .. 4b + 3.\n";
    for c in 0..CHANNELS {
        out += &each(4, TAPS / 4, |b| format!("var a{c}_{b} = vec4<f32>(0.0);"));
    }
    out += "    // Bias sums of the 8 channels (4 images each).
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    let q_first = (part / bands) * p.quads_per_part;
    let q_end = min(p.nq, q_first + p.quads_per_part);
    let oh_end = min(p.ho, (part % bands + 1u) * p.rows_per_part);
    for (var q = q_first; q < q_end; q++) {
        for (var oh = (part % bands) * p.rows_per_part; oh < oh_end; oh++) {
            // x at the block's taps (slots past TAPS stay 0), fetched at every output column,
            // or with SLIDE_KW at the row's first column and then slid along.
";
    out += &each(12, TAPS, |i| format!("var x{i} = vec4<f32>(0.0);"));
    out += "            if (SLIDE_KW > 0u) {\n";
    out += &unrolled(16, TAPS, "TAPS", fetch("0u"));
    out += "            }
            // Two output columns per iteration (ow: x, gv; ow + 1: y, gw), so that each
            // accumulator takes both in one write (0 past the row's end).
            for (var ow = 0u; ow < p.wo; ow += 2u) {
                if (SLIDE_KW == 0u) {
";
    out += &unrolled(20, TAPS, "TAPS", fetch("ow"));
    out += "                }
                // x at the next column: slid along, or fetched.
";
    out += &each(16, TAPS, |i| format!("var y{i} = vec4<f32>(0.0);"));
    out += "                if (SLIDE_KW > 0u) {\n";
    out += &unrolled(20, TAPS, "TAPS", slide_y);
    out += "                } else {\n";
    out += &unrolled(20, TAPS, "TAPS", |i| {
        format!("y{i} = x_at(t{i}, oh, ow + 1u, q);")
    });
    out += "                }
                var gp: GPair;
";
    out += &accumulate_all;
    out += "                if (SLIDE_KW > 0u) {\n";
    out += &unrolled(20, TAPS, "TAPS", slide_x);
    out += "                }
            }
        }
    }
    // Into this part's row of partial (partial_layout): the bias sums (channels past CH and
    // the group hold unused sums), then the weight sums.
    let l = partial_layout(TAPS, CH);
    let base = part * l.row_len;
    if (p.has_bias == 1u && kb == 0u) {
        let bias_at = (base + l.bias_at + (g * cb_count + cb) * 8u) / 4u;
        partial[bias_at] = s0;
        partial[bias_at + 1u] = s1;
    }
";
    out += &stores;
    out + "}\n"
}

#[cfg(test)]
mod tests {
    /// Every channel's four tap blocks accumulate both columns, and each unrolled slot is
    /// guarded by its override (the kernel's behaviour is tested through `conv2d`'s weight
    /// gradient in tests/conv.rs).
    #[test]
    fn unrolls_every_tap_and_channel() {
        let wgsl = super::conv_backward_weight();
        for c in 0..8 {
            for b in 0..4 {
                assert_eq!(wgsl.matches(&format!("a{c}_{b} += vec4<f32>(")).count(), 1);
            }
        }
        assert_eq!(
            wgsl.matches("if (TAPS > 15u)").count(),
            5,
            "five unrolled tap loops"
        );
        assert_eq!(wgsl.matches("if (CH > 7u)").count(), 1, "accumulate");
        assert!(wgsl.contains("a6_3 = a7_3;\n    }"));
        assert_eq!(wgsl.matches("store_gw(").count(), 1, "one store site");
        assert!(
            wgsl.contains("partial[bias_at + 1u] = s1;"),
            "bias sums as vec4s"
        );
        // Slides decide on the slot's number in place (no helper taking it as an argument).
        let end = "4u % max(SLIDE_KW, 1u) == max(SLIDE_KW, 1u) - 1u";
        assert!(wgsl.contains(&format!(
            "if ({end}) {{ x4 = x_at(t4, oh, ow + 2u, q); }} else {{ x4 = y5; }}"
        )));
        assert!(wgsl.contains("else { y15 = vec4<f32>(0.0); }"));
        assert_eq!(wgsl.matches("gp = g_pair(g7, oh, ow, q);").count(), 1);
    }
}
