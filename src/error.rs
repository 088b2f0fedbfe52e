//! One error type for the whole crate: every fallible call returns `webgrad::Result`.

use std::fmt;

/// Everything that can go wrong in webgrad. Messages name the shapes, files and offsets involved.
#[derive(Debug)]
pub enum Error {
    /// No wgpu adapter matched the request (or none exists at all).
    NoAdapter(String),
    /// The adapter refused to open a device, or the device reported an error.
    Device(String),
    /// Shapes that do not fit together, e.g. `add` of [2, 3] and [4, 3].
    Shape {
        /// The op that refused the shapes.
        op: &'static str,
        /// What does not fit, naming the shapes.
        msg: String,
    },
    /// A tensor is larger than the adapter can bind or allocate.
    TooLarge(String),
    /// Two tensors live on different devices.
    DeviceMismatch(&'static str),
    /// Autograd misuse: backward on a non-scalar, through a freed graph, ...
    Autograd(String),
    /// Reading a data file or checkpoint failed; the message names the file and offset.
    Io(String),
    /// Any other invalid argument (bad dimension index, bad probability, ...).
    Invalid(String),
    /// A call that waits for the GPU by blocking the thread, made in a browser, whose page
    /// must never block: use the named `_async` call there.
    Blocking {
        /// The blocking call, e.g. `Tensor::to_vec`.
        call: &'static str,
        /// Its async twin, e.g. `Tensor::to_vec_async`.
        instead: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            Error::Device(m) => write!(f, "device error: {m}"),
            Error::Shape { op, msg } => write!(f, "{op}: {msg}"),
            Error::TooLarge(m) => write!(f, "tensor too large: {m}"),
            Error::DeviceMismatch(op) => write!(f, "{op}: tensors live on different devices"),
            Error::Autograd(m) => write!(f, "autograd: {m}"),
            Error::Io(m) => write!(f, "{m}"),
            Error::Invalid(m) => write!(f, "{m}"),
            Error::Blocking { call, instead } => write!(
                f,
                "{call} blocks until the GPU is done, which a web page cannot do: \
                 await {instead} instead"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// webgrad's `Result`, with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a shape error.
pub(crate) fn shape_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Shape {
        op,
        msg: msg.into(),
    })
}
