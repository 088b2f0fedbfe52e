//! Optimizers whose updates are WGSL kernels that change the parameters in place
//! (`shaders/optim.wgsl`), and learning-rate schedules.
//!
//! Every optimizer runs the same two kernels (a vec4 one and a scalar tail), specialised by
//! an override constant to its update; what differs per optimizer here is its
//! hyper-parameters, which states it keeps and how it fills the kernels' `OptimParams`.
//! The shared parts (the parameters, the state tensors and the step count, the dispatches)
//! live in `Core` and the functions below it.

use crate::backend::TexelReads;
use crate::error::{Error, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("optim");

/// What every optimizer offers.
pub trait Optimizer {
    /// Updates every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// The parameters this optimizer updates.
    fn parameters(&self) -> &[Tensor];
    /// Forgets the parameters' gradients.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }
    /// The learning rate used by the next step.
    fn learning_rate(&self) -> f32;
    /// Changes the learning rate (schedules call it between epochs).
    fn set_learning_rate(&mut self, lr: f32);
    /// The optimizer's state tensors, named `PARAM_INDEX.NAME` (for checkpoints).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Steps taken so far.
    fn steps(&self) -> u64;
    /// Restores state saved by [`state`](Self::state) and the step count.
    fn load_state(&mut self, state: &[(String, Tensor)], steps: u64) -> Result<()>;
}

kernel_params! {
    /// `Params` of `shaders/optim.wgsl`, shared by every optimizer (each sets its own fields,
    /// the rest stay 0).
    pub(crate) struct OptimParams for "optim" {
        len: u32,
        start: u32,
        lr: f32,
        weight_decay: f32,
        eps: f32,
        first_step: u32,
        momentum: f32,
        dampening: f32,
        nesterov: u32,
        beta1: f32,
        beta2: f32,
        bias_correction1: f32,
        bias_correction2: f32,
        decoupled: u32,
        alpha: f32,
        centered: u32,
        initial_accumulator: f32,
        rho: f32,
    }
}

/// The update a pipeline of `shaders/optim.wgsl` runs (its override `OPTIMIZER`).
#[derive(Clone, Copy, Debug)]
enum Kernel {
    Sgd = 0,
    Adam = 1,
    RmsProp = 2,
    Adagrad = 3,
    Adadelta = 4,
}

/// The state bindings of the update kernels (bindings 3, 4 and 5).
const STATE_SLOTS: usize = 3;

/// What a hyper-parameter must satisfy (PyTorch's constructors check the same).
#[derive(Clone, Copy)]
enum Range {
    /// `0 <= v`
    NonNegative,
    /// `0 <= v <= 1`
    Unit,
    /// `0 <= v < 1`
    UnitOpen,
}

/// Ok when every `(name, value, range)` holds, else an error naming the optimizer, the
/// hyper-parameter and its value (NaN never holds).
fn check(optimizer: &str, checks: &[(&str, f32, Range)]) -> Result<()> {
    for &(name, v, range) in checks {
        let (ok, want) = match range {
            Range::NonNegative => ((0.0..).contains(&v), ">= 0"),
            Range::Unit => ((0.0..=1.0).contains(&v), "in [0, 1]"),
            Range::UnitOpen => ((0.0..1.0).contains(&v), "in [0, 1)"),
        };
        if !ok {
            return Err(Error::Invalid(format!(
                "{optimizer}: invalid {name} {v} (must be {want})"
            )));
        }
    }
    Ok(())
}

/// What every optimizer keeps: its parameters, its state tensors (one per parameter for each
/// of PyTorch's state names, allocated when the options first need them) and its step count.
struct Core {
    params: Vec<Tensor>,
    states: Vec<(&'static str, Vec<Tensor>)>,
    steps: u64,
}

impl Core {
    /// An optimizer over `params` (on one device) with states `names`, all of zeros those
    /// marked `true` now, the others when first used.
    fn new(op: &'static str, params: Vec<Tensor>, names: &[(&'static str, bool)]) -> Result<Core> {
        one_device(&params, op)?;
        let mut core = Core {
            params,
            states: names.iter().map(|&(n, _)| (n, Vec::new())).collect(),
            steps: 0,
        };
        for (k, &(_, now)) in names.iter().enumerate() {
            if now {
                core.allocate(k)?;
            }
        }
        Ok(core)
    }

    /// State k as zeros, unless it exists.
    fn allocate(&mut self, k: usize) -> Result<()> {
        if self.states[k].1.is_empty() && !self.params.is_empty() {
            self.states[k].1 = zeros_like(&self.params)?;
        }
        Ok(())
    }

    /// Records one step's updates with `kernel`, which reads and writes state k where
    /// `used[k]`, and counts the step.
    fn step(&mut self, kernel: Kernel, used: &[bool], kernel_params: &OptimParams) -> Result<()> {
        for (k, _) in used.iter().enumerate().filter(|(_, &u)| u) {
            self.allocate(k)?;
        }
        let slots: Vec<Option<&[Tensor]>> = used
            .iter()
            .zip(&self.states)
            .map(|(&u, (_, s))| u.then_some(s.as_slice()))
            .collect();
        record_updates(&self.params, kernel, &slots, kernel_params)?;
        self.steps += 1;
        Ok(())
    }

    /// The existing state tensors, named `PARAM_INDEX.NAME`, parameter by parameter.
    fn state(&self) -> Vec<(String, Tensor)> {
        (0..self.params.len())
            .flat_map(|i| {
                self.states.iter().filter_map(move |(name, ts)| {
                    ts.get(i).map(|t| (format!("{i}.{name}"), t.clone()))
                })
            })
            .collect()
    }

    /// Loads every state that exists or that `state` holds (an existing one it lacks is an
    /// error naming it).
    fn load_state(&mut self, state: &[(String, Tensor)], steps: u64) -> Result<()> {
        for k in 0..self.states.len() {
            let name = self.states[k].0;
            if state.iter().any(|(key, _)| *key == format!("0.{name}")) {
                self.allocate(k)?;
            }
            load_named(&self.states[k].1, name, state)?;
        }
        self.steps = steps;
        Ok(())
    }
}

