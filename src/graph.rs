//! The computational graph behind a result, as Graphviz DOT: what the tape recorded, drawn.
//!
//! [`Graph::capture`] walks the tape back from a tensor (usually the loss) before `backward()`
//! frees it: one vertex per op and per leaf tensor, edges in the direction of the computation.
//! Small tensors (up to 8 elements) show their forward values; after `backward()`, their
//! gradients, and each edge into an op shows what backward sent along it as
//! `upstream × local = downstream`. Ops recorded inside a [`scope`] (`Sequential` opens one per
//! layer) are drawn as a cluster of that name.
//!
//! ```
//! use webgrad::{graph::Graph, Device, Tensor};
//! let dev = Device::new()?;
//! let x = Tensor::from_vec(&dev, vec![-2.0], &[1])?.requires_grad();
//! let y = Tensor::from_vec(&dev, vec![5.0], &[1])?.requires_grad();
//! let z = Tensor::from_vec(&dev, vec![-4.0], &[1])?.requires_grad();
//! let f = x.add(&y)?.mul(&z)?;
//! let graph = Graph::capture(&f)?.with_name(&x, "x").with_name(&y, "y").with_name(&z, "z");
//! f.backward()?;
//! let dot = graph.to_dot()?;
//! assert!(dot.contains("value -12"));      // f
//! assert!(dot.contains("-4 × 1 = -4"));    // x's edge into the add: upstream × local
//! # Ok::<(), webgrad::Error>(())
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use crate::error::Result;
use crate::tape::{Node, Trace};
use crate::tensor::Tensor;

/// Tensors of at most this many elements are drawn with their values.
const MAX_SHOWN: usize = 8;

thread_local! {
    /// The open scopes, outermost first, and their joined name.
    static SCOPES: RefCell<(Vec<String>, Option<Arc<str>>)> = const { RefCell::new((Vec::new(), None)) };
}

/// Runs `f` with its ops grouped under `name` in drawings of the graph (nested scopes join with
/// `.`, as PyTorch's module names do). `Sequential` opens one per layer.
pub fn scope<R>(name: &str, f: impl FnOnce() -> R) -> R {
    SCOPES.with(|s| {
        let mut s = s.borrow_mut();
        s.0.push(name.to_string());
        s.1 = Some(s.0.join(".").into());
    });
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            SCOPES.with(|s| {
                let mut s = s.borrow_mut();
                s.0.pop();
                s.1 = (!s.0.is_empty()).then(|| s.0.join(".").into());
            });
        }
    }
    let _close = Close;
    f()
}

/// The scope ops are being recorded in.
pub(crate) fn current_scope() -> Option<Arc<str>> {
    SCOPES.with(|s| s.borrow().1.clone())
}

/// Runs `f` in a scope named after both the producer's scope and the current one, so an op
/// fused into its producer (`fusion.rs`) is drawn under both layers' names, e.g. `conv1+relu1`.
pub(crate) fn fused_scope<R>(producer: Option<&str>, f: impl FnOnce() -> R) -> R {
    let Some(producer) = producer else { return f() };
    let current = current_scope();
    if current.as_deref() == Some(producer) {
        return f();
    }
    let merged = match current {
        Some(c) => format!("{producer}+{c}"),
        None => producer.to_string(),
    };
    let saved = SCOPES.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let r = scope(&merged, f);
    SCOPES.with(|s| *s.borrow_mut() = saved);
    r
}

/// A vertex: an op (keyed by its node) or a leaf tensor (keyed by its id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Op(usize),
    Leaf(u64),
}

struct Vertex {
    /// The op's output, or the leaf.
    tensor: Tensor,
    /// The op's label; `None` for a leaf.
    op: Option<String>,
    node: Option<Arc<Node>>,
    /// The forward value, for small tensors.
    value: Option<Vec<f32>>,
    /// The vertices feeding an op, in input order.
    inputs: Vec<Key>,
}

/// A snapshot of the graph behind a tensor, for drawing (see the module documentation).
pub struct Graph {
    root: Key,
    vertices: BTreeMap<Key, Vertex>,
    /// Visit order (inputs before the ops that read them), for a stable drawing.
    order: Vec<Key>,
    names: HashMap<u64, String>,
}

fn key_of(t: &Tensor) -> Key {
    match t.node() {
        Some(n) => Key::Op(Arc::as_ptr(n) as usize),
        None => Key::Leaf(t.id()),
    }
}

fn small_values(t: &Tensor) -> Result<Option<Vec<f32>>> {
    Ok(if t.numel() <= MAX_SHOWN {
        Some(t.to_vec()?)
    } else {
        None
    })
}

impl Graph {
    /// The graph that computed `root`, with the forward values of its small tensors. Call it
    /// before `backward()` (which frees the graph); the gradients of that backward then show in
    /// [`Graph::to_dot`].
    pub fn capture(root: &Tensor) -> Result<Graph> {
        let mut vertices = BTreeMap::new();
        let mut order = Vec::new();
        // Depth-first, inputs first: (tensor, whether its inputs are already pushed).
        let mut stack = vec![(root.clone(), false)];
        while let Some((t, expanded)) = stack.pop() {
            let key = key_of(&t);
            if expanded {
                if !order.contains(&key) {
                    order.push(key);
                }
                continue;
            }
            if vertices.contains_key(&key) {
                continue;
            }
            let described = t.node().and_then(|n| n.describe());
            let (op, inputs) = match &described {
                Some((label, inputs)) => (Some(label.clone()), inputs.clone()),
                None => (None, Vec::new()),
            };
            if let Some(node) = t.node() {
                node.start_trace();
            }
            let vertex = Vertex {
                value: small_values(&t)?,
                tensor: t.clone(),
                op,
                node: t.node().cloned(),
                inputs: inputs.iter().map(key_of).collect(),
            };
            vertices.insert(key, vertex);
            stack.push((t, true));
            stack.extend(inputs.into_iter().rev().map(|i| (i, false)));
        }
        Ok(Graph {
            root: key_of(root),
            vertices,
            order,
            names: HashMap::new(),
        })
    }

    /// Names a leaf tensor in the drawing (`x`, `conv1.weight`).
    pub fn with_name(mut self, t: &Tensor, name: impl Into<String>) -> Graph {
        self.names.insert(t.id(), name.into());
        self
    }

    /// Names leaf tensors, e.g. with a model's `named_parameters()`.
    pub fn with_names(mut self, named: &[(String, Tensor)]) -> Graph {
        for (name, t) in named {
            self.names.insert(t.id(), name.clone());
        }
        self
    }