/// The [`Optimizer`] methods every optimizer here has alike: `step` checks the
/// hyper-parameters and runs `self.update()`, the rest read `self.core` and `self.lr`.
macro_rules! optimizer_methods {
    () => {
        fn step(&mut self) -> Result<()> {
            self.check()?;
            self.update()
        }
        fn parameters(&self) -> &[Tensor] {
            &self.core.params
        }
        fn learning_rate(&self) -> f32 {
            self.lr
        }
        fn set_learning_rate(&mut self, lr: f32) {
            self.lr = lr;
        }
        fn state(&self) -> Vec<(String, Tensor)> {
            self.core.state()
        }
        fn steps(&self) -> u64 {
            self.core.steps
        }
        fn load_state(&mut self, state: &[(String, Tensor)], steps: u64) -> Result<()> {
            self.core.load_state(state, steps)
        }
    };
}

/// Builder methods `with_NAME(value)` that set a public hyper-parameter and return the
/// optimizer: `setters! { /// doc, with_eps => eps: f32, .. }` in its `impl`.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident => $field:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = value;
                self
            }
        )*
    };
}

/// One parameter's update: its element count and operand buffers (gradient, parameter, then
/// the kernel's state slots, `None` where the optimizer keeps no state).
struct Update<'a> {
    n: usize,
    buffers: Vec<Option<&'a wgpu::Buffer>>,
}