    /// The graph in Graphviz's DOT language (render it with `dot -Tsvg graph.dot`).
    pub fn to_dot(&self) -> Result<String> {
        let ids: HashMap<Key, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i))
            .collect();
        // Clusters in the order the computation reaches them.
        let mut clusters: Vec<(String, Vec<String>)> = Vec::new();
        let mut loose = Vec::new();
        for key in &self.order {
            let v = &self.vertices[key];
            let line = self.vertex_line(*key, v, ids[key])?;
            match self.cluster_of(*key, v) {
                Some(c) => match clusters.iter_mut().find(|(name, _)| *name == c) {
                    Some((_, lines)) => lines.push(line),
                    None => clusters.push((c, vec![line])),
                },
                None => loose.push(line),
            }
        }
        let mut dot = String::from(
            "digraph webgrad {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n  \
             edge [fontname=\"Helvetica\", fontsize=9];\n",
        );
        for (i, (name, lines)) in clusters.iter().enumerate() {
            let _ = writeln!(
                dot,
                "  subgraph cluster_{i} {{\n    label=\"{}\";",
                escape(name)
            );
            let _ = writeln!(dot, "    style=rounded; color=gray60;");
            for l in lines {
                let _ = writeln!(dot, "    {l}");
            }
            dot.push_str("  }\n");
        }
        for l in &loose {
            let _ = writeln!(dot, "  {l}");
        }
        for key in &self.order {
            let v = &self.vertices[key];
            let trace = v.node.as_ref().and_then(|n| n.trace());
            for (i, input) in v.inputs.iter().enumerate() {
                let label = trace
                    .as_ref()
                    .map(|t| edge_label(t, i))
                    .transpose()?
                    .flatten();
                let attr = label
                    .map(|l| format!(" [label=\"{}\"]", escape(&l)))
                    .unwrap_or_default();
                let _ = writeln!(dot, "  v{} -> v{}{attr};", ids[input], ids[key]);
            }
        }
        dot.push_str("}\n");
        Ok(dot)
    }

    fn vertex_line(&self, key: Key, v: &Vertex, id: usize) -> Result<String> {
        let t = &v.tensor;
        let mut label = match (&v.op, self.names.get(&t.id())) {
            (Some(op), _) => op.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => "tensor".to_string(),
        };
        let _ = write!(label, "\n{}", shape_text(t.shape()));
        if let Some(values) = &v.value {
            let _ = write!(label, "\nvalue {}", values_text(values));
        }
        let grad = match &v.node {
            Some(node) => node.trace().and_then(|tr| tr.upstream),
            None => t.grad(),
        };
        if let Some(g) = grad.filter(|g| g.numel() <= MAX_SHOWN) {
            let _ = write!(label, "\ngrad {}", values_text(&g.to_vec()?));
        }
        let style = match (&v.op, t.is_requires_grad()) {
            (Some(_), _) => "shape=box, style=\"rounded,filled\", fillcolor=gray92",
            (None, true) => "shape=ellipse, style=filled, fillcolor=lightblue",
            (None, false) => "shape=ellipse",
        };
        let root = if key == self.root {
            ", peripheries=2"
        } else {
            ""
        };
        Ok(format!(
            "v{id} [label=\"{}\", {style}{root}];",
            escape(&label)
        ))
    }

    /// An op's scope; a leaf goes with the ops that read it when they share one scope.
    fn cluster_of(&self, key: Key, v: &Vertex) -> Option<String> {
        if let Some(node) = &v.node {
            return node.scope().map(str::to_string);
        }
        let mut scopes = self
            .vertices
            .values()
            .filter(|c| c.inputs.contains(&key))
            .map(|c| c.node.as_ref().and_then(|n| n.scope()));
        let first = scopes.next()??;
        scopes.all(|s| s == Some(first)).then(|| first.to_string())
    }
}

/// `upstream × local = downstream` for input `i` of a traced op, where the gradients are small
/// and the op is elementwise (same shapes, so local = downstream / upstream); else the
/// downstream gradient alone.
fn edge_label(trace: &Trace, i: usize) -> Result<Option<String>> {
    let Some(Some(down)) = trace.downstream.get(i) else {
        return Ok(None);
    };
    let down = down.to_vec()?;
    if let Some(up) = &trace.upstream {
        let up = up.to_vec()?;
        if up.len() == down.len() && up.iter().all(|u| *u != 0.0) {
            let local: Vec<f32> = down.iter().zip(&up).map(|(d, u)| d / u).collect();
            return Ok(Some(format!(
                "{} × {} = {}",
                values_text(&up),
                values_text(&local),
                values_text(&down)
            )));
        }
    }
    Ok(Some(values_text(&down)))
}

fn shape_text(shape: &[usize]) -> String {
    if shape.is_empty() {
        "scalar".into()
    } else {
        format!("{shape:?}")
    }
}

/// Values as the course writes them: `-12`, `0.5`, `[1, 2.25]` (four significant decimals).
fn values_text(v: &[f32]) -> String {
    let one = |x: f32| {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".to_string()
        } else {
            s.to_string()
        }
    };
    match v {
        [x] => one(*x),
        _ => format!(
            "[{}]",
            v.iter().map(|x| one(*x)).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_like_the_course() {
        assert_eq!(values_text(&[-12.0]), "-12");
        assert_eq!(values_text(&[0.5, 2.25]), "[0.5, 2.25]");
        assert_eq!(values_text(&[-0.0]), "0");
        assert_eq!(values_text(&[1.0 / 3.0]), "0.3333");
    }

    #[test]
    fn scopes_nest_and_close() {
        assert_eq!(current_scope(), None);
        scope("features", || {
            scope("conv1", || {
                assert_eq!(current_scope().as_deref(), Some("features.conv1"))
            });
            assert_eq!(current_scope().as_deref(), Some("features"));
            fused_scope(Some("features.conv1"), || {
                assert_eq!(current_scope().as_deref(), Some("features.conv1+features"))
            });
            assert_eq!(current_scope().as_deref(), Some("features"));
        });
        assert_eq!(current_scope(), None);
    }
}