/// Records the updates of the parameters that have a gradient with `kernel`; `states[k]` is
/// state slot k (one tensor per parameter, or `None`: unused), `kernel_params` the kernels'
/// parameters but `len` and `start`.
fn record_updates(
    params: &[Tensor],
    kernel: Kernel,
    states: &[Option<&[Tensor]>],
    kernel_params: &OptimParams,
) -> Result<()> {
    debug_assert!(
        states.len() <= STATE_SLOTS,
        "{kernel:?}: more states than slots"
    );
    let Some(dev) = params.first().map(|p| p.device()) else {
        return Ok(());
    };
    let grads: Vec<Option<Tensor>> = params.iter().map(|p| p.grad()).collect();
    // Checked again at each step: a gradient set by hand may come from another device.
    one_device(params, "optimizer step")?;
    for g in grads.iter().flatten() {
        dev.same(g.device(), "optimizer step")?;
    }
    // Updated in place.
    for t in params
        .iter()
        .chain(states.iter().flatten().flat_map(|s| s.iter()))
    {
        t.storage().mark_written();
    }
    let updates: Vec<Update> = params
        .iter()
        .zip(&grads)
        .enumerate()
        .filter_map(|(i, (p, g))| {
            let mut buffers = vec![Some(g.as_ref()?.buffer()), Some(p.buffer())];
            buffers.extend((0..STATE_SLOTS).map(|k| Some(states.get(k)?.as_ref()?[i].buffer())));
            Some(Update {
                n: p.numel(),
                buffers,
            })
        })
        .collect();
    let used = states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_some())
        .fold(0, |mask, (k, _)| mask | 1 << k);
    let constants = [("OPTIMIZER", kernel as u32), ("STATES", used)];
    record_dispatches(dev, &constants, kernel_params, &updates)
}

/// record_updates' dispatches: the small parameters (below the policy's
/// `optimizer_flat_below` elements), when there are several, copied side by side into one
/// buffer per operand (gradient, parameter, each state), updated by one dispatch and copied
/// back; every other one alone (its vec4 kernel and scalar tail).
fn record_dispatches(
    dev: &crate::Device,
    constants: &[(&'static str, u32)],
    params: &OptimParams,
    updates: &[Update],
) -> Result<()> {
    let flat_below = dev.policy().optimizer_flat_below();
    let (flat, alone): (Vec<&Update>, Vec<&Update>) =
        updates.iter().partition(|u| u.n < flat_below);
    let alone: Vec<&Update> = if flat.len() >= 2 {
        record_flat(dev, constants, params, &flat)?;
        alone
    } else {
        alone.into_iter().chain(flat).collect()
    };
    for u in alone {
        update_kernels(dev, constants, params, &u.buffers, u.n)?;
    }
    Ok(())
}

/// The update's vec4 kernel (and scalar tail) over n elements of its operand buffers: the
/// gradient (read), the parameter and the states (updated; distinct unused bindings in the
/// slots the pipeline leaves alone).
fn update_kernels(
    dev: &crate::Device,
    constants: &[(&'static str, u32)],
    params: &OptimParams,
    buffers: &[Option<&wgpu::Buffer>],
    n: usize,
) -> Result<()> {
    // Each unused state slot its own unused binding (WebGPU refuses one buffer in two
    // writable slots, even unused ones).
    let mut unused = 0;
    let mut binds: Vec<Bind> = buffers
        .iter()
        .map(|b| {
            Bind::Write(b.unwrap_or_else(|| {
                unused += 1;
                dev.unused_binding(unused - 1)
            }))
        })
        .collect();
    binds[0] = Bind::Read(buffers[0].expect("a gradient"));
    // Texture copies of the gradient, the parameter and the states where the policy reads
    // them so, for the texel entry points (the buffers stay bound: the kernel writes them).
    let reads = TexelReads::of_buffers(dev, buffers, n)?;
    let entries = if reads.on() {
        debug_assert_eq!(buffers.len(), 2 + STATE_SLOTS, "textures at bindings 6-10");
        binds.extend((0..buffers.len()).map(|i| reads.texture(dev, i)));
        ("optim_step_texels", "optim_step4_texels")
    } else {
        ("optim_step", "optim_step4")
    };
    dev.dispatch_vec4(&SHADER, entries, constants, &binds, n, |start| {
        OptimParams {
            len: n as u32,
            start: start as u32,
            ..*params
        }
    })
}

/// The updates of several small parameters as one dispatch over flat copies of their operands
/// (each parameter at a multiple of 4 elements, so the vec4 kernel covers all of them; the
/// padding between them is updated too, and never copied back).
fn record_flat(
    dev: &crate::Device,
    constants: &[(&'static str, u32)],
    params: &OptimParams,
    updates: &[&Update],
) -> Result<()> {
    let mut offsets = Vec::with_capacity(updates.len());
    let mut total = 0;
    for u in updates {
        offsets.push(total);
        total += u.n.next_multiple_of(4);
    }
    // One flat buffer per operand the updates have (all have the same ones).
    let flats = updates[0]
        .buffers
        .iter()
        .map(|b| b.map(|_| Tensor::uninit(dev, &[total])).transpose())
        .collect::<Result<Vec<_>>>()?;
    for (u, &at) in updates.iter().zip(&offsets) {
        for (src, flat) in u.buffers.iter().zip(&flats) {
            if let (Some(src), Some(flat)) = (src, flat) {
                dev.copy_range(src, 0, flat.buffer(), at as u64 * 4, u.n as u64 * 4);
            }
        }
    }
    let buffers: Vec<Option<&wgpu::Buffer>> = flats
        .iter()
        .map(|f| f.as_ref().map(|f| f.buffer()))
        .collect();
    update_kernels(dev, constants, params, &buffers, total)?;
    for (u, &at) in updates.iter().zip(&offsets) {
        // Not the gradient (read only).
        for (dst, flat) in u.buffers.iter().zip(&flats).skip(1) {
            if let (Some(dst), Some(flat)) = (dst, flat) {
                dev.copy_range(flat.buffer(), at as u64 * 4, dst, 0, u.n as u64 * 4);
            }
        }
    }
    Ok(())
}

/// An optimizer's parameters must share one device: its update kernels run on one.
fn one_device(params: &[Tensor], op: &'static str) -> Result<()> {
    match params.first() {
        Some(first) => params
            .iter()
            .try_for_each(|p| first.device().same(p.device(), op)),
        None => Ok(()),
    }
}

fn zeros_like(params: &[Tensor]) -> Result<Vec<Tensor>> {
    params
        .iter()
        .map(|p| Tensor::zeros(p.device(), p.shape()))
        .collect()
}

fn load_named(dst: &[Tensor], name: &str, state: &[(String, Tensor)]) -> Result<()> {
    for (i, t) in dst.iter().enumerate() {
        let key = format!("{i}.{name}");
        let src = state
            .iter()
            .find(|(k, _)| *k == key)
            .ok_or_else(|| Error::Invalid(format!("optimizer state has no {key}")))?;
        if src.1.shape() != t.shape() {
            return Err(Error::Invalid(format!(
                "optimizer state {key} has shape {:?}, the parameter {:?}",
                src.1.shape(),
                t.shape()
            )));
        }
        t.copy_from(&src.1)?;
    }
    Ok(())
}

/// Stochastic gradient descent with momentum, dampening, Nesterov and weight decay,
/// as `torch.optim.SGD`. State: `momentum_buffer`.
pub struct Sgd {
    core: Core,
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: plain gradient descent).
    pub momentum: f32,
    /// Dampening of the momentum's gradient term.
    pub dampening: f32,
    /// L2 penalty added to the gradient (PyTorch's `weight_decay`).
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`; set momentum etc. with the `with_` methods.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<Sgd> {
        check("SGD", &[("learning rate", lr, Range::NonNegative)])?;
        Ok(Sgd {
            core: Core::new("Sgd::new", params, &[("momentum_buffer", true)])?,
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        })
    }
    setters! {
        /// The momentum factor.
        with_momentum => momentum: f32,
        /// Nesterov momentum on or off (needs momentum and no dampening).
        with_nesterov => nesterov: bool,
        /// The L2 penalty added to the gradient.
        with_weight_decay => weight_decay: f32,
        /// The dampening of the momentum's gradient term.
        with_dampening => dampening: f32,
    }

    fn check(&self) -> Result<()> {
        check(
            "SGD",
            &[
                ("learning rate", self.lr, Range::NonNegative),
                ("momentum", self.momentum, Range::NonNegative),
                ("weight_decay", self.weight_decay, Range::NonNegative),
            ],
        )?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::Invalid(
                "SGD: Nesterov momentum requires a momentum and zero dampening".into(),
            ));
        }
        Ok(())
    }

    fn update(&mut self) -> Result<()> {
        let params = OptimParams {
            lr: self.lr,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov as u32,
            first_step: (self.core.steps == 0) as u32,
            ..OptimParams::default()
        };
        self.core
            .step(Kernel::Sgd, &[self.momentum != 0.0], &params)
    }
}

impl Optimizer for Sgd {
    optimizer_methods!();
}

/// Adam (and AdamW with decoupled weight decay), as `torch.optim.Adam` / `AdamW`.
/// States: `exp_avg`, `exp_avg_sq`.
pub struct Adam {
    core: Core,
    /// Learning rate.
    pub lr: f32,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f32, f32),
    /// Added to the denominator for numerical stability.
    pub eps: f32,
    /// Weight decay: L2 in the gradient (Adam) or decoupled (AdamW).
    pub weight_decay: f32,
    /// AdamW: decay the weights directly instead of adding to the gradient.
    pub decoupled: bool,
}

impl Adam {
    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<Adam> {
        check("Adam", &[("learning rate", lr, Range::NonNegative)])?;
        Ok(Adam {
            core: Core::new(
                "Adam::new",
                params,
                &[("exp_avg", true), ("exp_avg_sq", true)],
            )?,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        })
    }
    /// AdamW with PyTorch's defaults (weight decay 0.01).
    pub fn adamw(params: Vec<Tensor>, lr: f32) -> Result<Adam> {
        let mut a = Adam::new(params, lr)?;
        a.decoupled = true;
        a.weight_decay = 0.01;
        Ok(a)
    }
    /// The moment decay rates (default 0.9, 0.999).
    pub fn with_betas(mut self, b1: f32, b2: f32) -> Self {
        self.betas = (b1, b2);
        self
    }
    setters! {
        /// The stability term (default 1e-8).
        with_eps => eps: f32,
        /// The weight decay (L2 in the gradient, or decoupled for AdamW).
        with_weight_decay => weight_decay: f32,
    }

    fn check(&self) -> Result<()> {
        check(
            if self.decoupled { "AdamW" } else { "Adam" },
            &[
                ("learning rate", self.lr, Range::NonNegative),
                ("eps", self.eps, Range::NonNegative),
                ("beta1", self.betas.0, Range::UnitOpen),
                ("beta2", self.betas.1, Range::UnitOpen),
                ("weight_decay", self.weight_decay, Range::NonNegative),
            ],
        )
    }

    fn update(&mut self) -> Result<()> {
        let t = (self.core.steps + 1) as i32;
        let params = OptimParams {
            lr: self.lr,
            weight_decay: self.weight_decay,
            eps: self.eps,
            beta1: self.betas.0,
            beta2: self.betas.1,
            bias_correction1: 1.0 - self.betas.0.powi(t),
            bias_correction2: 1.0 - self.betas.1.powi(t),
            decoupled: self.decoupled as u32,
            ..OptimParams::default()
        };
        self.core.step(Kernel::Adam, &[true, true], &params)
    }
}

impl Optimizer for Adam {
    optimizer_methods!();
}

/// RMSprop, as `torch.optim.RMSprop`: the gradient divided by the root of a moving average
/// of its square (`centered`: of its variance), with optional momentum and weight decay.
/// States: `square_avg`, `momentum_buffer` (with momentum), `grad_avg` (centered).
#[doc(alias = "RMSprop")]
pub struct RmsProp {
    core: Core,
    /// Learning rate (PyTorch's default 0.01).
    pub lr: f32,
    /// Decay rate of the moving averages (default 0.99).
    pub alpha: f32,
    /// Added to the root of the average, outside it (default 1e-8).
    pub eps: f32,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f32,
    /// Momentum factor (default 0: none).
    pub momentum: f32,
    /// Divide by the root of the gradient's estimated variance rather than of its mean square
    /// (default false).
    pub centered: bool,
}

impl RmsProp {
    /// RMSprop with learning rate `lr` and PyTorch's other defaults: alpha 0.99, eps 1e-8,
    /// no weight decay, no momentum, not centered.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<RmsProp> {
        check("RMSprop", &[("learning rate", lr, Range::NonNegative)])?;
        let states = [
            ("square_avg", true),
            ("momentum_buffer", false),
            ("grad_avg", false),
        ];
        Ok(RmsProp {
            core: Core::new("RmsProp::new", params, &states)?,
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        })
    }
    setters! {
        /// The moving averages' decay rate (default 0.99).
        with_alpha => alpha: f32,
        /// The stability term (default 1e-8).
        with_eps => eps: f32,
        /// The L2 penalty added to the gradient.
        with_weight_decay => weight_decay: f32,
        /// The momentum factor.
        with_momentum => momentum: f32,
        /// Centered RMSprop on or off.
        with_centered => centered: bool,
    }

    fn check(&self) -> Result<()> {
        check(
            "RMSprop",
            &[
                ("learning rate", self.lr, Range::NonNegative),
                ("eps", self.eps, Range::NonNegative),
                ("momentum", self.momentum, Range::NonNegative),
                ("weight_decay", self.weight_decay, Range::NonNegative),
                ("alpha", self.alpha, Range::NonNegative),
            ],
        )
    }

    fn update(&mut self) -> Result<()> {
        let params = OptimParams {
            lr: self.lr,
            weight_decay: self.weight_decay,
            eps: self.eps,
            momentum: self.momentum,
            alpha: self.alpha,
            centered: self.centered as u32,
            ..OptimParams::default()
        };
        let used = [true, self.momentum > 0.0, self.centered];
        self.core.step(Kernel::RmsProp, &used, &params)
    }
}

impl Optimizer for RmsProp {
    optimizer_methods!();
}

/// Adagrad, as `torch.optim.Adagrad`: the gradient divided by the root of the sum of its
/// squares so far, with learning-rate decay and weight decay. State: `sum` (it starts at
/// `initial_accumulator_value` with the first step; zeros until then).
pub struct Adagrad {
    core: Core,
    /// Learning rate (PyTorch's default 0.01).
    pub lr: f32,
    /// Step t runs with `lr / (1 + (t - 1) * lr_decay)` (default 0).
    pub lr_decay: f32,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f32,
    /// The sum of squares' starting value (default 0).
    pub initial_accumulator_value: f32,
    /// Added to the root of the sum (default 1e-10).
    pub eps: f32,
}

impl Adagrad {
    /// Adagrad with learning rate `lr` and PyTorch's other defaults: no learning-rate decay,
    /// no weight decay, sums from 0, eps 1e-10.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<Adagrad> {
        check("Adagrad", &[("learning rate", lr, Range::NonNegative)])?;
        Ok(Adagrad {
            core: Core::new("Adagrad::new", params, &[("sum", true)])?,
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        })
    }
    setters! {
        /// The learning rate's decay per step.
        with_lr_decay => lr_decay: f32,
        /// The L2 penalty added to the gradient.
        with_weight_decay => weight_decay: f32,
        /// The sum of squares' starting value.
        with_initial_accumulator_value => initial_accumulator_value: f32,
        /// The stability term (default 1e-10).
        with_eps => eps: f32,
    }

    fn check(&self) -> Result<()> {
        check(
            "Adagrad",
            &[
                ("learning rate", self.lr, Range::NonNegative),
                ("lr_decay", self.lr_decay, Range::NonNegative),
                ("weight_decay", self.weight_decay, Range::NonNegative),
                (
                    "initial_accumulator_value",
                    self.initial_accumulator_value,
                    Range::NonNegative,
                ),
                ("eps", self.eps, Range::NonNegative),
            ],
        )
    }

    fn update(&mut self) -> Result<()> {
        let params = OptimParams {
            // As PyTorch, in double precision.
            lr: (self.lr as f64 / (1.0 + self.core.steps as f64 * self.lr_decay as f64)) as f32,
            weight_decay: self.weight_decay,
            eps: self.eps,
            first_step: (self.core.steps == 0) as u32,
            initial_accumulator: self.initial_accumulator_value,
            ..OptimParams::default()
        };
        self.core.step(Kernel::Adagrad, &[true], &params)
    }
}

impl Optimizer for Adagrad {
    optimizer_methods!();
}

/// Adadelta, as `torch.optim.Adadelta` (the optimizer of PyTorch's MNIST example, with
/// lr 1.0 and a `StepLr` of gamma 0.7): steps scaled by the ratio of the roots of moving
/// averages of the squared updates and the squared gradients. States: `square_avg`,
/// `acc_delta`.
pub struct Adadelta {
    core: Core,
    /// Scales the update (PyTorch's default 1.0).
    pub lr: f32,
    /// Decay rate of the moving averages (default 0.9).
    pub rho: f32,
    /// Added inside both roots (default 1e-6).
    pub eps: f32,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f32,
}

impl Adadelta {
    /// Adadelta with learning rate `lr` and PyTorch's other defaults: rho 0.9, eps 1e-6,
    /// no weight decay.
    pub fn new(params: Vec<Tensor>, lr: f32) -> Result<Adadelta> {
        check("Adadelta", &[("learning rate", lr, Range::NonNegative)])?;
        Ok(Adadelta {
            core: Core::new(
                "Adadelta::new",
                params,
                &[("square_avg", true), ("acc_delta", true)],
            )?,
            lr,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
        })
    }
    setters! {
        /// The moving averages' decay rate (default 0.9).
        with_rho => rho: f32,
        /// The stability term (default 1e-6).
        with_eps => eps: f32,
        /// The L2 penalty added to the gradient.
        with_weight_decay => weight_decay: f32,
    }

    fn check(&self) -> Result<()> {
        check(
            "Adadelta",
            &[
                ("learning rate", self.lr, Range::NonNegative),
                ("rho", self.rho, Range::Unit),
                ("eps", self.eps, Range::NonNegative),
                ("weight_decay", self.weight_decay, Range::NonNegative),
            ],
        )
    }

    fn update(&mut self) -> Result<()> {
        let params = OptimParams {
            lr: self.lr,
            weight_decay: self.weight_decay,
            eps: self.eps,
            rho: self.rho,
            ..OptimParams::default()
        };
        self.core.step(Kernel::Adadelta, &[true, true], &params)
    }
}

impl Optimizer for Adadelta {
    optimizer_methods!();
}

/// A learning rate as a function of the epoch (or step) index.
pub trait LrSchedule {
    /// The learning rate for epoch `epoch` (counted from 0).
    fn lr_at(&self, epoch: usize) -> f32;
}

/// Multiplies the base rate by `gamma` every `step_size` epochs (`torch.optim.lr_scheduler.StepLR`).
#[derive(Clone, Copy, Debug)]
pub struct StepLr {
    /// The learning rate of the first epochs.
    pub base_lr: f32,
    /// Epochs between decays.
    pub step_size: usize,
    /// Factor applied at each decay.
    pub gamma: f32,
}

impl LrSchedule for StepLr {
    fn lr_at(&self, epoch: usize) -> f32 {
        self.base_lr * self.gamma.powi((epoch / self.step_size.max(1)) as i32)
    }
}

/// Cosine annealing from `base_lr` to `eta_min` over `t_max` epochs
/// (`torch.optim.lr_scheduler.CosineAnnealingLR`, closed form).
#[derive(Clone, Copy, Debug)]
pub struct CosineLr {
    /// The learning rate at epoch 0.
    pub base_lr: f32,
    /// Epochs of the half cosine period.
    pub t_max: usize,
    /// The learning rate at the end of the period.
    pub eta_min: f32,
}

impl LrSchedule for CosineLr {
    fn lr_at(&self, epoch: usize) -> f32 {
        let t = epoch.min(self.t_max) as f32 / self.t_max.max(1) as f32;
        self.eta_min
            + (self.base_lr - self.eta_min) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
    }
}
